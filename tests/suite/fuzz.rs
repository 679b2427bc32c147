//! Hostile input, fuzzed: the configuration parser, the ledger and its
//! journal, the hook's arguments and environment, the owner worker's wire
//! messages, and `.git`/`gitdir`/`commondir` contents.
//!
//! Each target starts from its checked-in corpus (`fuzz/corpus/<target>/`,
//! every file run as is) and then runs generated inputs: proptest picks a
//! corpus file and applies byte-level mutations (flips, inserts, deletes,
//! splices with another corpus file, and tokens from the target's
//! dictionary, as libFuzzer does), with a fixed seed so that CI runs the
//! same cases every time. What must hold: no panic and no internal error;
//! every rejection is a clear message with its documented status; nothing
//! is acted on outside the roots.
//!
//! Longer runs: `TREEWARD_FUZZ_CASES=100000 TREEWARD_FUZZ_SEED=7 cargo test
//! --release --test suite fuzz::` (the README says so). A failing input is
//! printed shrunk; add it to the target's corpus when fixing the bug.

use crate::common;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The seeds of one target, sorted by file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{}: empty corpus", dir.display());
    seeds
}

/// Generated cases per target: `TREEWARD_FUZZ_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("TREEWARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One byte-level edit of an input.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Splice {
        at: usize,
        from: usize,
        start: usize,
        len: usize,
    },
    Token {
        at: usize,
        token: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Flip { at, byte }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..64).prop_map(
            |(at, from, start, len)| Edit::Splice {
                at,
                from,
                start,
                len
            }
        ),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Edit::Token { at, token }),
    ]
}

/// Applies `edits` to seed `seed` of `seeds`.
fn mutate(seeds: &[(String, Vec<u8>)], seed: usize, edits: &[Edit], dict: &[&[u8]]) -> Vec<u8> {
    let mut data = seeds[seed % seeds.len()].1.clone();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Flip { at: i, byte } if !data.is_empty() => {
                let i = i % data.len();
                data[i] = *byte;
            }
            Edit::Flip { .. } => {}
            Edit::Insert { at: i, bytes } => {
                let i = at(*i, data.len());
                data.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete { at: i, len } => {
                let i = at(*i, data.len());
                let end = (i + len).min(data.len());
                data.drain(i..end);
            }
            Edit::Splice {
                at: i,
                from,
                start,
                len,
            } => {
                let other = &seeds[from % seeds.len()].1;
                let start = at(*start, other.len());
                let end = (start + len).min(other.len());
                let i = at(*i, data.len());
                data.splice(i..i, other[start..end].iter().copied());
            }
            Edit::Token { at: i, token } if !dict.is_empty() => {
                let i = at(*i, data.len());
                data.splice(i..i, dict[token % dict.len()].iter().copied());
            }
            Edit::Token { .. } => {}
        }
    }
    data
}

/// Runs `check` on every corpus file of `target`, then on `default`
/// generated mutations of them (fixed seed); fails with the shrunk input.
fn fuzz(target: &str, default: u32, dict: &[&[u8]], check: impl Fn(&[u8]) -> Result<(), String>) {
    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        if let Err(e) = check(bytes) {
            panic!("{target}: corpus file {name}: {e}");
        }
    }
    let seed = std::env::var("TREEWARD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0);
    let config = Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = (any::<usize>(), proptest::collection::vec(edit(), 0..6));
    let result = runner.run(&strategy, |(seed, edits)| {
        let input = mutate(&seeds, seed, &edits, dict);
        check(&input).map_err(|e| {
            TestCaseError::fail(format!("{e}\ninput: {:?}", String::from_utf8_lossy(&input)))
        })
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    eprintln!(
        "{target}: {} corpus files and {} generated inputs passed",
        seeds.len(),
        cases(default)
    );
}

/// Control: the mutations really leave the corpus (a fuzzer that only
/// replayed its seeds could never find anything).
#[test]
fn mutations_reach_beyond_the_corpus() {
    let seeds = corpus("config");
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[0; 32]),
    );
    let strategy = (any::<usize>(), proptest::collection::vec(edit(), 1..6));
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..200 {
        let (seed, edits) = strategy.new_tree(&mut runner).unwrap().current();
        let input = mutate(&seeds, seed, &edits, TOML_TOKENS);
        if !seeds.iter().any(|(_, s)| *s == input) {
            distinct.insert(input);
        }
    }
    assert!(distinct.len() > 150, "only {} new inputs", distinct.len());
}

