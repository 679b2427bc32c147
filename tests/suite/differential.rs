//! A differential property test: generated worktree states, judged by an
//! oracle made of git plumbing (`tests/common/worktree.rs`, no treeward
//! code), against `treeward-check --json`, one `treeward-sweep` pass under
//! `policy = "preserve"` and `treeward restore` of every preserved set.
//!
//! The generator (a SplitMix64 stream from a fixed seed: the same states on
//! every run, no crate needed) builds each state as one linked worktree of
//! one of a few repositories, all in one root, from:
//! - a history: a fresh branch, commits ahead, merged, squash-merged or
//!   cherry-picked into `main`, rebased onto it, pushed, a detached HEAD on
//!   `main` or with commits of its own;
//! - an operation in progress with a conflict (merge, rebase, cherry-pick,
//!   revert) or a bisection;
//! - per-worktree refs (`refs/worktree/*`, `refs/bisect/*`,
//!   `refs/rewritten/*`), some naming commits only they reach;
//! - working-tree states: staged, modified, deleted, untracked, ignored,
//!   an executable bit, symlinks, a type change, a staged rename;
//! - index flags (skip-worktree and assume-unchanged hiding an edit, an
//!   unedited skip-worktree entry, intent-to-add);
//! - attributes (`eol=crlf`, a `rev` filter) on an edited file;
//! - a sparse checkout (cone, with or without a sparse index), with files
//!   present outside its patterns;
//! - submodules (their git dir in the admin dir) and embedded
//!   repositories, with uncommitted edits and unpushed commits;
//! - odd names: a newline, non-UTF-8 bytes (also a directory), leading
//!   dashes.
//!
//! About half the states carry one feature only, so that a failure names
//! its cause. The repositories and worktrees are handed to uid 4242, the
//! sweep runs as root, restore as root (acting as the owner).
//!
//! It prints the counts (states, false "not at risk", false "at risk",
//! losses, exact round trips, and a table per feature) and asserts 0 false
//! "not at risk", 0 losses and an exact round trip for every preserved
//! state outside SPEC's exceptions. `TREEWARD_DIFF_STATES` (default 300)
//! and `TREEWARD_DIFF_SEED` choose a longer or another run (README).

use crate::common;

use common::worktree::{self, capture, differences, oracle, WorktreeState};
use common::{chown_r, git, git_as, git_output, write, Fixture};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const OWNER: u32 = 4242;
const DEFAULT_STATES: usize = 300;
const DEFAULT_SEED: u64 = 0x7ee_3a7d_2026;
/// Worktrees per repository: few repositories, one sweep pass.
const PER_REPO: usize = 40;

/// SplitMix64: a small, fixed, well-mixed stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const HISTORIES: [&str; 9] = [
    "h:fresh",
    "h:ahead",
    "h:merged",
    "h:squashed",
    "h:cherry_picked",
    "h:rebased",
    "h:pushed",
    "h:detached_main",
    "h:detached_ahead",
];

/// The features a state may carry besides its history, by group: at most
/// one of each group.
const GROUPS: [&[&str]; 8] = [
    &[
        "op:merge",
        "op:rebase",
        "op:rebase_merges",
        "op:rebase_exec",
        "op:cherry_pick",
        "op:cherry_pick_empty",
        "op:revert",
        "op:bisect",
    ],
    &[
        "ref:worktree_head",
        "ref:worktree_only",
        "ref:bisect_only",
        "ref:rewritten_only",
    ],
    &[
        "wt:staged_new",
        "wt:staged_modify",
        "wt:modified",
        "wt:deleted",
        "wt:staged_delete",
        "wt:untracked",
        "wt:untracked_deep",
        "wt:exec_bit",
        "wt:symlink_new",
        "wt:type_change",
        "wt:rename_staged",
        "wt:ignored_only",
    ],
    &[
        "flag:skip_worktree_edit",
        "flag:assume_unchanged_edit",
        "flag:skip_worktree_clean",
        "flag:intent_to_add",
    ],
    &["attr:eol_crlf", "attr:filter"],
    &[
        "sparse:outside_untracked",
        "sparse:outside_tracked",
        "sparse:index_outside_untracked",
        "sparse:cone_with_edit",
    ],
    &[
        "nest:submodule_clean",
        "nest:submodule_dirty",
        "nest:submodule_unpushed",
        "nest:embedded_untracked",
        "nest:embedded_staged",
        "nest:embedded_committed",
        "nest:embedded_dirty",
    ],
    &[
        "name:newline",
        "name:non_utf8",
        "name:non_utf8_dir",
        "name:leading_dash",
        "name:tracked_odd",
    ],
];

/// One generated worktree state.
struct State {
    name: String,
    repo: usize,
    path: PathBuf,
    tags: Vec<&'static str>,
    /// The branch it is on and that branch's tip, before the sweep.
    branch: Option<(String, String)>,
}

impl State {
    fn has(&self, tag: &str) -> bool {
        self.tags.contains(&tag)
    }
}

/// Draws the tags of state `i`: a history, then none (a fifth of the
/// states), one feature (about half) or two to four, never two of a group
/// and never pairs the generator cannot build together.
fn draw(rng: &mut Rng) -> Vec<&'static str> {
    let mut tags = vec![rng.pick(&HISTORIES)];
    let roll = rng.below(100);
    let count = match roll {
        0..=19 => 0,
        20..=69 => 1,
        _ => 2 + rng.below(3),
    };
    let mut groups: Vec<usize> = (0..GROUPS.len()).collect();
    for _ in 0..count {
        if groups.is_empty() {
            break;
        }
        let g = groups.remove(rng.below(groups.len()));
        tags.push(rng.pick(GROUPS[g]));
    }
    let detached = tags[0].starts_with("h:detached");
    let has = |tags: &[&str], p: &str| tags.iter().any(|t| t.starts_with(p));
    // An operation runs on a branch and needs a tree it can check out:
    // no sparse checkout, no flags hiding edits from it.
    if has(&tags, "op:") {
        if detached {
            tags.retain(|t| !t.starts_with("op:"));
        } else {
            tags.retain(|t| !t.starts_with("sparse:") && !t.starts_with("flag:"));
        }
    }
    // A sparse checkout keeps to refs and untracked odd names: git refuses
    // to add or commit paths outside its patterns.
    if has(&tags, "sparse:") {
        tags.retain(|t| {
            !["wt:", "nest:", "attr:", "flag:", "name:tracked_odd"]
                .iter()
                .any(|p| t.starts_with(p))
        });
    }
    tags
}

