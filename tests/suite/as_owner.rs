//! The privilege boundary (SPEC invariant 4) with real processes: a worker
//! started by root runs with exactly the owner's ids, serves a batch in one
//! child, leaves nothing root-owned in the owner's repository, is killed at
//! its timeout, and refuses (doing nothing) when its input or its ids are
//! wrong. Switching users needs root: those tests print why and return
//! otherwise.

use crate::common;

use common::{is_root, write, Fixture};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use treeward::testing::as_owner::{AsOwnerError, Owner, Request, Response, Worker, WORKER_FLAG};
use treeward::testing::claim::{self, Claimed, Expect};
use treeward::testing::risk::{Kind, Reason};

const BIN: &str = env!("CARGO_BIN_EXE_treeward-check");
const OWNER: Owner = Owner {
    uid: 4242,
    gid: 4242,
};

fn need_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped: switching to uid 4242 needs root");
    }
    is_root()
}

fn worker() -> Worker {
    Worker::new(BIN)
}

fn chown_to_owner(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "4242:4242"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `find <dir> -uid 0`: everything root owns below `dir`.
fn root_owned(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-uid", "0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A fixture with one linked worktree, all owned by 4242.
fn owned_fixture() -> (Fixture, PathBuf) {
    let f = Fixture::new();
    let wt = f.worktree("review-1", "task-1");
    chown_to_owner(f.tmp.path());
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
    (f, wt)
}

/// The ticket of the verified claim on the worktree at `wt`, owned by 4242.
fn ticket(wt: &Path) -> Claimed {
    claim::verify(wt, Expect::owner(OWNER.uid))
        .unwrap_or_else(|e| panic!("{}: {e}", wt.display()))
        .ticket()
}

/// A ticket no claim made (as a hostile caller could send one): the worker
/// verifies it again and refuses it.
fn forged(path: &Path) -> Claimed {
    serde_json::from_value(serde_json::json!({"entry": path, "owner": OWNER.uid})).unwrap()
}

fn lock_file(f: &Fixture) -> PathBuf {
    f.repo.join(".git/worktrees/review-1/locked")
}

/// A directory 4242 can read and write, holding an executable script.
fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.sh");
    write(&path, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_to_owner(dir.path());
    (dir, path)
}

/// Runs the binary as a worker directly, with `setup` applied to the command.
fn raw_worker(stdin: &[u8], setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg(WORKER_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // The worker may refuse before reading everything.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn lock_envelope(uid: u32, path: &Path) -> String {
    serde_json::json!({
        "uid": uid, "gid": uid, "groups": [uid],
        "requests": [{"op": "lock_worktree", "claimed": {"entry": path, "owner": uid}, "reason": "x"}],
    })
    .to_string()
}

#[test]
fn probe_runs_with_exactly_the_owner_ids() {
    if !need_root("probe_runs_with_exactly_the_owner_ids") {
        return;
    }
    let response = worker().call(OWNER, &Request::Probe).unwrap();
    let Response::Probe {
        uid,
        gid,
        groups,
        pid,
    } = response
    else {
        panic!("not a probe: {response:?}");
    };
    assert_eq!((uid, gid, groups), (4242, 4242, vec![4242]));
    assert_ne!(pid, std::process::id(), "served in a child");
}

#[test]
fn a_batch_is_served_by_one_child() {
    if !need_root("a_batch_is_served_by_one_child") {
        return;
    }
    let pids = |n: usize| -> Vec<u32> {
        let responses = worker()
            .call_batch(OWNER, &vec![Request::Probe; n])
            .unwrap();
        assert_eq!(responses.len(), n);
        responses
            .into_iter()
            .map(|r| match r {
                Response::Probe { pid, .. } => pid,
                other => panic!("not a probe: {other:?}"),
            })
            .collect()
    };
    let first = pids(7);
    assert!(first.iter().all(|p| *p == first[0]), "one child: {first:?}");
    let second = pids(3);
    assert!(second.iter().all(|p| *p == second[0]), "{second:?}");
    assert_ne!(first[0], second[0], "a new child for each call");
    assert_eq!(
        worker().call_batch(OWNER, &[]).unwrap(),
        Vec::<Response>::new()
    );
}

#[test]
fn assess_as_the_owner_gives_the_verdict_and_writes_nothing_as_root() {
    if !need_root("assess_as_the_owner_gives_the_verdict_and_writes_nothing_as_root") {
        return;
    }
    let f = Fixture::new();
    let clean = f.worktree("review-1", "task-1");
    let dirty = f.worktree("review-2", "task-2");
    write(&dirty.join("README"), "changed\n");
    chown_to_owner(f.tmp.path());
    let missing = f.tmp.path().join("wt/review-3");
    let responses = worker()
        .call_batch(
            OWNER,
            &[
                Request::Assess {
                    path: clean.clone(),
                },
                Request::Assess {
                    path: dirty.clone(),
                },
                Request::Assess {
                    path: missing.clone(),
                },
            ],
        )
        .unwrap();
    let assessments: Vec<_> = responses
        .into_iter()
        .map(|r| match r {
            Response::Assessed { assessment } => assessment,
            other => panic!("not an assessment: {other:?}"),
        })
        .collect();
    let [clean_a, dirty_a, missing_a] = &assessments[..] else {
        panic!("{assessments:?}");
    };
    assert_eq!(clean_a.path, clean);
    assert_eq!(clean_a.kind, Kind::LinkedWorktree);
    assert!(!clean_a.at_risk, "{clean_a:?}");
    assert_eq!(clean_a.branch.as_deref(), Some("task-1"));
    assert_eq!(clean_a.repository_owner, Some(4242));
    assert_eq!(dirty_a.reasons, vec![Reason::Modified]);
    assert_eq!(missing_a.kind, Kind::Missing);
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
}

#[test]
fn locking_writes_only_as_the_owner() {
    if !need_root("locking_writes_only_as_the_owner") {
        return;
    }
    let (f, wt) = owned_fixture();
    let lock = Request::LockWorktree {
        claimed: ticket(&wt),
        reason: Some("treeward sweep".into()),
    };
    assert_eq!(
        worker().call(OWNER, &lock).unwrap(),
        Response::Locked {
            newly_locked: true,
            reason: Some("treeward sweep".into())
        }
    );
    let meta = std::fs::metadata(lock_file(&f)).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4242, 4242));
    assert_eq!(
        std::fs::read_to_string(lock_file(&f)).unwrap(),
        "treeward sweep"
    );
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());

    // Locked already: reported, kept as it is; the assessment sees it.
    let again = worker()
        .call_batch(OWNER, &[lock, Request::Assess { path: wt.clone() }])
        .unwrap();
    assert_eq!(
        again[0],
        Response::Locked {
            newly_locked: false,
            reason: Some("treeward sweep".into())
        }
    );
    match &again[1] {
        Response::Assessed { assessment } => {
            assert!(assessment.locked);
            assert_eq!(assessment.lock_reason.as_deref(), Some("treeward sweep"));
        }
        other => panic!("{other:?}"),
    }

    let unlock = Request::UnlockWorktree {
        claimed: ticket(&wt),
    };
    assert_eq!(
        worker()
            .call_batch(OWNER, &[unlock.clone(), unlock])
            .unwrap(),
        vec![
            Response::Unlocked { was_locked: true },
            Response::Unlocked { was_locked: false }
        ]
    );
    assert!(!lock_file(&f).exists());
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
}