/// Fails when a program's stderr shows a panic or an internal error.
fn no_crash(out: &Output) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") || stderr.contains("internal error") {
        return Err(format!("crashed: {stderr}"));
    }
    if out.status.code().is_none() {
        return Err(format!("killed by a signal: {stderr}"));
    }
    Ok(())
}

// ------------------------------------------------------------ configuration

const TOML_TOKENS: &[&[u8]] = &[
    b"[[root]]\n",
    b"[root]\n",
    b"path = \"/\"\n",
    b"path = \"/srv/agents/x/../..\"\n",
    b"patterns = [\"*\"]\n",
    b"patterns = [\"[\"]\n",
    b"owner = \"0\"\n",
    b"owner = \"nobody-such\"\n",
    b"policy = \"discard\"\n",
    b"grace = \"99999999999999h\"\n",
    b"ledger = \"/srv/agents/wt/ledger.json\"\n",
    b"backlog_warn = 18446744073709551616\n",
    b"\"\"\"",
    b"\\u0000",
    b"\xff",
    b"=",
    b"\n",
];

/// Any text: validated, or refused with `FILE:LINE: KEY: MESSAGE` (the
/// binaries exit 78 on it, checked on the corpus below); never a panic, and
/// a configuration that validates never names a system directory as a root.
#[test]
fn configuration_parser() {
    let users = treeward::testing::config::SystemUsers;
    fuzz("config", 3000, TOML_TOKENS, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        match treeward::testing::config::Config::from_toml(
            &text,
            treeward::testing::config::Source::Embedded,
            &users,
        ) {
            Ok(config) => {
                for root in config.roots() {
                    let p = root.path().to_string_lossy();
                    for system in ["/", "/usr", "/etc", "/bin", "/var", "/home", "/root"] {
                        if p == system {
                            return Err(format!("accepted the system directory {p} as a root"));
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                if e.message.trim().is_empty() || !message.starts_with("embedded defaults") {
                    return Err(format!("an unclear refusal: {message:?}"));
                }
                Ok(())
            }
        }
    });
}

/// The binaries answer a configuration file that does not validate with 78
/// and touch nothing; one that does, with 0.
#[test]
fn configuration_files_exit_78_or_run() {
    let dir = common::strict_tempdir();
    let cfg = dir.path().join("treeward.toml");
    let users = treeward::testing::config::SystemUsers;
    for (name, bytes) in corpus("config") {
        std::fs::write(&cfg, &bytes).unwrap();
        let valid = treeward::testing::config::Config::from_toml(
            &String::from_utf8_lossy(&bytes),
            treeward::testing::config::Source::Embedded,
            &users,
        )
        .is_ok();
        let out = Command::new(env!("CARGO_BIN_EXE_treeward"))
            .args(["list", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        no_crash(&out).unwrap();
        let code = out.status.code();
        if valid {
            assert_ne!(
                code,
                Some(78),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            assert_eq!(
                code,
                Some(78),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout.is_empty(),
                "{name}: refused but printed a listing"
            );
        }
    }
}

// ------------------------------------------------------------------ ledger

const JSON_TOKENS: &[&[u8]] = &[
    b"\"path\": \"/\"",
    b"\"state\": \"released\"",
    b"\"state\": \"retry_remove\"",
    b"\"schema\": 2",
    b"\"records\": []",
    b"null",
    b"{",
    b"}",
    b"[",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"18446744073709551616",
    b"\n",
    b"\xff",
];

/// Any bytes as the ledger: read as a document or refused as unreadable or
/// corrupt; an update moves a corrupt ledger aside (its bytes kept) and
/// never panics.
#[test]
fn ledger_reader() {
    let dir = common::strict_tempdir();
    let path = dir.path().join("ledger.json");
    fuzz("ledger", 1500, JSON_TOKENS, |bytes| {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        let ledger = treeward::testing::ledger::Ledger::new(&path);
        let read = ledger.read();
        if let Err(e) = &read {
            if e.to_string().trim().is_empty() {
                return Err("an empty error".into());
            }
        }
        match ledger.update(|_| ()) {
            Ok(()) => {}
            // A ledger from a newer treeward is left as it is.
            Err(e) if e.to_string().contains("newer") => return Ok(()),
            Err(e) => return Err(format!("update failed: {e}")),
        }
        if read.is_err() {
            // The corrupt bytes survive beside the new ledger.
            let kept = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
                .any(|b| b == bytes);
            if !kept {
                return Err("a corrupt ledger's bytes were lost".into());
            }
        }
        Ok(())
    });
}

/// Any bytes as the journal beside a good ledger: lines that do not parse
/// are dropped (and logged), the ledger's own records are never lost.
#[test]
fn journal_reader() {
    let dir = common::strict_tempdir();
    let path = dir.path().join("ledger.json");
    let good = corpus("ledger")
        .into_iter()
        .find(|(n, _)| n == "one_record.json")
        .unwrap()
        .1;
    fuzz("journal", 1500, JSON_TOKENS, |bytes| {
        std::fs::write(&path, &good).unwrap();
        let ledger = treeward::testing::ledger::Ledger::new(&path);
        std::fs::write(ledger.journal_path(), bytes).unwrap();
        let doc = match ledger.read() {
            Ok(doc) => doc,
            // A newer treeward's change: refused, files left untouched.
            Err(e) if e.to_string().contains("newer treeward") => {
                return match std::fs::read(ledger.journal_path()) {
                    Ok(b) if b == bytes => Ok(()),
                    _ => Err("a newer journal was changed".into()),
                }
            }
            Err(e) => return Err(format!("read failed: {e}")),
        };
        if doc.find_by_id("0123456789abcdef").is_none() {
            return Err("the ledger's record was lost".into());
        }
        ledger
            .update(|_| ())
            .map_err(|e| format!("update failed: {e}"))?;
        let doc = ledger.read().map_err(|e| format!("read failed: {e}"))?;
        if doc.find_by_id("0123456789abcdef").is_none() {
            return Err("the ledger's record was lost by compaction".into());
        }
        Ok(())
    });
}

// -------------------------------------------------------------------- hook

const HOOK_TOKENS: &[&[u8]] = &[
    b"\0",
    b"0000000000000000000000000000000000000000",
    b"1",
    b"0",
    b"--",
    b"-",
    b"\n",
    b"\xff",
];

/// Any arguments: parsed, or refused with the usage; in-process, then the
/// binary itself as git runs it (always exit 0: a hook's status is git's),
/// with hostile `GIT_*` variables, in a directory that is no repository.
#[test]
fn hook_arguments_and_environment() {
    let dir = common::strict_tempdir();
    let cfg = dir.path().join("treeward.toml");
    let ledger = dir.path().join("ledger.json");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n",
            ledger.display(),
            dir.path().join("wt").display()
        ),
    )
    .unwrap();
    let args_of = |bytes: &[u8]| -> Vec<OsString> {
        bytes
            .split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    fuzz(
        "hook_args",
        3000,
        HOOK_TOKENS,
        |bytes| match treeward::testing::hook::parse_args(&args_of(bytes)) {
            Err(e) if !e.contains("usage") => Err(format!("no usage in {e:?}")),
            _ => Ok(()),
        },
    );
    let spawned = std::cell::Cell::new(0);
    fuzz("hook_args", 150, HOOK_TOKENS, |bytes| {
        spawned.set(spawned.get() + 1);
        let hostile = OsString::from_vec(bytes.iter().map(|b| b.max(&1)).copied().collect());
        let out = Command::new(env!("CARGO_BIN_EXE_treeward-hook"))
            .args(args_of(bytes))
            .env("TREEWARD_CONFIG", &cfg)
            .env("GIT_DIR", &hostile)
            .env("GIT_COMMON_DIR", "/")
            .env("GIT_WORK_TREE", "/etc")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        no_crash(&out)?;
        if out.status.code() != Some(0) {
            return Err(format!(
                "the hook failed git: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if ledger.exists() {
            return Err("the hook recorded a worktree that does not exist".into());
        }
        Ok(())
    });
    assert!(spawned.get() > 100);
}

// ------------------------------------------------------------------ worker

const WIRE_TOKENS: &[&[u8]] = &[
    b"{\"op\":\"probe\"}",
    b"{\"op\":\"assess\",\"path\":[255,0,47]}",
    b"{\"op\":\"restore\",\"repository\":\"/\",\"prefix\":\"\",\"path\":\"/etc\",\"branch\":null,\"dry_run\":false}",
    b"\"uid\":0",
    b"\"groups\":[0]",
    b"[",
    b"]",
    b"null",
    b"\xff",
];

/// Any bytes on a worker's stdin, served as uid 4242: it serves, or
/// refuses with a reason and status 2; it answers one JSON reply and never
/// runs as, or for, anyone else.
#[test]
fn worker_wire_messages() {
    if !common::prerequisite(
        common::is_root(),
        "starting a worker as another uid needs root",
    ) {
        return;
    }
    const UID: u32 = 4242;
    let seeds_dir = common::strict_tempdir();
    fuzz("worker_request", 300, WIRE_TOKENS, |bytes| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_treeward-check"))
            .arg(treeward::testing::as_owner::WORKER_FLAG)
            .uid(UID)
            .gid(UID)
            .env_clear()
            .current_dir(seeds_dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            // The worker may refuse before reading it all.
            let _ = child.stdin.take().unwrap().write_all(bytes);
        }
        let out = child.wait_with_output().unwrap();
        no_crash(&out)?;
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "no JSON reply ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        match (out.status.code(), reply["reply"].as_str()) {
            (Some(0), Some("done")) => {
                for r in reply["responses"].as_array().into_iter().flatten() {
                    if r["response"] == "probe" && r["uid"] != UID {
                        return Err(format!("served as another uid: {r}"));
                    }
                }
                Ok(())
            }
            (Some(2), Some("refused"))
                if reply["message"].as_str().is_some_and(|m| !m.is_empty()) =>
            {
                Ok(())
            }
            other => Err(format!("unexpected end {other:?}: {reply}")),
        }
    });
}

// ------------------------------------------------------------------ .git

const GIT_TOKENS: &[&[u8]] = &[
    b"gitdir: ",
    b"/",
    b"..",
    b"../",
    b"/proc/self/root",
    b"\n",
    b"\0",
    b"\xff",
    b"worktrees/",
];

/// Any `.git` file, `gitdir` and `commondir`: `treeward-check` answers
/// with a verdict or an error and never says "safe" about a worktree it
/// could not verify; the sweep, as root, acts on nothing outside its root
/// (the sentinel repository the pointers aim at is left byte for byte).
#[test]
fn git_pointer_files() {
    if !common::prerequisite(common::is_root(), "the sweep runs as root") {
        return;
    }
    // The repository belongs to uid 4343; the root is root's, so a claim
    // made by any forged pointer fails the owner check.
    let f = common::Fixture::new_in(&common::strict_base());
    let real = f.worktree("wt", "t-wt");
    common::chown_r(f.tmp.path(), 4343);
    let common_dir = f.repo.join(".git");
    let admin = common_dir.join("worktrees/wt");
    // The test itself rewrites the admin dir's gitdir: its times are not
    // compared, its bytes are.
    let gitdir_file = admin.join("gitdir");
    let sentinel = || {
        let mut s = common::snapshot(f.tmp.path());
        if let Some(v) = s.get_mut(&gitdir_file) {
            (v.3, v.4) = (0, 0);
        }
        s
    };
    let before = sentinel();
    let base = common::strict_tempdir();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = base.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\npolicy = \"preserve\"\n",
            base.path().join("ledger.json").display(),
            root.display()
        ),
    )
    .unwrap();
    let forged = root.join("forged");
    let original_gitdir = std::fs::read(admin.join("gitdir")).unwrap();
    let round = std::cell::Cell::new(0u32);
    fuzz("dotgit", 120, GIT_TOKENS, |bytes| {
        round.set(round.get() + 1);
        let text =
            String::from_utf8_lossy(bytes).replace("{common}", &common_dir.to_string_lossy());
        let _ = std::fs::remove_dir_all(&forged);
        std::fs::create_dir(&forged).unwrap();
        std::fs::write(forged.join(".git"), text.as_bytes()).unwrap();
        std::fs::write(forged.join("work.txt"), "only copy\n").unwrap();
        // Odd rounds also point the real admin dir's gitdir at the forgery.
        if round.get() % 2 == 1 {
            std::fs::write(admin.join("gitdir"), format!("{}/.git\n", forged.display())).unwrap();
            std::os::unix::fs::chown(admin.join("gitdir"), Some(4343), Some(4343)).unwrap();
        }
        let check = Command::new(env!("CARGO_BIN_EXE_treeward-check"))
            .args(["--json", "--config"])
            .arg(&cfg)
            .arg(&forged)
            .output()
            .unwrap();
        no_crash(&check)?;
        let doc: serde_json::Value = serde_json::from_slice(&check.stdout)
            .map_err(|e| format!("check printed no JSON ({e})"))?;
        let verdict = &doc["worktrees"][0];
        if verdict["at_risk"] != true {
            return Err(format!(
                "a forged worktree holding a file was called safe: {verdict}"
            ));
        }
        let sweep = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        no_crash(&sweep)?;
        std::fs::write(admin.join("gitdir"), &original_gitdir).unwrap();
        std::os::unix::fs::chown(admin.join("gitdir"), Some(4343), Some(4343)).unwrap();
        if sentinel() != before {
            return Err("the sweep changed the repository a forged pointer names".into());
        }
        if !real.join("README").is_file() {
            return Err("the real worktree lost its files".into());
        }
        Ok(())
    });
}

// ---------------------------------------------------- the ledger's paths

/// Records whose paths point outside the roots, at `/`, through symlinks
/// or at another user's worktree: the reaper (as the agents' uid) and the
/// sweep (as root) act on none of them.
#[test]
fn hostile_ledger_paths_are_acted_on_nowhere() {
    if !common::prerequisite(common::is_root(), "runs the reaper as another uid") {
        return;
    }
    const OWNER: u32 = 4242;
    let f = common::Fixture::new_in(&common::strict_base());
    let victim_wt = f.worktree("victim", "t-victim");
    common::write(&victim_wt.join("only-copy.txt"), "victim's work\n");
    common::chown_r(f.tmp.path(), 4343);
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "keep\n").unwrap();
    let base = common::strict_tempdir();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(OWNER), Some(OWNER)).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(&victim_wt, root.join("victim-link")).unwrap();
    let before = (common::snapshot(f.tmp.path()), common::snapshot(&outside));
    let ledger = base.path().join("ledger.json");
    let cfg = base.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"0s\"\npolicy = \"discard\"\nowner = \"{OWNER}\"\n",
            ledger.display(),
            root.display()
        ),
    )
    .unwrap();
    let targets: Vec<PathBuf> = vec![
        PathBuf::from("/"),
        outside.clone(),
        root.join("link"),
        root.join("link/keep.txt"),
        root.join("victim-link"),
        victim_wt.clone(),
        root.join("../outside"),
        PathBuf::from(OsString::from_vec(b"/\xff/../".to_vec())),
    ];
    let states = [
        "active",
        "released",
        "retry_remove",
        "kept",
        "preserved",
        "removed",
    ];
    let config = Config {
        cases: cases(24),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[1; 32]));
    let record = (0..targets.len(), 0..states.len(), any::<bool>());
    let result = runner.run(&proptest::collection::vec(record, 1..6), |records| {
        let json: Vec<serde_json::Value> = records
            .iter()
            .enumerate()
            .map(|(i, (t, s, named))| {
                serde_json::json!({
                    "id": format!("r{i}"),
                    "path": targets[*t].to_string_lossy(),
                    "repository": f.repo.join(".git"),
                    "worktree_name": if *named { Some("victim") } else { None },
                    "uid": OWNER,
                    "created_at": "2026-01-01T00:00:00Z",
                    "last_transition": "2026-01-01T00:00:00Z",
                    "state": states[*s],
                })
            })
            .collect();
        std::fs::write(
            &ledger,
            serde_json::json!({"schema": 1, "records": json}).to_string(),
        )
        .unwrap();
        std::os::unix::fs::chown(&ledger, Some(OWNER), Some(OWNER)).unwrap();
        let reap = Command::new(env!("CARGO_BIN_EXE_treeward-reap"))
            .args(["--json", "--config"])
            .arg(&cfg)
            .uid(OWNER)
            .gid(OWNER)
            .current_dir("/")
            .output()
            .unwrap();
        no_crash(&reap).map_err(TestCaseError::fail)?;
        let sweep = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
            .args(["--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        no_crash(&sweep).map_err(TestCaseError::fail)?;
        let release = Command::new(env!("CARGO_BIN_EXE_treeward"))
            .args(["release", "r0", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        no_crash(&release).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            &(common::snapshot(f.tmp.path()), common::snapshot(&outside)),
            &before,
            "something outside the root changed"
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
