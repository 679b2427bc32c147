//! Repository formats: every repository the host's git makes goes through
//! `treeward-check`, `treeward-sweep`, `treeward-reap` and `treeward
//! restore` — files or reftable refs × SHA-1 or SHA-256 objects × a plain
//! checkout, a sparse index, or a partial clone (`--filter=blob:none`, from
//! a local bare repository; treeward never fetches: the promisor packs do
//! not change while it runs, and the server is out of reach meanwhile).
//!
//! And the Git 3.0 defaults pass: under `TREEWARD_TEST_GIT3=1` (`.ci/run`'s
//! second pass, which puts `init.defaultObjectFormat = sha256` and
//! `init.defaultRefFormat = reftable` in every git the tests start), the
//! repositories the fixtures make must be SHA-256 and reftable, or that
//! pass proves nothing.
//!
//! Root-only (the sweep acts for uid 4242, the reaper runs as it): skipped
//! with a printed reason otherwise (CI runs as root).

use crate::common;

use common::worktree::{capture, differences, WorktreeState};
use common::{chown_r, git, git_as, set_mtime, write, Fixture};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const OWNER: u32 = 4242;

/// `rev-parse --show-object-format` and `--show-ref-format` in `dir`.
fn formats_of(uid: Option<u32>, dir: &Path) -> (String, String) {
    let args = ["rev-parse", "--show-object-format", "--show-ref-format"];
    let out = match uid {
        Some(u) => git_as(u, dir, &args),
        None => git(dir, &args),
    };
    let mut lines = out.lines().map(str::to_owned);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn the_git3_defaults_pass_really_uses_sha256_and_reftable() {
    let expected = if std::env::var_os("TREEWARD_TEST_GIT3").is_some_and(|v| v == "1") {
        ("sha256", "reftable")
    } else {
        let (o, r) = formats_of(None, &Fixture::new().repo);
        eprintln!("git's own defaults in this pass: {o}, {r} (TREEWARD_TEST_GIT3 unset)");
        return;
    };
    let want = (expected.0.to_owned(), expected.1.to_owned());
    // The way the fixtures make repositories: git as the test runner...
    let f = Fixture::new();
    assert_eq!(formats_of(None, &f.repo), want, "Fixture::new's repository");
    assert_eq!(formats_of(None, &f.origin), want, "Fixture::new's origin");
    let wt = f.worktree("w", "w");
    assert_eq!(formats_of(None, &wt), want, "a linked worktree");
    // ...a clone, which takes its source's formats...
    let clone = f.tmp.path().join("clone");
    git(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            f.repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(formats_of(None, &clone), want, "a clone");
    // ...and as another user, directly and through a shell (as
    // tests/suite/attacks.rs's users do).
    if common::prerequisite(
        common::is_root(),
        "creating a repository as uid 4242 needs root",
    ) {
        let dir = common::strict_tempdir();
        chown_r(dir.path(), OWNER);
        git_as(OWNER, dir.path(), &["init", "-q", "-b", "main", "mine"]);
        let mine = dir.path().join("mine");
        assert_eq!(
            formats_of(Some(OWNER), &mine),
            want,
            "git init as uid {OWNER}"
        );
        let out = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("sh")
                .args(["-euc", "git init -q -b main viash"])
                .current_dir(dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("HOME", "/nonexistent")
                .uid(OWNER)
                .gid(OWNER)
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{out:?}");
        let viash = dir.path().join("viash");
        assert_eq!(
            formats_of(Some(OWNER), &viash),
            want,
            "git init in sh as uid {OWNER}"
        );
    }
}

// ------------------------------------------------------------ the matrix

/// One repository format of the matrix.
#[derive(Clone, Copy, Debug)]
struct Format {
    refs: &'static str,
    objects: &'static str,
    layout: &'static str,
}

impl Format {
    fn name(&self) -> String {
        format!("{}/{}/{}", self.refs, self.objects, self.layout)
    }

    fn init_args(&self) -> [String; 2] {
        [
            format!("--object-format={}", self.objects),
            format!("--ref-format={}", self.refs),
        ]
    }
}

/// A repository of `format` with `main` (two commits) pushed to its
/// origin; for a partial clone, cloned with `--filter=blob:none` from a
/// local bare server that also has a branch `feat` of two commits editing
/// one file (so the clone lacks that file's first version). Returns the
/// repository and its origin.
fn repository(base: &Path, format: Format) -> (PathBuf, PathBuf) {
    let [objects, refs] = format.init_args();
    let origin = base.join("origin.git");
    let source = base.join(if format.layout == "partial" {
        "seed"
    } else {
        "repo"
    });
    git(
        base,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            &objects,
            &refs,
            origin.to_str().unwrap(),
        ],
    );
    git(
        base,
        &[
            "init",
            "-q",
            "-b",
            "main",
            &objects,
            &refs,
            source.to_str().unwrap(),
        ],
    );
    write(&source.join("README"), "hello\n");
    write(&source.join("src/lib.txt"), "one\ntwo\n");
    write(&source.join("docs/guide.txt"), "a guide\n");
    write(&source.join(".gitignore"), "*.log\n");
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "initial"]);
    write(&source.join("src/lib.txt"), "one\ntwo\nthree\n");
    git(&source, &["commit", "-q", "-am", "second"]);
    git(
        &source,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&source, &["push", "-q", "-u", "origin", "main"]);
    if format.layout != "partial" {
        git(&source, &["remote", "set-head", "origin", "main"]);
        return (source, origin);
    }
    git(&source, &["checkout", "-q", "-b", "feat"]);
    write(&source.join("docs/feat.txt"), "first version\n");
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "feat one"]);
    write(&source.join("docs/feat.txt"), "second version\n");
    git(&source, &["commit", "-q", "-am", "feat two"]);
    git(&source, &["push", "-q", "origin", "feat"]);
    let repo = base.join("repo");
    let url = format!("file://{}", origin.display());
    git(
        base,
        &[
            "-c",
            "protocol.file.allow=always",
            "clone",
            "-q",
            "--filter=blob:none",
            &refs,
            &url,
            repo.to_str().unwrap(),
        ],
    );
    (repo, origin)
}