/// A repository of the run: the fixture, a bare repository its submodules
/// come from, and its states.
struct Repo {
    f: Fixture,
    sub_origin: PathBuf,
}

fn make_repo(base: &Path) -> Repo {
    let f = Fixture::new_in(base);
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = f.tmp.path().join("sub-src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    write(&src.join("lib.txt"), "sub one\n");
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "sub initial"]);
    let sub_origin = f.tmp.path().join("sub-origin.git");
    git(
        f.tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            sub_origin.to_str().unwrap(),
        ],
    );
    // Files the index-flag states mark, on main from the start.
    for name in ["a", "b", "c"] {
        write(&f.repo.join(format!("flags/{name}.txt")), "flagged\n");
    }
    git(&f.repo, &["add", "flags"]);
    git(&f.repo, &["commit", "-q", "-m", "files for flags"]);
    git(&f.repo, &["push", "-q", "origin", "main"]);
    // A clean filter and a smudge filter that undo each other.
    git(&f.repo, &["config", "filter.rev.clean", "rev"]);
    git(&f.repo, &["config", "filter.rev.smudge", "rev"]);
    Repo { f, sub_origin }
}

/// `git args` in `dir`, which must fail (a conflict): its stdout+stderr.
fn git_fails(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        !out.status.success(),
        "git {args:?} in {} was expected to stop on a conflict",
        dir.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn commit_file(dir: &Path, file: &str, text: &str, message: &str) {
    write(&dir.join(file), text);
    git(dir, &["add", "--", file]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// A commit on top of HEAD that only the ref made from it will reach.
fn dangling_commit(wt: &Path, message: &str) -> String {
    git(
        wt,
        &["commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", message],
    )
}

fn bytes_path(dir: &Path, name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(name))
}

/// Builds state `name` of `repo` at `path`, as `tags` say: first every
/// commit (history, the files later edits need, attributes, nested
/// repositories), then the operation in progress, then everything left
/// uncommitted.
fn build(repo: &Repo, name: &str, path: &Path, tags: &[&'static str]) {
    let main_repo = &repo.f.repo;
    let has = |t: &str| tags.contains(&t);
    let wt = path;
    let d = name; // the state's own directory in the tree
    let in_d = |file: &str| format!("{d}/{file}");
    let history = tags[0];
    let branch = format!("b-{name}");
    match history {
        "h:detached_main" | "h:detached_ahead" => common::add_worktree(main_repo, wt, None),
        _ => common::add_worktree(main_repo, wt, Some(&branch)),
    }
    let ahead = |n: usize| {
        for k in 0..n {
            commit_file(
                wt,
                &in_d("a.txt"),
                &format!("{name} {k}\n"),
                &format!("{name}: work {k}"),
            );
        }
    };
    match history {
        "h:fresh" | "h:detached_main" => {}
        "h:ahead" | "h:detached_ahead" => ahead(2),
        "h:merged" => {
            ahead(2);
            git(
                main_repo,
                &["merge", "-q", "--no-ff", "-m", "merge", &branch],
            );
        }
        "h:squashed" => {
            ahead(2);
            git(main_repo, &["merge", "-q", "--squash", &branch]);
            git(
                main_repo,
                &["commit", "-q", "-m", &format!("squash {name}")],
            );
        }
        "h:cherry_picked" => {
            ahead(1);
            git(main_repo, &["cherry-pick", &branch]);
        }
        "h:rebased" => {
            ahead(1);
            commit_file(
                main_repo,
                &format!("main-{name}.txt"),
                "main moved\n",
                "main moves on",
            );
            git(wt, &["rebase", "-q", "main"]);
        }
        "h:pushed" => {
            ahead(1);
            git(wt, &["push", "-q", "-u", "origin", &branch]);
        }
        other => panic!("history {other}"),
    }

    // Commits the later, uncommitted edits need.
    let odd = bytes_path(wt, format!("{d}/-odd\nname \u{e9}.txt").as_bytes());
    if has("name:tracked_odd") {
        std::fs::create_dir_all(wt.join(d)).unwrap();
        std::fs::write(&odd, "odd tracked\n").unwrap();
        git(wt, &["add", "-A", "--", d]);
        git(wt, &["commit", "-q", "-m", "an odd name"]);
    }
    if has("sparse:outside_tracked") {
        commit_file(wt, &in_d("t.txt"), "tracked\n", "a tracked file");
    }
    if has("wt:type_change") || has("wt:symlink_new") {
        commit_file(wt, &in_d("plain.txt"), "plain\n", "a plain file");
    }
    if has("attr:eol_crlf") {
        commit_file(
            wt,
            &in_d(".gitattributes"),
            "*.crlf text eol=crlf\n",
            "crlf",
        );
        commit_file(wt, &in_d("x.crlf"), "one\ntwo\n", "a crlf file");
        std::fs::remove_file(wt.join(in_d("x.crlf"))).unwrap();
        git(wt, &["checkout", "--", &in_d("x.crlf")]);
        let bytes = std::fs::read(wt.join(in_d("x.crlf"))).unwrap();
        assert_eq!(bytes, b"one\r\ntwo\r\n", "eol=crlf applied on checkout");
    }
    if has("attr:filter") {
        commit_file(
            wt,
            &in_d(".gitattributes"),
            "*.rev filter=rev\n",
            "a filter",
        );
        commit_file(wt, &in_d("x.rev"), "hello\nworld\n", "a filtered file");
        std::fs::remove_file(wt.join(in_d("x.rev"))).unwrap();
        git(wt, &["checkout", "--", &in_d("x.rev")]);
        let blob = git(wt, &["cat-file", "-p", &format!("HEAD:{}", in_d("x.rev"))]);
        assert_eq!(blob, "olleh\ndlrow", "the clean filter ran");
    }
    let sub = format!("mods/{d}");
    if tags.iter().any(|t| t.starts_with("nest:submodule")) {
        let url = repo.sub_origin.to_str().unwrap();
        let allow = "protocol.file.allow=always";
        git(wt, &["-c", allow, "submodule", "add", "-q", url, &sub]);
        git(wt, &["commit", "-q", "-m", "a submodule"]);
        let gitfile = std::fs::read_to_string(wt.join(&sub).join(".git")).unwrap();
        assert!(
            gitfile.contains("/worktrees/"),
            "the submodule's git dir is in the admin dir: {gitfile}"
        );
    }
    let emb = format!("{d}-emb");
    let emb_dir = wt.join(&emb);
    if tags.iter().any(|t| t.starts_with("nest:embedded")) {
        std::fs::create_dir_all(&emb_dir).unwrap();
        git(&emb_dir, &["init", "-q", "-b", "main"]);
        commit_file(&emb_dir, "inner.txt", "embedded\n", "embedded work");
    }
    if has("nest:embedded_committed") || has("nest:embedded_dirty") {
        git(wt, &["-c", "advice.addEmbeddedRepo=false", "add", &emb]);
        git(wt, &["commit", "-q", "-m", "an embedded repository"]);
    }

    // An operation in progress, stopped on a conflict in <d>/c.txt.
    let c = in_d("c.txt");
    let side = format!("side-{name}");
    let conflict_setup = || {
        commit_file(wt, &c, "base\n", "base of the conflict");
        git(wt, &["checkout", "-q", "-b", &side]);
        commit_file(wt, &c, "theirs\n", "theirs");
        git(wt, &["checkout", "-q", &branch]);
        commit_file(wt, &c, "ours\n", "ours");
    };
    for t in tags {
        match *t {
            "op:merge" => {
                conflict_setup();
                git_fails(wt, &["merge", "--no-edit", &side]);
            }
            "op:cherry_pick" => {
                conflict_setup();
                git_fails(wt, &["cherry-pick", &side]);
            }
            "op:rebase" => {
                conflict_setup();
                git_fails(wt, &["rebase", &side]);
            }
            "op:rebase_merges" => {
                // Its todo list labels `onto`: refs/rewritten/onto exists
                // while it stops.
                conflict_setup();
                git_fails(wt, &["rebase", "--rebase-merges", &side]);
                git(wt, &["rev-parse", "--verify", "refs/rewritten/onto"]);
            }
            "op:rebase_exec" => {
                // Stopped by a failing `exec`: a clean tree, only the
                // operation's state says anything is going on.
                commit_file(wt, &c, "to rebase\n", "to rebase");
                git_fails(wt, &["rebase", "-x", "false", "HEAD~1"]);
                let status = git(wt, &["status", "--porcelain", "--untracked-files=no"]);
                assert_eq!(status, "", "a clean tree while the rebase stops");
            }
            "op:cherry_pick_empty" => {
                // The pick is already there: it stops with CHERRY_PICK_HEAD
                // (a ref, not a file, under reftable) and a clean tree.
                commit_file(wt, &c, "base\n", "base of the pick");
                git(wt, &["checkout", "-q", "-b", &side]);
                commit_file(wt, &c, "same\n", "the pick");
                git(wt, &["checkout", "-q", &branch]);
                commit_file(wt, &c, "same\n", "the same change");
                git_fails(wt, &["cherry-pick", &side]);
                git(wt, &["rev-parse", "--verify", "CHERRY_PICK_HEAD"]);
                let status = git(wt, &["status", "--porcelain", "--untracked-files=no"]);
                assert_eq!(status, "", "a clean tree while the pick stops");
            }
            "op:revert" => {
                commit_file(wt, &c, "one\n", "one");
                commit_file(wt, &c, "two\n", "two");
                commit_file(wt, &c, "three\n", "three");
                git_fails(wt, &["revert", "--no-edit", "HEAD~1"]);
            }
            "op:bisect" => {
                for k in 0..4 {
                    commit_file(wt, &c, &format!("{k}\n"), &format!("step {k}"));
                }
                git(wt, &["bisect", "start", "HEAD", "HEAD~4"]);
                git(wt, &["bisect", "good"]);
            }
            _ => {}
        }
    }

    // Per-worktree refs.
    for t in tags {
        let (r, only) = match *t {
            "ref:worktree_head" => ("refs/worktree/checkpoint", false),
            "ref:worktree_only" => ("refs/worktree/wip", true),
            "ref:bisect_only" => ("refs/bisect/bad", true),
            "ref:rewritten_only" => ("refs/rewritten/onto", true),
            _ => continue,
        };
        let target = if only {
            dangling_commit(wt, &format!("only {r} reaches me"))
        } else {
            "HEAD".to_owned()
        };
        git(wt, &["update-ref", r, &target]);
    }

    // A sparse checkout: the cone is `src`, so <d>/ and zz-<d>/ lie outside.
    for t in tags {
        match *t {
            "sparse:outside_untracked" | "sparse:cone_with_edit" => {
                git(wt, &["sparse-checkout", "set", "--cone", "src"]);
            }
            "sparse:index_outside_untracked" => {
                let args = ["sparse-checkout", "set", "--cone", "--sparse-index", "src"];
                git(wt, &args);
            }
            "sparse:outside_tracked" => {
                git(wt, &["sparse-checkout", "set", "--cone", "src"]);
                assert!(!wt.join(in_d("t.txt")).exists());
                write(&wt.join(in_d("t.txt")), "tracked, back and edited\n");
            }
            _ => {}
        }
    }
    if has("sparse:outside_untracked") || has("sparse:index_outside_untracked") {
        write(&wt.join(format!("zz-{d}/new.txt")), "outside the cone\n");
    }
    if has("sparse:cone_with_edit") {
        write(&wt.join("src/lib.txt"), "edited inside the cone\n");
    }

    // Uncommitted edits: attributed files, nested repositories.
    if has("attr:eol_crlf") {
        write(&wt.join(in_d("x.crlf")), "one\r\ntwo\r\nthree\r\n");
    }
    if has("attr:filter") {
        write(&wt.join(in_d("x.rev")), "hello\nworld\nagain\n");
    }
    if has("name:tracked_odd") {
        std::fs::write(&odd, "odd tracked, edited\n").unwrap();
    }
    for t in tags {
        match *t {
            "nest:submodule_dirty" => write(&wt.join(&sub).join("lib.txt"), "sub edited\n"),
            "nest:submodule_unpushed" => {
                commit_file(&wt.join(&sub), "lib.txt", "sub two\n", "sub work")
            }
            "nest:embedded_staged" => {
                git(wt, &["-c", "advice.addEmbeddedRepo=false", "add", &emb]);
            }
            "nest:embedded_dirty" => {
                write(&emb_dir.join("inner.txt"), "embedded, edited\n");
                write(&emb_dir.join("new.txt"), "embedded, untracked\n");
            }
            _ => {}
        }
    }

    // Index flags.
    for t in tags {
        match *t {
            "flag:skip_worktree_edit" => {
                git(wt, &["update-index", "--skip-worktree", "flags/a.txt"]);
                write(&wt.join("flags/a.txt"), "hidden by skip-worktree\n");
            }
            "flag:assume_unchanged_edit" => {
                git(wt, &["update-index", "--assume-unchanged", "flags/b.txt"]);
                write(&wt.join("flags/b.txt"), "hidden by assume-unchanged\n");
            }
            "flag:skip_worktree_clean" => {
                git(wt, &["update-index", "--skip-worktree", "flags/c.txt"]);
                write(&wt.join(format!("{d}-note.txt")), "untracked\n");
            }
            "flag:intent_to_add" => {
                write(&wt.join(format!("{d}-ita.txt")), "intent to add\n");
                git(wt, &["add", "-N", &format!("{d}-ita.txt")]);
            }
            _ => {}
        }
    }

    // Working-tree states.
    for t in tags {
        match *t {
            "wt:staged_new" => {
                write(&wt.join(in_d("staged.txt")), "staged\n");
                git(wt, &["add", &in_d("staged.txt")]);
            }
            "wt:staged_modify" => {
                write(&wt.join("README"), "staged edit\n");
                git(wt, &["add", "README"]);
                write(&wt.join("README"), "staged edit, edited again\n");
            }
            "wt:modified" => write(&wt.join("src/lib.txt"), "modified\n"),
            "wt:deleted" => std::fs::remove_file(wt.join("src/lib.txt")).unwrap(),
            "wt:staged_delete" => {
                git(wt, &["rm", "-q", "README"]);
            }
            "wt:untracked" => write(&wt.join(format!("{d}-untracked.md")), "only copy\n"),
            "wt:untracked_deep" => write(
                &wt.join(format!("{d}-notes/deep/er/untracked.md")),
                "only copy, deep\n",
            ),
            "wt:exec_bit" => {
                let mode = std::fs::Permissions::from_mode(0o755);
                std::fs::set_permissions(wt.join("src/lib.txt"), mode).unwrap();
            }
            "wt:symlink_new" => {
                std::os::unix::fs::symlink("plain.txt", wt.join(in_d("link"))).unwrap()
            }
            "wt:type_change" => {
                let p = wt.join(in_d("plain.txt"));
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink("../README", &p).unwrap();
            }
            "wt:rename_staged" => {
                git(wt, &["mv", "src/lib.txt", "src/renamed.txt"]);
            }
            "wt:ignored_only" => {
                write(&wt.join(format!("{d}.log")), "ignored\n");
                write(&wt.join("target/out.bin"), "ignored too\n");
            }
            _ => {}
        }
    }

    // Odd names (untracked).
    for t in tags {
        match *t {
            "name:newline" => write(&wt.join(format!("{d}-new\nline.txt")), "newline\n"),
            "name:non_utf8" => {
                std::fs::write(bytes_path(wt, b"caf\xe9-\xff.txt"), "latin-1\n").unwrap()
            }
            "name:non_utf8_dir" => {
                let dir = bytes_path(wt, b"dir-\xfe\xff");
                std::fs::create_dir(&dir).unwrap();
                std::fs::write(dir.join("inside.txt"), "in a non-UTF-8 directory\n").unwrap();
            }
            "name:leading_dash" => {
                write(&wt.join("-rf"), "a leading dash\n");
                write(&wt.join("--help"), "two leading dashes\n");
            }
            _ => {}
        }
    }
}

/// What the generator meant, where its tags settle it: `Some(true)` when
/// one feature always leaves work at risk, `Some(false)` when every one
/// leaves none, `None` otherwise. The oracle must agree (the test checks
/// its own judge).
fn meant_at_risk(tags: &[&str]) -> Option<bool> {
    const NONE: [&str; 9] = [
        "h:fresh",
        "h:ahead",
        "h:merged",
        "h:squashed",
        "h:cherry_picked",
        "h:rebased",
        "h:pushed",
        "h:detached_main",
        "wt:ignored_only",
    ];
    const NONE_TOO: [&str; 1] = ["nest:submodule_clean"];
    if tags
        .iter()
        .all(|t| NONE.contains(t) || NONE_TOO.contains(t))
    {
        return Some(false);
    }
    let always = tags
        .iter()
        .any(|t| !NONE.contains(t) && !NONE_TOO.contains(t) && *t != "flag:skip_worktree_clean");
    always.then_some(true)
}

/// What the run found about one state.
#[derive(Default, Clone)]
struct Outcome {
    oracle: Vec<String>,
    check_at_risk: Option<bool>,
    check_reasons: String,
    action: String,
    /// Parts lost (at-risk work that did not come back).
    lost: Vec<(&'static str, String)>,
    /// Parts restored, but not exactly.
    inexact: Vec<(&'static str, String)>,
    restored: bool,
    /// Its branch was integrated (SPEC), the worktree went, and the
    /// branch is still there: cleanup left undone, not a loss.
    integrated_branch_left: bool,
}

/// Parts of a capture whose difference means work is gone, not merely
/// restored differently.
const LOSS_PARTS: [&str; 5] = ["files", "head", "worktree_refs", "nested", "restore"];

fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(2)
        .clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let r = f(i);
                out.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// `<name>/<stamp>` of a set preserved for the entry `name`, looked up in
/// the repository itself.
fn set_in_repo(repo: &Path, name: &str) -> Option<String> {
    let prefix = format!("refs/treeward/preserved/{name}/");
    let refs = git_as(
        OWNER,
        repo,
        &["for-each-ref", "--format=%(refname)", &prefix],
    );
    set_of(&serde_json::json!(refs.lines().collect::<Vec<_>>()))
}

/// `treeward restore <set> --repo <repo> --path <path> --json` as root.
fn restore_set(cfg: &Path, repo: &Path, set: &str, path: &Path) -> Result<(), String> {
    let args = [
        "restore".as_ref(),
        set.as_ref(),
        "--json".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--path".as_ref(),
        path.as_os_str(),
    ];
    let out = common::treeward_command::<&std::ffi::OsStr>("treeward", cfg, None, &args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether the admin dir the worktree at `wt` names in its `.git` file
/// still exists.
fn admin_dir_exists(wt: &Path) -> bool {
    std::fs::read_to_string(wt.join(".git")).is_ok_and(|text| {
        text.strip_prefix("gitdir: ")
            .is_some_and(|dir| Path::new(dir.trim_end()).is_dir())
    })
}

/// Where the sweep left the entry `path` in its root's trash
/// (`.treeward-trash/<pass>/<name>`), if it did.
fn in_trash(path: &Path) -> Option<PathBuf> {
    let trash = path.parent()?.join(".treeward-trash");
    std::fs::read_dir(trash)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(path.file_name().unwrap()))
        .find(|p| p.exists())
}

/// `<name>/<stamp>` of a preserved set, from one of its refs.
fn set_of(refs: &Value) -> Option<String> {
    let r = refs.as_array()?.first()?.as_str()?;
    let rest = r.strip_prefix("refs/treeward/preserved/")?;
    let mut parts = rest.splitn(3, '/');
    Some(format!("{}/{}", parts.next()?, parts.next()?))
}

/// Whether the branch tip `tip` is integrated into `main` or `origin/main`
/// in `repo` (same commit, ancestor, patch-equivalent, or its changes
/// already there), by git plumbing.
fn integrated(repo: &Path, tip: &str) -> bool {
    ["main", "origin/main"].iter().any(|target| {
        let ok = |args: &[&str]| git_as_ok(repo, args);
        if ok(&["merge-base", "--is-ancestor", tip, target]) {
            return true;
        }
        let cherry = git_as(OWNER, repo, &["cherry", target, tip]);
        if cherry.lines().all(|l| l.starts_with('-')) {
            return true;
        }
        let merged = common::git_output_as(
            Some(OWNER),
            repo,
            &["merge-tree", "--write-tree", target, tip],
        );
        let tree = String::from_utf8_lossy(&merged.stdout);
        merged.status.success()
            && tree.lines().next()
                == Some(&git_as(
                    OWNER,
                    repo,
                    &["rev-parse", &format!("{target}^{{tree}}")],
                ))
    })
}

fn git_as_ok(dir: &Path, args: &[&str]) -> bool {
    common::git_output_as(Some(OWNER), dir, args)
        .status
        .success()
}

/// After a restore: whether the interrupted operation continues (`git <op>
/// --continue` once the conflict is resolved), or the bisection goes on.
fn operation_continues(wt: &Path, tags: &[&str]) -> Result<(), String> {
    let op = tags.iter().find_map(|t| t.strip_prefix("op:"));
    let Some(op) = op else { return Ok(()) };
    let run = |args: &[&str]| {
        let out = common::git_output_as(Some(OWNER), wt, args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let cmd = match op {
        "merge" => "merge",
        "rebase" | "rebase_merges" => "rebase",
        "rebase_exec" => {
            // No conflict to resolve: set the other changes aside, go on.
            run(&["stash", "push", "-q", "--include-untracked"])?;
            return run(&["-c", "core.editor=true", "rebase", "--continue"]);
        }
        // Already applied: going on means skipping it.
        "cherry_pick_empty" => return run(&["cherry-pick", "--skip"]),
        "cherry_pick" => "cherry-pick",
        "revert" => "revert",
        "bisect" => return run(&["bisect", "bad"]),
        other => panic!("op {other}"),
    };
    run(&["add", "-A", "--", "."])?;
    run(&["-c", "core.editor=true", cmd, "--continue"])
}

#[test]
fn generated_states_against_a_git_plumbing_oracle() {
    if !common::prerequisite(
        common::is_root(),
        "the differential test runs as root (CI does): the sweep acts for uid 4242",
    ) {
        return;
    }
    let _busy = common::busy();
    let started = Instant::now();
    let states_wanted =
        env_number("TREEWARD_DIFF_STATES").unwrap_or(DEFAULT_STATES as u64) as usize;
    let seed = env_number("TREEWARD_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    eprintln!("differential: {states_wanted} states, seed {seed:#x}");

    let base = common::strict_tempdir();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // Like /tmp: the owner restores its worktrees there.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let cfg = base.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\n\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\npolicy = \"preserve\"\nowner = \"{OWNER}\"\n",
            base.path().join("ledger.json").display(),
            root.display()
        ),
    )
    .unwrap();

    // Draw every state first (one stream: the same states whatever the
    // threads do), then build the repositories in parallel.
    let mut rng = Rng(seed);
    let repos_n = states_wanted.div_ceil(PER_REPO);
    let mut plan: Vec<State> = Vec::new();
    for i in 0..states_wanted {
        let name = format!("s{i:04}");
        plan.push(State {
            path: root.join(&name),
            repo: i % repos_n,
            name,
            tags: draw(&mut rng),
            branch: None,
        });
    }
    let repos: Vec<Repo> = parallel(repos_n, |r| {
        let repo = make_repo(base.path());
        for s in plan.iter().filter(|s| s.repo == r) {
            build(&repo, &s.name, &s.path, &s.tags);
        }
        repo
    });
    for s in &mut plan {
        let head = common::git_output(&s.path, &["symbolic-ref", "-q", "--short", "HEAD"]);
        let name = if head.status.success() {
            Some(String::from_utf8_lossy(&head.stdout).trim().to_owned())
        } else if [
            "op:rebase",
            "op:rebase_merges",
            "op:rebase_exec",
            "op:bisect",
        ]
        .iter()
        .any(|t| s.has(t))
        {
            // Detached by the operation: the branch is still its own.
            Some(format!("b-{}", s.name))
        } else {
            None
        };
        s.branch = name.map(|n| {
            let tip = git(&s.path, &["rev-parse", &n]);
            (n, tip)
        });
    }
    for r in &repos {
        chown_r(r.f.tmp.path(), OWNER);
    }
    for s in &plan {
        chown_r(&s.path, OWNER);
    }
    let built = started.elapsed();

    // The oracle and the state before, as the owner.
    let surviving: Vec<Vec<String>> = repos
        .iter()
        .map(|r| worktree::surviving_tips(Some(OWNER), &r.f.repo))
        .collect();
    let judged: Vec<(Vec<String>, WorktreeState)> = parallel(plan.len(), |i| {
        let s = &plan[i];
        let why = oracle(Some(OWNER), &s.path, &surviving[s.repo]);
        let before = capture(Some(OWNER), &s.path)
            .unwrap_or_else(|e| panic!("{} {:?}: {e}", s.name, s.tags));
        (why, before)
    });
    for (s, (why, _)) in plan.iter().zip(&judged) {
        if let Some(meant) = meant_at_risk(&s.tags) {
            assert_eq!(
                !why.is_empty(),
                meant,
                "the oracle disagrees with the generator on {} {:?}: {why:?}",
                s.name,
                s.tags
            );
        }
        assert!(
            !why.iter().any(|w| w.starts_with("error")),
            "the oracle failed on {} {:?}: {why:?}",
            s.name,
            s.tags
        );
    }
    let mut outcomes: Vec<Outcome> = judged
        .iter()
        .map(|(why, _)| Outcome {
            oracle: why.clone(),
            ..Outcome::default()
        })
        .collect();
    let branch_integrated: Vec<bool> = plan
        .iter()
        .map(|s| {
            s.branch
                .as_ref()
                .is_some_and(|(_, tip)| integrated(&repos[s.repo].f.repo, tip))
        })
        .collect();
    let judged_at = started.elapsed();

    // treeward-check --json on every state, in one run.
    let out = common::treeward_command("treeward-check", &cfg, None, &["--json"])
        .args(plan.iter().map(|s| &s.path))
        .output()
        .unwrap();
    let (_, doc, stderr) = common::json_report(&out);
    let rows = doc["worktrees"].as_array().cloned().unwrap_or_default();
    for (s, o) in plan.iter().zip(&mut outcomes) {
        let row = rows.iter().find(|w| w["path"] == s.path.to_str().unwrap());
        match row {
            Some(w) => {
                o.check_at_risk = w["at_risk"].as_bool();
                o.check_reasons = format!("{} {}", w["reasons"], w["error"]);
            }
            None => o.check_reasons = format!("not in the report: {stderr}"),
        }
    }
    let checked_at = started.elapsed();

    // One sweep pass, every drain done in it.
    let out =
        common::treeward_command("treeward-sweep", &cfg, None, &["--json", "--budget", "30m"])
            .output()
            .unwrap();
    let (code, sweep, stderr) = common::json_report(&out);
    eprintln!(
        "sweep: exit {code}, swept {} preserved {} kept {} failed {}",
        sweep["swept_count"], sweep["preserved_count"], sweep["kept_count"], sweep["failed_count"]
    );
    if code != 0 {
        eprintln!("sweep stderr: {stderr}");
    }
    let swept_at = started.elapsed();

    // Restore each preserved set where it was, and compare.
    let results: Vec<(String, worktree::Differences, bool)> = parallel(plan.len(), |i| {
        let s = &plan[i];
        let repo = &repos[s.repo].f.repo;
        let (_, before) = &judged[i];
        let entry = sweep["entries"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["path"] == s.path.to_str().unwrap()));
        let action = entry.map_or("unreported".to_owned(), |e| {
            e["action"].as_str().unwrap_or("?").to_owned()
        });
        let mut diffs = Vec::new();
        let mut restored = false;
        match action.as_str() {
            "preserved" => {
                let mut set = entry.and_then(|e| set_of(&e["preserved_refs"]));
                if set.is_none() {
                    // Not in the report: the repository may still have it.
                    set = set_in_repo(repo, &s.name);
                    if set.is_some() {
                        diffs.push(("report", "preserved_refs is empty, refs exist".to_owned()));
                    }
                }
                let run = set
                    .as_ref()
                    .map(|set| restore_set(&cfg, repo, set, &s.path));
                match run {
                    Some(Ok(())) => {
                        restored = true;
                        match capture(Some(OWNER), &s.path) {
                            Ok(after) => diffs.extend(differences(before, &after)),
                            Err(e) => diffs.push(("restore", format!("unreadable: {e}"))),
                        }
                        if let Err(e) = operation_continues(&s.path, &s.tags) {
                            diffs.push(("operation_continue", e));
                        }
                    }
                    Some(Err(e)) => diffs.push(("restore", e)),
                    None if s.path.exists() => match capture(Some(OWNER), &s.path) {
                        Ok(after) => diffs.extend(differences(before, &after)),
                        Err(e) => diffs.push(("restore", format!("unreadable in place: {e}"))),
                    },
                    None => diffs.push((
                        "restore",
                        "\"preserved\" with no preserved_refs, and the worktree is gone".to_owned(),
                    )),
                }
            }
            "removed" => {}
            _ => {
                // Left in place (kept, failed, skipped), or in the root's
                // trash for the next pass: it must be intact.
                let place = if s.path.exists() {
                    Some(s.path.clone())
                } else {
                    in_trash(&s.path)
                };
                match place {
                    Some(p) => match capture(Some(OWNER), &p) {
                        Ok(after) => diffs.extend(differences(before, &after)),
                        // Its files are there, but git cannot read them
                        // where they are (a relative gitfile moved down, an
                        // admin dir gone): stranded. Not lost if a set the
                        // sweep preserved restores it, or its admin dir is
                        // still there.
                        Err(e) if p != s.path => {
                            let set = entry
                                .and_then(|e| set_of(&e["preserved_refs"]))
                                .or_else(|| set_in_repo(repo, &s.name));
                            let admin = admin_dir_exists(&p);
                            let back = set
                                .as_ref()
                                .map(|set| restore_set(&cfg, repo, set, &s.path));
                            match back {
                                Some(Ok(())) => {
                                    restored = true;
                                    diffs
                                        .push(("stranded", format!("{e} (restored from {set:?})")));
                                    match capture(Some(OWNER), &s.path) {
                                        Ok(after) => diffs.extend(differences(before, &after)),
                                        Err(e) => {
                                            diffs.push(("restore", format!("unreadable: {e}")))
                                        }
                                    }
                                    if let Err(e) = operation_continues(&s.path, &s.tags) {
                                        diffs.push(("operation_continue", e));
                                    }
                                }
                                _ if admin => diffs.push(("stranded", e)),
                                Some(Err(r)) => diffs.push((
                                    "restore",
                                    format!("its admin dir is gone ({e}); restoring its set: {r}"),
                                )),
                                None => diffs.push((
                                    "restore",
                                    format!("its admin dir is gone and no set holds it: {e}"),
                                )),
                            }
                        }
                        Err(e) => diffs.push(("restore", format!("unreadable in place: {e}"))),
                    },
                    None => diffs.push(("restore", format!("{action}, and the worktree is gone"))),
                }
                if action != "kept" {
                    // Not swept: the pile-up treeward exists to prevent.
                    let error = entry.map_or(Value::Null, |e| e["error"].clone());
                    diffs.push(("not_swept", format!("{action}: {error}")));
                }
            }
        }
        (action, diffs, restored)
    });
    let restored_at = started.elapsed();

    // Controls of the judge: a restored worktree captured twice is the same
    // capture, and the comparison sees a changed byte and a changed flag.
    if let Some(i) = (0..plan.len()).find(|&i| results[i].2 && results[i].1.is_empty()) {
        let wt = &plan[i].path;
        let once = capture(Some(OWNER), wt).unwrap();
        let twice = capture(Some(OWNER), wt).unwrap();
        assert_eq!(
            differences(&once, &twice),
            vec![],
            "capture is deterministic"
        );
        let file = wt.join("README");
        if file.is_file() {
            let mut bytes = std::fs::read(&file).unwrap();
            bytes.push(b'!');
            std::fs::write(&file, bytes).unwrap();
            let after = capture(Some(OWNER), wt).unwrap();
            let parts: Vec<&str> = differences(&once, &after).iter().map(|d| d.0).collect();
            assert!(
                parts.contains(&"files"),
                "a changed byte is seen: {parts:?}"
            );
        }
        git_as(
            OWNER,
            wt,
            &["update-index", "--assume-unchanged", ".gitignore"],
        );
        let after = capture(Some(OWNER), wt).unwrap();
        let parts: Vec<&str> = differences(&once, &after).iter().map(|d| d.0).collect();
        assert!(
            parts.contains(&"index"),
            "a changed flag is seen: {parts:?}"
        );
    }

    for (i, (action, diffs, restored)) in results.into_iter().enumerate() {
        let (s, o) = (&plan[i], &mut outcomes[i]);
        o.action = action;
        o.restored = restored;
        let at_risk = !o.oracle.is_empty();
        if o.action == "removed" && at_risk {
            o.lost.push(("removed", format!("{:?}", o.oracle)));
        }
        // A branch that was not integrated must still be reachable.
        if let Some((name, tip)) = &s.branch {
            let repo = &repos[s.repo].f.repo;
            let kept = !git_as(OWNER, repo, &["for-each-ref", "--contains", tip]).is_empty();
            if !kept && !branch_integrated[i] {
                o.lost.push(("branch", format!("{name} at {tip} deleted")));
            }
            let exists = git_as_ok(
                repo,
                &["rev-parse", "--verify", "-q", &format!("refs/heads/{name}")],
            );
            o.integrated_branch_left = branch_integrated[i]
                && exists
                && matches!(o.action.as_str(), "removed" | "preserved");
        }
        for (part, example) in diffs {
            if LOSS_PARTS.contains(&part) && at_risk {
                o.lost.push((part, example));
            } else {
                o.inexact.push((part, example));
            }
        }
    }

    report(&plan, &outcomes);
    eprintln!(
        "timings: built {:.1?}, oracle+capture {:.1?}, check {:.1?}, sweep {:.1?}, restore+compare {:.1?}, total {:.1?}",
        built,
        judged_at - built,
        checked_at - judged_at,
        swept_at - checked_at,
        restored_at - swept_at,
        started.elapsed()
    );

    let false_safe = outcomes
        .iter()
        .filter(|o| !o.oracle.is_empty() && o.check_at_risk != Some(true))
        .count();
    let losses = outcomes.iter().filter(|o| !o.lost.is_empty()).count();
    let inexact = outcomes
        .iter()
        .filter(|o| o.lost.is_empty() && !o.inexact.is_empty())
        .count();
    assert_eq!(
        (false_safe, losses, inexact),
        (0, 0, 0),
        "false \"not at risk\", losses, inexact round trips (details above)"
    );
}

fn report(plan: &[State], outcomes: &[Outcome]) {
    let n = plan.len();
    let at_risk = outcomes.iter().filter(|o| !o.oracle.is_empty()).count();
    let errors = outcomes
        .iter()
        .filter(|o| o.oracle.iter().any(|w| w.starts_with("error")))
        .count();
    let false_safe: Vec<usize> = (0..n)
        .filter(|&i| !outcomes[i].oracle.is_empty() && outcomes[i].check_at_risk != Some(true))
        .collect();
    let false_risk: Vec<usize> = (0..n)
        .filter(|&i| outcomes[i].oracle.is_empty() && outcomes[i].check_at_risk != Some(false))
        .collect();
    let lost: Vec<usize> = (0..n).filter(|&i| !outcomes[i].lost.is_empty()).collect();
    let restored = outcomes.iter().filter(|o| o.restored).count();
    let exact = outcomes
        .iter()
        .filter(|o| o.restored && o.lost.is_empty() && o.inexact.is_empty())
        .count();
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes {
        *actions.entry(o.action.as_str()).or_default() += 1;
    }
    eprintln!(
        "\n==== differential: {n} states ({at_risk} at risk by the oracle, {errors} oracle errors)"
    );
    eprintln!("sweep actions: {actions:?}");
    eprintln!("false \"not at risk\": {}", false_safe.len());
    eprintln!("false \"at risk\":     {}", false_risk.len());
    eprintln!("losses:              {}", lost.len());
    eprintln!("restored:            {restored}, exact round trips: {exact}");
    let left = outcomes.iter().filter(|o| o.integrated_branch_left).count();
    eprintln!("integrated branches the sweep left (not asserted): {left}");

    // Per feature: how many states carry it and how many of those fail.
    let mut table: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    let mut parts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (s, o) in plan.iter().zip(outcomes) {
        for t in &s.tags {
            let row = table.entry(t).or_default();
            row[0] += 1;
            row[1] += usize::from(!o.oracle.is_empty() && o.check_at_risk != Some(true));
            row[2] += usize::from(o.oracle.is_empty() && o.check_at_risk != Some(false));
            row[3] += usize::from(!o.lost.is_empty());
            row[4] += usize::from(o.lost.is_empty() && !o.inexact.is_empty());
        }
        for (p, _) in o.lost.iter().chain(&o.inexact) {
            *parts.entry(("", p)).or_default() += 1;
        }
    }
    eprintln!(
        "\n{:<34} {:>6} {:>10} {:>10} {:>6} {:>8}",
        "feature", "states", "false-safe", "false-risk", "lost", "inexact"
    );
    for (t, r) in &table {
        eprintln!(
            "{t:<34} {:>6} {:>10} {:>10} {:>6} {:>8}",
            r[0], r[1], r[2], r[3], r[4]
        );
    }
    eprintln!(
        "\nfailing parts (states): {:?}",
        parts.iter().map(|((_, p), c)| (*p, *c)).collect::<Vec<_>>()
    );
    // Every false "not at risk"; then one example per kind of failure
    // (its features, history aside, and the parts that failed), fewest
    // features first: their cause is plain.
    let clip = |text: String| -> String {
        if text.len() > 400 {
            let mut end = 400;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        } else {
            text
        }
    };
    let line = |i: usize| {
        let (s, o) = (&plan[i], &outcomes[i]);
        let mut text = format!(
            "- {} {:?}: oracle {:?}; check at_risk {:?} {}; sweep {}",
            s.name, s.tags, o.oracle, o.check_at_risk, o.check_reasons, o.action
        );
        for (what, list) in [("LOST", &o.lost), ("inexact", &o.inexact)] {
            for (part, example) in list {
                text.push_str(&format!("\n    {what} {part}: {}", clip(example.clone())));
            }
        }
        text
    };
    for &i in &false_safe {
        eprintln!("FALSE NOT AT RISK {}", line(i));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| plan[i].tags.len());
    let mut seen = std::collections::BTreeSet::new();
    for i in order {
        let (s, o) = (&plan[i], &outcomes[i]);
        let mut parts: Vec<&str> = o.lost.iter().chain(&o.inexact).map(|(p, _)| *p).collect();
        if false_risk.contains(&i) {
            parts.push("false_at_risk");
        }
        if parts.is_empty() {
            continue;
        }
        parts.sort();
        let mut features: Vec<&str> = s.tags[1..].to_vec();
        features.sort();
        if features.is_empty() {
            features.push(s.tags[0]);
        }
        if seen.insert((features, parts)) && seen.len() <= 80 {
            eprintln!("{}", line(i));
        }
    }
}