#[test]
fn a_failed_request_does_not_fail_the_batch() {
    if !need_root("a_failed_request_does_not_fail_the_batch") {
        return;
    }
    let (f, wt) = owned_fixture();
    let missing = f.tmp.path().join("wt/none");
    let responses = worker()
        .call_batch(
            OWNER,
            &[
                Request::LockWorktree {
                    claimed: forged(&f.repo),
                    reason: None,
                },
                Request::LockWorktree {
                    claimed: forged(&missing),
                    reason: None,
                },
                Request::LockWorktree {
                    claimed: ticket(&wt),
                    reason: None,
                },
            ],
        )
        .unwrap();
    match &responses[..] {
        [Response::Failed { message: main }, Response::Failed { message: gone }, Response::Locked {
            newly_locked: true,
            reason: None,
        }] => {
            assert!(main.contains("not a linked worktree"), "{main}");
            assert!(main.contains(&f.repo.display().to_string()), "{main}");
            assert!(gone.contains(&missing.display().to_string()), "{gone}");
        }
        other => panic!("{other:?}"),
    }
    assert!(lock_file(&f).exists());
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
}

/// Locks are served several at once (each waits for its own fsync): a
/// batch longer than one round is answered in order, each lock written
/// whole, an owner's lock met on the way left as it is.
#[test]
fn a_long_batch_of_locks_is_answered_in_order() {
    if !need_root("a_long_batch_of_locks_is_answered_in_order") {
        return;
    }
    let f = Fixture::new();
    let worktrees: Vec<PathBuf> = (0..20)
        .map(|i| f.detached_worktree(&format!("review-{i}")))
        .collect();
    let admin = |i: usize| f.repo.join(format!(".git/worktrees/review-{i}"));
    write(&admin(17).join("locked"), "the owner's");
    chown_to_owner(f.tmp.path());
    let requests: Vec<Request> = worktrees
        .iter()
        .map(|wt| Request::LockWorktree {
            claimed: ticket(wt),
            reason: Some("treeward".to_owned()),
        })
        .collect();
    let responses = worker().call_batch(OWNER, &requests).unwrap();
    assert_eq!(responses.len(), worktrees.len());
    for (i, response) in responses.iter().enumerate() {
        let (newly_locked, reason) = if i == 17 {
            (false, "the owner's")
        } else {
            (true, "treeward")
        };
        assert_eq!(
            response,
            &Response::Locked {
                newly_locked,
                reason: Some(reason.to_owned()),
            },
            "review-{i}"
        );
        assert_eq!(
            std::fs::read_to_string(admin(i).join("locked")).unwrap(),
            reason,
            "review-{i}"
        );
    }
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
}