/// How many promisor packs the repository has: a lazy fetch adds one.
fn promisor_packs(repo: &Path) -> usize {
    let packs = repo.join(".git/objects/pack");
    std::fs::read_dir(packs)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".promisor"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// A root for the matrix: root-owned, sticky and world-writable like /tmp
/// (the owner restores its worktrees there).
fn sticky_root(path: &Path) -> PathBuf {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o1777)).unwrap();
    path.to_path_buf()
}

/// The row of `path` in a `treeward-check --json` document.
fn check_row<'a>(doc: &'a Value, path: &Path) -> Option<&'a Value> {
    doc["worktrees"]
        .as_array()?
        .iter()
        .find(|w| w["path"] == path.to_str().unwrap())
}

/// `<name>/<stamp>` of a sweep's or reap's preserved set for `path`.
fn preserved_set(doc: &Value, path: &Path) -> Option<String> {
    let e = doc["entries"]
        .as_array()?
        .iter()
        .find(|e| e["path"] == path.to_str().unwrap())?;
    let r = e["preserved_refs"].as_array()?.first()?.as_str()?;
    let mut parts = r.strip_prefix("refs/treeward/preserved/")?.splitn(3, '/');
    Some(format!("{}/{}", parts.next()?, parts.next()?))
}

fn action(doc: &Value, path: &Path) -> String {
    doc["entries"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["path"] == path.to_str().unwrap()))
        .map_or("unreported".to_owned(), |e| {
            format!("{} {}", e["action"].as_str().unwrap_or("?"), e["error"])
        })
}

/// `treeward restore <set> --repo <repo> --path <path>` with `cfg` as
/// `uid`; an error message if it failed or the worktree differs from
/// `before`.
fn restore_and_compare(
    cfg: &Path,
    uid: Option<u32>,
    set: Option<String>,
    repo: &Path,
    path: &Path,
    before: &WorktreeState,
) -> Result<(), String> {
    let set = set.ok_or("no preserved set reported")?;
    let args = [
        "restore".as_ref(),
        set.as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--path".as_ref(),
        path.as_os_str(),
    ];
    let out = common::treeward_command::<&std::ffi::OsStr>("treeward", cfg, uid, &args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "restore exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let after = capture(Some(OWNER), path)?;
    let diffs = differences(before, &after);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!("restored, but differs: {diffs:?}"))
    }
}

