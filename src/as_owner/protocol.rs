//! What crosses the privilege boundary: the [`Request`]s a caller sends a
//! worker, the [`Response`]s it answers, the envelope and reply around them,
//! and how a path is written on the wire ([`wire_path`]). Both sides parse
//! strictly (`deny_unknown_fields`): the other side is untrusted.

use super::hooks::{HookOutcome, HookState};
use super::preserved;
use super::rebuild::Restored;
use super::reclaim::Reclaimed;
use crate::claim::Claimed;
use crate::config::Policy;
use crate::risk::Assessment;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One operation for the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Reports the ids the worker runs with.
    Probe,
    /// [`crate::check::assess_verified`] of the path: assessed only if it verifies
    /// as the serving user's (see `claim`).
    Assess {
        #[serde(with = "wire_path")]
        path: PathBuf,
    },
    /// `git worktree lock` of the claimed worktree.
    LockWorktree {
        claimed: Claimed,
        reason: Option<String>,
    },
    /// `git worktree unlock` of the claimed worktree.
    UnlockWorktree { claimed: Claimed },
    /// [`crate::admin_dir::relocate`]: point the claimed worktree's admin entry at
    /// where the worktree is now.
    Relocate { claimed: Claimed },
    /// [`super::reclaim::reclaim`] of the claimed worktree.
    Reclaim {
        claimed: Claimed,
        policy: Policy,
        dry_run: bool,
    },
    /// [`super::reclaim::reclaim_broken`]: the broken worktree at `entry` (its
    /// `.git` names the admin dir `name`, gone or moved to `admin`)
    /// preserved into the repository, then that admin dir forgotten.
    ReclaimBroken {
        #[serde(with = "wire_path")]
        entry: PathBuf,
        #[serde(with = "wire_path")]
        repository: PathBuf,
        #[serde(default, with = "wire_path_opt")]
        admin: Option<PathBuf>,
        #[serde(with = "wire_path")]
        name: PathBuf,
        /// The commits its files may be (the ledger record's branch and
        /// base commit), looked at first.
        #[serde(default)]
        commits: Vec<String>,
    },
    /// [`super::rebuild::rebuild`]: a preserved set (`prefix`) back into a new
    /// worktree at `path`.
    Restore {
        #[serde(with = "wire_path")]
        repository: PathBuf,
        prefix: String,
        #[serde(with = "wire_path")]
        path: PathBuf,
        dry_run: bool,
    },
    /// [`super::hooks::install`] into the repository whose common dir is given.
    InstallHook {
        #[serde(with = "wire_path")]
        repository: PathBuf,
        dry_run: bool,
    },
    /// [`super::hooks::uninstall`] from the repository whose common dir is given.
    UninstallHook {
        #[serde(with = "wire_path")]
        repository: PathBuf,
        dry_run: bool,
    },
    /// [`super::preserved::sets`] of the repository whose common dir is given.
    PreservedSets {
        #[serde(with = "wire_path")]
        repository: PathBuf,
    },
    /// [`super::preserved::drop`] of a set (`<name>/<stamp>`) of that repository.
    DropSet {
        #[serde(with = "wire_path")]
        repository: PathBuf,
        set: String,
        dry_run: bool,
    },
    /// [`super::hooks::state`] of the repository whose common dir is given.
    HookState {
        #[serde(with = "wire_path")]
        repository: PathBuf,
    },
}

/// The answer to one [`Request`], in the same position of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The ids of the process that served the request, and its pid.
    Probe {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
        pid: u32,
    },
    Assessed {
        assessment: Box<Assessment>,
    },
    /// The worktree is locked; `newly_locked` is false when it already was
    /// (by anyone, for `reason`).
    Locked {
        newly_locked: bool,
        reason: Option<String>,
    },
    /// The worktree is unlocked; `was_locked` says whether it had a lock.
    Unlocked {
        was_locked: bool,
    },
    Relocated,
    Reclaimed {
        reclaimed: Reclaimed,
    },
    Restored {
        restored: Restored,
    },
    /// The preserved sets of a repository.
    PreservedSets {
        sets: Vec<preserved::Set>,
    },
    /// The refs a drop deleted (would delete, under dry run).
    Dropped {
        refs: Vec<String>,
    },
    /// What install-hook or uninstall-hook did.
    Hook {
        outcome: HookOutcome,
    },
    /// What the hooks directory holds.
    HookState {
        state: HookState,
    },
    /// This request failed; the others in the batch are unaffected.
    Failed {
        message: String,
    },
    /// Not served: its turn came after the call's stop time
    /// ([`super::Worker::with_stop_after`]). Nothing was done for it.
    NotStarted,
}