#[test]
fn a_hanging_worker_is_killed_at_the_timeout() {
    if !need_root("a_hanging_worker_is_killed_at_the_timeout") {
        return;
    }
    let (dir, program) = script("echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 30");
    let started = Instant::now();
    let err = Worker::new(&program)
        .with_timeout(Duration::from_secs(1))
        .call(OWNER, &Request::Probe)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, AsOwnerError::TimedOut { uid: 4242, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("did not finish within 1s and was killed"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the worker {pid} is gone"
    );
}

#[test]
fn a_program_that_cannot_run_is_a_clear_error() {
    if !need_root("a_program_that_cannot_run_is_a_clear_error") {
        return;
    }
    let err = Worker::new("/nonexistent/treeward-worker")
        .call(OWNER, &Request::Probe)
        .unwrap_err();
    assert!(matches!(err, AsOwnerError::Spawn { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/treeward-worker"), "{text}");
    assert!(text.contains("uid 4242"), "{text}");
    assert!(text.contains("No such file"), "{text}");

    // Root can run it, the owner cannot: exec happens after the drop.
    let (dir, program) = script("exit 0");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&program, Some(0), Some(0)).unwrap();
    let err = Worker::new(&program)
        .call(OWNER, &Request::Probe)
        .unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");
    drop(dir);
}

#[test]
fn broken_workers_are_clear_errors() {
    if !need_root("broken_workers_are_clear_errors") {
        return;
    }
    let call = |body: &str| {
        let (_dir, program) = script(body);
        Worker::new(&program)
            .call(OWNER, &Request::Probe)
            .unwrap_err()
    };
    let err = call("exit 3");
    assert!(matches!(err, AsOwnerError::Exited { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("ended without a reply (exit status: 3)"),
        "{err}"
    );

    let err = call("cat >/dev/null; echo hello");
    assert!(matches!(err, AsOwnerError::BadResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("sent a bad reply"), "{err}");

    let err = call("cat >/dev/null; echo '{\"reply\":\"done\",\"responses\":[]}'");
    assert!(
        err.to_string().contains("0 responses to 1 requests"),
        "{err}"
    );

    let err = call("echo '{\"reply\":\"refused\",\"message\":\"wrong ids\"}'; exit 2");
    assert!(matches!(err, AsOwnerError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("refused: wrong ids"), "{err}");
}

#[test]
fn garbage_on_stdin_is_refused_and_nothing_is_done() {
    if !need_root("garbage_on_stdin_is_refused_and_nothing_is_done") {
        return;
    }
    let (f, wt) = owned_fixture();
    let as_owner = |cmd: &mut Command| {
        cmd.uid(4242).gid(4242);
    };
    let mut almost = lock_envelope(4242, &wt);
    almost.push_str(" trailing");
    for input in [b"hello".to_vec(), almost.into_bytes(), Vec::new()] {
        let out = raw_worker(&input, as_owner);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused: the request is not valid"),
            "{stderr}"
        );
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply["reply"], "refused");
        assert!(!lock_file(&f).exists());
    }
    // Extra arguments are refused too.
    let out = raw_worker(lock_envelope(4242, &wt).as_bytes(), |cmd| {
        as_owner(cmd);
        cmd.arg("--json");
    });
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument"));
    assert!(!lock_file(&f).exists());
}

#[test]
fn a_worker_never_runs_as_root() {
    if !need_root("a_worker_never_runs_as_root") {
        return;
    }
    // A root-owned repository, and one owned by 4242: neither is touched.
    let root_fixture = Fixture::new();
    let root_wt = root_fixture.worktree("review-1", "task-1");
    let (f, wt) = owned_fixture();
    for (uid, path, fixture) in [(0, &root_wt, &root_fixture), (4242, &wt, &f)] {
        let out = raw_worker(lock_envelope(uid, path).as_bytes(), |_| {});
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("never runs as root"), "{stderr}");
        assert!(!lock_file(fixture).exists());
    }
}

#[test]
fn a_worker_with_the_wrong_ids_or_privileges_refuses() {
    if !need_root("a_worker_with_the_wrong_ids_or_privileges_refuses") {
        return;
    }
    let (f, wt) = owned_fixture();
    let envelope = lock_envelope(4242, &wt);

    // std's uid()/gid() clear the groups: not what the envelope says.
    let out = raw_worker(envelope.as_bytes(), |cmd| {
        cmd.uid(4242).gid(4242);
    });
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs with groups [], expected [4242]"),
        "{stderr}"
    );
    assert!(!lock_file(&f).exists());

    // Another uid than asked for.
    let out = raw_worker(envelope.as_bytes(), |cmd| {
        cmd.uid(4343).gid(4242);
    });
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected 4242"));
    assert!(!lock_file(&f).exists());

    // The right ids, but no_new_privs not set: refused as well.
    let out = raw_worker(envelope.as_bytes(), |cmd| unsafe {
        cmd.pre_exec(|| {
            use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
            let (u, g) = (Uid::from_raw(4242), Gid::from_raw(4242));
            setgroups(&[g])?;
            setresgid(g, g, g)?;
            setresuid(u, u, u)?;
            Ok(())
        });
    });
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_new_privs is not set"), "{stderr}");
    assert!(!lock_file(&f).exists());
    assert_eq!(root_owned(f.tmp.path()), Vec::<String>::new());
}

#[test]
fn the_callers_own_uid_is_served_in_process() {
    let me = Owner {
        uid: nix::unistd::Uid::effective().as_raw(),
        gid: nix::unistd::Gid::effective().as_raw(),
    };
    // No program is run: a path that does not exist proves it.
    let response = Worker::new("/nonexistent/treeward-worker")
        .call(me, &Request::Probe)
        .unwrap();
    match response {
        Response::Probe { uid, pid, .. } => {
            assert_eq!(uid, me.uid);
            assert_eq!(pid, std::process::id());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unprivileged_caller_cannot_act_for_another_uid() {
    if is_root() {
        eprintln!("an_unprivileged_caller_cannot_act_for_another_uid: skipped: runs as root");
        return;
    }
    let me = nix::unistd::Uid::effective().as_raw();
    let other = Owner {
        uid: me + 1,
        gid: me + 1,
    };
    let err = worker().call(other, &Request::Probe).unwrap_err();
    assert!(matches!(err, AsOwnerError::CannotSwitch { .. }), "{err:?}");
    assert!(err.to_string().contains("not root"), "{err}");
}

#[test]
fn descriptors_of_the_parent_do_not_reach_the_worker() {
    if !need_root("descriptors_of_the_parent_do_not_reach_the_worker") {
        return;
    }
    use nix::fcntl::{fcntl, open, FcntlArg, FdFlag, OFlag};
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("root-only");
    write(&secret, "secret\n");
    // Opened without close-on-exec, as a descriptor inherited from outside.
    let fd = open(&secret, OFlag::O_RDONLY, nix::sys::stat::Mode::empty()).unwrap();
    let flags = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).unwrap());
    assert!(!flags.contains(FdFlag::FD_CLOEXEC));

    let (dir, program) = script(
        "for f in /proc/$$/fd/*; do readlink \"$f\"; done > \"$(dirname \"$0\")/fds\"; exit 3",
    );
    let err = Worker::new(&program)
        .call(OWNER, &Request::Probe)
        .unwrap_err();
    assert!(matches!(err, AsOwnerError::Exited { .. }), "{err:?}");
    let fds = std::fs::read_to_string(dir.path().join("fds")).unwrap();
    assert!(fds.lines().count() >= 3, "stdin, stdout, stderr: {fds}");
    assert!(
        !fds.contains(&secret.display().to_string()),
        "the worker holds {}: {fds}",
        secret.display()
    );
    drop(fd);
}