/// Runs one format through check, sweep, reap and restore; what went
/// wrong, and whether a check of the partial clone's `feat` worktree
/// answered or failed closed.
fn run_format(format: Format) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let dir = common::strict_tempdir();
    let base = dir.path();
    let (repo, origin) = repository(base, format);
    let want = (format.objects.to_owned(), format.refs.to_owned());
    assert_eq!(
        formats_of(None, &repo),
        want,
        "{}: the repository",
        format.name()
    );

    let swept = sticky_root(&base.join("swept"));
    let reaped = sticky_root(&base.join("reaped"));
    let state = base.join("state");
    std::fs::create_dir(&state).unwrap();
    let cfg_sweep = base.join("sweep.toml");
    std::fs::write(
        &cfg_sweep,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\npolicy = \"preserve\"\nowner = \"{OWNER}\"\nreap = false\n",
            base.join("sweep-ledger.json").display(),
            swept.display()
        ),
    )
    .unwrap();
    let cfg_reap = base.join("reap.toml");
    std::fs::write(
        &cfg_reap,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\ngrace = \"0s\"\npolicy = \"preserve\"\nsweep = false\n",
            state.join("ledger.json").display(),
            reaped.display()
        ),
    )
    .unwrap();

    // The worktrees: dirty ones in each root, a clean one, and in a partial
    // clone one on `feat` (whose first version of docs/feat.txt the clone
    // never fetched).
    let dirty = swept.join("dirty");
    let clean = swept.join("clean");
    let reap_dirty = reaped.join("dirty");
    common::add_worktree(&repo, &dirty, Some("t-dirty"));
    common::add_worktree(&repo, &clean, Some("t-clean"));
    common::add_worktree(&repo, &reap_dirty, Some("t-reap"));
    let feat = swept.join("feat");
    if format.layout == "partial" {
        git(
            &repo,
            &["worktree", "add", "-q", feat.to_str().unwrap(), "feat"],
        );
    }
    for wt in [&dirty, &reap_dirty] {
        if format.layout == "sparse" {
            git(
                wt,
                &["sparse-checkout", "set", "--cone", "--sparse-index", "src"],
            );
            let index = git(wt, &["ls-files", "--sparse"]);
            assert!(
                index.lines().any(|l| l == "docs/"),
                "a sparse index: {index}"
            );
            write(&wt.join("outside/new.txt"), "outside the cone\n");
        }
        write(&wt.join("src/lib.txt"), "edited\n");
        write(&wt.join("staged.txt"), "staged\n");
        git(wt, &["add", "staged.txt"]);
        write(&wt.join("notes.md"), "only copy\n");
        git(wt, &["update-ref", "refs/worktree/checkpoint", "HEAD"]);
    }
    for p in [&repo, &origin, &dirty, &clean, &reap_dirty, &state] {
        chown_r(p, OWNER);
    }
    if format.layout == "partial" {
        chown_r(&feat, OWNER);
    }
    set_mtime(&reap_dirty, "2 hours ago");
    let before_dirty = capture(Some(OWNER), &dirty).unwrap();
    let before_reap = capture(Some(OWNER), &reap_dirty).unwrap();
    let packs = promisor_packs(&repo);
    // Out of reach while treeward runs: a fetch would fail, not hang.
    let away = base.join("origin.away");
    if format.layout == "partial" {
        std::fs::rename(&origin, &away).unwrap();
    }

    // check
    let mut paths = vec![dirty.clone(), clean.clone(), reap_dirty.clone()];
    if format.layout == "partial" {
        paths.push(feat.clone());
    }
    let out = common::treeward_command("treeward-check", &cfg_sweep, None, &["--json"])
        .args(&paths)
        .output()
        .unwrap();
    let (_, doc, stderr) = common::json_report(&out);
    for (p, at_risk) in [(&dirty, true), (&clean, false), (&reap_dirty, true)] {
        let row = check_row(&doc, p);
        expect(
            row.is_some_and(|w| w["at_risk"] == at_risk && w["error"].is_null()),
            format!(
                "check {}: want at_risk {at_risk}, no error; got {}",
                p.strip_prefix(base).unwrap().display(),
                row.map_or(format!("nothing ({stderr})"), |w| format!(
                    "{} {} {}",
                    w["at_risk"], w["reasons"], w["error"]
                ))
            ),
        );
    }
    if format.layout == "partial" {
        // Clean, its branch kept by any removal: not at risk, or a
        // missing object failing closed (at risk, with the error).
        let row = check_row(&doc, &feat);
        let answered = row.is_some_and(|w| w["at_risk"] == false && w["error"].is_null());
        let closed = row.is_some_and(|w| w["at_risk"] == true && !w["error"].is_null());
        expect(
            answered || closed,
            format!("check feat (a partial clone's missing blob): {row:?}"),
        );
        eprintln!(
            "{}: check of feat {}",
            format.name(),
            if answered {
                "answered without the missing blob"
            } else {
                "failed closed"
            }
        );
    }

    // sweep
    let out = common::treeward_command(
        "treeward-sweep",
        &cfg_sweep,
        None,
        &["--json", "--budget", "10m"],
    )
    .output()
    .unwrap();
    let (code, sweep, stderr) = common::json_report(&out);
    expect(code == 0, format!("sweep exit {code}: {stderr}"));
    let a = action(&sweep, &dirty);
    expect(a.starts_with("preserved"), format!("sweep dirty: {a}"));
    let a = action(&sweep, &clean);
    expect(a.starts_with("removed"), format!("sweep clean: {a}"));
    if format.layout == "partial" {
        let a = action(&sweep, &feat);
        expect(
            a.starts_with("removed") || a.starts_with("preserved") || a.starts_with("kept"),
            format!("sweep feat: {a}"),
        );
        let tip = git_as(
            OWNER,
            &repo,
            &["rev-parse", "--verify", "-q", "refs/heads/feat"],
        );
        expect(
            !tip.is_empty(),
            "sweep deleted the unintegrated branch feat".to_owned(),
        );
    }

    // reap, as the owner
    let out = common::treeward_command("treeward-reap", &cfg_reap, Some(OWNER), &["--json"])
        .output()
        .unwrap();
    let (code, reap, stderr) = common::json_report(&out);
    expect(code == 0, format!("reap exit {code}: {stderr}"));
    let a = action(&reap, &reap_dirty);
    expect(a.starts_with("preserved"), format!("reap dirty: {a}"));

    // restore: the sweep's set as root, the reaper's as the owner
    if let Err(e) = restore_and_compare(
        &cfg_sweep,
        None,
        preserved_set(&sweep, &dirty),
        &repo,
        &dirty,
        &before_dirty,
    ) {
        expect(false, format!("restore of the swept set: {e}"));
    }
    if let Err(e) = restore_and_compare(
        &cfg_reap,
        Some(OWNER),
        preserved_set(&reap, &reap_dirty),
        &repo,
        &reap_dirty,
        &before_reap,
    ) {
        expect(false, format!("restore of the reaped set: {e}"));
    }

    if format.layout == "partial" {
        expect(
            promisor_packs(&repo) == packs,
            format!(
                "treeward fetched: {packs} promisor packs became {}",
                promisor_packs(&repo)
            ),
        );
        std::fs::rename(&away, &origin).unwrap();
    }
    expect(
        formats_of(Some(OWNER), &repo) == want,
        format!(
            "the repository's formats changed: {:?}",
            formats_of(Some(OWNER), &repo)
        ),
    );
    expect(
        common::root_owned(&repo).is_empty(),
        format!(
            "root-owned files in the repository: {:?}",
            common::root_owned(&repo)
        ),
    );
    problems
}

#[test]
fn every_repository_format_goes_through_check_sweep_reap_and_restore() {
    if !common::prerequisite(
        common::is_root(),
        "the format matrix runs as root (CI does): the sweep acts for uid 4242, the reaper runs as it",
    ) {
        return;
    }
    let mut formats = Vec::new();
    for refs in ["files", "reftable"] {
        for objects in ["sha1", "sha256"] {
            for layout in ["plain", "sparse", "partial"] {
                formats.push(Format {
                    refs,
                    objects,
                    layout,
                });
            }
        }
    }
    let mut failed = 0;
    let mut table = String::new();
    for format in formats {
        let started = std::time::Instant::now();
        let problems = run_format(format);
        failed += usize::from(!problems.is_empty());
        table.push_str(&format!(
            "{:<26} {:>6.1?} {}\n",
            format.name(),
            started.elapsed(),
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                format!("FAIL ({})", problems.len())
            }
        ));
        for p in problems {
            table.push_str(&format!("    - {p}\n"));
        }
    }
    eprintln!("\n==== repository formats\n{table}");
    assert_eq!(failed, 0, "formats that failed (table above)");
}