/// What the parent sends: the ids the worker must run with, and the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Envelope {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) groups: Vec<u32>,
    pub(super) requests: Vec<Request>,
    /// [`super::Worker::with_stop_after`], in milliseconds from when the worker reads
    /// the envelope (a few milliseconds after the call started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) stop_after_ms: Option<u64>,
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Reply {
    Done { responses: Vec<Response> },
    Refused { message: String },
}

/// Paths on the wire (and in JSON reports): a string when they are UTF-8,
/// else an array of their bytes, so that any entry name crosses the
/// boundary unchanged (`serde_json` refuses a non-UTF-8 `PathBuf`).
pub mod wire_path {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(path.as_os_str().as_bytes()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Text(text) => PathBuf::from(text),
            Wire::Bytes(bytes) => PathBuf::from(OsString::from_vec(bytes)),
        })
    }
}

/// [`wire_path`] for an optional path (`null` when absent).
pub mod wire_path_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::path::{Path, PathBuf};

    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "super::wire_path")] PathBuf);

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(p) => super::wire_path::serialize(Path::new(p), s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::path::Path;

    #[test]
    fn requests_round_trip_including_non_utf8_paths() {
        let odd = PathBuf::from(OsString::from_vec(b"/tmp/wt/r\xffx".to_vec()));
        // A ticket as the wire carries it (only a verified claim makes one).
        let claimed: Claimed = serde_json::from_value(serde_json::json!({
            "entry": (b"/tmp/wt/r\xffx").to_vec(),
            "owner": 4242,
            "also_named": "/tmp/wt/.treeward-trash/b/r",
        }))
        .unwrap();
        let requests = vec![
            Request::Probe,
            Request::Assess {
                path: "/tmp/wt/review-1".into(),
            },
            Request::LockWorktree {
                claimed: claimed.clone(),
                reason: Some("treeward sweep".into()),
            },
            Request::UnlockWorktree {
                claimed: claimed.clone(),
            },
            Request::Relocate {
                claimed: claimed.clone(),
            },
            Request::Reclaim {
                claimed,
                policy: Policy::Preserve,
                dry_run: true,
            },
            Request::ReclaimBroken {
                entry: odd.clone(),
                repository: "/srv/repo/.git".into(),
                admin: None,
                name: "wt".into(),
                commits: vec!["refs/heads/t".into()],
            },
            Request::Restore {
                repository: "/srv/repo/.git".into(),
                prefix: "refs/treeward/preserved/r/20260101T000000Z".into(),
                path: odd.clone(),
                dry_run: false,
            },
            Request::InstallHook {
                repository: odd.clone(),
                dry_run: true,
            },
            Request::UninstallHook {
                repository: odd.clone(),
                dry_run: false,
            },
            Request::HookState { repository: odd },
        ];
        let envelope = Envelope {
            uid: 4242,
            gid: 4242,
            groups: vec![4242],
            requests,
            stop_after_ms: None,
        };
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(
            json.contains(r#""op":"assess","path":"/tmp/wt/review-1""#),
            "{json}"
        );
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn responses_round_trip() {
        let responses = vec![
            Response::Probe {
                uid: 4242,
                gid: 4242,
                groups: vec![4242],
                pid: 7,
            },
            Response::Assessed {
                assessment: Box::new(crate::risk::assess(Path::new("/nonexistent/treeward-test"))),
            },
            Response::Locked {
                newly_locked: true,
                reason: None,
            },
            Response::Unlocked { was_locked: false },
            Response::Failed {
                message: "x".into(),
            },
        ];
        let reply = Reply::Done { responses };
        let json = serde_json::to_string(&reply).unwrap();
        let back: Reply = serde_json::from_str(&json).unwrap();
        assert_eq!(back, reply);
    }
}
