//! `treeward doctor`: is this host set up so that treeward can do its job?
//! Reads only. Each check is a [`Finding`]; the ones not `ok` are problems.
//!
//! Checks (the configuration itself is valid, or the program already ended
//! with status 78 naming the error):
//! - ledger: its file is a regular file (or absent: created on first write),
//!   readable as ledger JSON; owner and mode; whether this user can write it;
//!   whether every configured root `owner` can write it and its directory
//!   (a write is a temp file and a rename there) — those users run the reaper
//!   and the hook;
//! - repositories named by records not yet finished (`active`, `released`,
//!   `kept`, `retry_remove`): still there, and the `post-checkout` shim
//!   installed (a repository gone, or without the shim, is a problem). The
//!   ledger is untrusted: only records whose path is an entry of a
//!   configured root are followed (another live one is a problem unless
//!   `hook_record_anywhere` explains it), each repository must verify as
//!   the root's owner's, and its hook is read as that owner, never by root
//!   through a path someone else controls;
//! - units: `treeward-sweep.service` is a problem when missing only if a root
//!   is swept, `treeward-reap.service` and `.timer` only if a root is reaped;
//!   looked for in [`UNIT_DIRS`] unless other directories are given;
//! - roots: absent (fine: nothing to do yet) or passing [`crate::roots::vet`].

use crate::as_owner::hooks::{self, HookState};
use crate::as_owner::{Identity, Owner, Request, Response, Worker};
use crate::claim::{self, Unclaimed};
use crate::config::Config;
use crate::ledger::{Document, Ledger, LedgerError, State};
use nix::unistd::{access, AccessFlags};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where systemd looks for units, most specific first.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `config`, `ledger`, `record`, `repository`, `unit` or `root`.
    pub check: &'static str,
    /// What was checked (a path, a unit name).
    pub subject: String,
    pub ok: bool,
    pub detail: String,
    /// For a problem: the command (or the edit) that fixes it; null when
    /// there is nothing to run.
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: &'static str, subject: impl Into<String>, ok: bool, detail: String) -> Finding {
        Finding {
            check,
            subject: subject.into(),
            ok,
            detail,
            fix: None,
        }
    }

    /// The same finding, with how to fix it (kept only on a problem).
    fn fix(mut self, how: impl Into<String>) -> Finding {
        if !self.ok {
            self.fix = Some(how.into());
        }
        self
    }
}

/// The whole `treeward doctor --json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub problems: usize,
    pub findings: Vec<Finding>,
}

/// Runs every check; a repository's hook is read as its owner through
/// `worker`.
pub fn doctor(config: &Config, unit_dirs: &[PathBuf], worker: &Worker) -> Diagnosis {
    let mut findings = vec![Finding::new(
        "config",
        config.source.to_string(),
        true,
        "valid".to_owned(),
    )];
    let read = Ledger::new(&config.ledger).read();
    findings.extend(ledger_findings(config, &read));
    if let Ok(doc) = &read {
        findings.extend(repository_findings(config, doc, worker));
    }
    findings.extend(unit_findings(config, unit_dirs));
    findings.extend(root_findings(config));
    Diagnosis {
        problems: findings.iter().filter(|f| !f.ok).count(),
        findings,
    }
}

/// Pure: whether `uid` (with `groups`) may write a file with this mode and
/// owner (root always may).
pub fn may_write(mode: u32, file_uid: u32, file_gid: u32, uid: u32, groups: &[u32]) -> bool {
    uid == 0
        || if file_uid == uid {
            mode & 0o200 != 0
        } else if groups.contains(&file_gid) {
            mode & 0o020 != 0
        } else {
            mode & 0o002 != 0
        }
}

fn ledger_findings(config: &Config, read: &Result<Document, LedgerError>) -> Vec<Finding> {
    let path = &config.ledger;
    let subject = path.display().to_string();
    let mut out = Vec::new();
    let meta = std::fs::symlink_metadata(path).ok();
    let mut detail = match (&meta, read) {
        (_, Err(e)) => {
            out.push(
                Finding::new("ledger", subject, false, e.to_string()).fix(format!(
                    "mv {0} {0}.bad  # the next pass starts a new ledger and rebuilds it from disk",
                    path.display()
                )),
            );
            return out;
        }
        (None, Ok(_)) => "does not exist yet (created on the first write)".to_owned(),
        (Some(m), Ok(doc)) => format!(
            "{} record(s); owner uid {} gid {}, mode {:o}",
            doc.records.len(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir_ok = access(dir, AccessFlags::W_OK).is_ok();
    let me = dir_ok && (meta.is_none() || access(path, AccessFlags::W_OK).is_ok());
    detail.push_str(if me {
        "; this user can write it"
    } else {
        "; this user cannot write it"
    });
    out.push(Finding::new("ledger", subject.clone(), true, detail));
    for owner in owners(config) {
        if let Some(why) = cannot_write(path, meta.as_ref(), dir, owner) {
            out.push(
                Finding::new(
                    "ledger",
                    subject.clone(),
                    false,
                    format!("root owner uid {} cannot write it: {why}", owner.uid),
                )
                .fix({
                    // Only what exists: a ledger not written yet is
                    // created by its owner once the directory is theirs.
                    let targets: Vec<String> = [dir, path.as_path()]
                        .iter()
                        .filter(|p| p.symlink_metadata().is_ok())
                        .map(|p| p.display().to_string())
                        .collect();
                    format!("chown {}:{} {}", owner.uid, owner.gid, targets.join(" "))
                }),
            );
        }
    }
    out
}

/// The distinct configured root owners.
fn owners(config: &Config) -> Vec<Owner> {
    let mut owners: Vec<Owner> = config
        .roots
        .iter()
        .filter_map(|r| r.owner.as_ref().map(Owner::from))
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

/// Why `owner` could not update the ledger; `None` when it could.
fn cannot_write(
    path: &Path,
    meta: Option<&std::fs::Metadata>,
    dir: &Path,
    owner: Owner,
) -> Option<String> {
    let groups = match Identity::of(owner) {
        Ok(id) => id.groups,
        Err(e) => return Some(e.to_string()),
    };
    let writable =
        |m: &std::fs::Metadata| may_write(m.mode(), m.uid(), m.gid(), owner.uid, &groups);
    if let Some(m) = meta {
        if !writable(m) {
            return Some(format!("{} is not writable by it", path.display()));
        }
    }
    match std::fs::metadata(dir) {
        Ok(m) if writable(&m) => None,
        Ok(_) => Some(format!(
            "its directory {} is not writable by it (updates write a temp file there)",
            dir.display()
        )),
        Err(_) => None, // created (by whoever writes first) with mode 0755
    }
}

/// One finding per repository of the records: verified as the owner's of
/// the root their worktrees are entries of, then its hook's state read as
/// that owner (in a worker, when this runs as root). A record outside every
/// root is a finding of its own; its repository is not looked at.
fn repository_findings(config: &Config, doc: &Document, worker: &Worker) -> Vec<Finding> {
    let euid = super::euid();
    let mut out = Vec::new();
    // (Repository, owner) → whether any of its records is not finished.
    let mut repos: BTreeMap<(PathBuf, u32), bool> = BTreeMap::new();
    for r in &doc.records {
        let live = matches!(
            r.state,
            State::Active | State::Released | State::Kept | State::RetryRemove
        );
        match super::entry_of(config, &r.path) {
            Some(root) => {
                let owner = claim::expected_owner(root, euid);
                *repos.entry((r.repository.clone(), owner)).or_default() |= live;
            }
            None => out.push(
                Finding::new(
                    "record",
                    r.path.display().to_string(),
                    !live || config.hook_record_anywhere,
                    format!(
                        "ledger record {}: not an entry of any configured root, so its repository \
                     {} is not looked at",
                        r.id,
                        r.repository.display()
                    ),
                )
                .fix(format!(
                    "add the directory holding it as a [[root]] in {}, or set \
                 hook_record_anywhere = true there",
                    config.source
                )),
            ),
        }
    }
    for ((repo, owner), live) in repos {
        let subject = repo.display().to_string();
        let (ok, detail, fix) = match hook_state(&repo, owner, worker, euid) {
            Ok(s) if s.installed() => (
                true,
                format!("hook installed in {}", s.hooks_dir.display()),
                None,
            ),
            Ok(s) => (
                false,
                format!("hook not installed in {}", s.hooks_dir.display()),
                Some(format!("treeward install-hook {}", repo.display())),
            ),
            Err(e) => (false, e, None),
        };
        out.push(if live || ok {
            let finding = Finding::new("repository", subject, ok, detail);
            match fix {
                Some(how) => finding.fix(how),
                None => finding,
            }
        } else {
            Finding::new(
                "repository",
                subject,
                true,
                format!("{detail} (only finished records)"),
            )
        });
    }
    out
}

/// The hook's state in `repo`, which must verify as `owner`'s; read by
/// that owner through `worker` when this runs as root, else in-process
/// (an unprivileged doctor reads only what it may read anyway).
fn hook_state(repo: &Path, owner: u32, worker: &Worker, euid: u32) -> Result<HookState, String> {
    let verified = claim::verify_repository(repo, owner).map_err(|e| match e {
        Unclaimed::Broken(why) => format!("gone: {why}"),
        e => format!("refused: {e}"),
    })?;
    if euid != 0 {
        return hooks::state(verified.common());
    }
    let request = Request::HookState {
        repository: verified.common().to_path_buf(),
    };
    match super::call_as_owner(worker, &verified, &request) {
        Ok(Response::HookState { state }) => Ok(state),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn unit_findings(config: &Config, unit_dirs: &[PathBuf]) -> Vec<Finding> {
    let swept = config.roots.iter().any(|r| r.sweep);
    let reaped = config.roots.iter().any(|r| r.reap);
    [
        ("treeward-sweep.service", swept, "a root is swept"),
        ("treeward-reap.service", reaped, "a root is reaped"),
        ("treeward-reap.timer", reaped, "a root is reaped"),
    ]
    .into_iter()
    .map(
        |(unit, needed, why)| match unit_dirs.iter().map(|d| d.join(unit)).find(|p| p.is_file()) {
            Some(p) => Finding::new("unit", unit, true, format!("installed at {}", p.display())),
            None if needed => Finding::new(
                "unit",
                unit,
                false,
                format!("not installed, and {why} (looked in {})", join(unit_dirs)),
            )
            .fix(format!(
                "apt install ./treeward_*.deb  # or: install -m 644 units/{unit} \
                 /etc/systemd/system/ && systemctl daemon-reload"
            )),
            None => Finding::new(
                "unit",
                unit,
                true,
                "not installed (no root needs it)".into(),
            ),
        },
    )
    .collect()
}

fn join(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn root_findings(config: &Config) -> Vec<Finding> {
    config
        .roots
        .iter()
        .map(|root| {
            let subject = root.path.display().to_string();
            match crate::roots::open(root) {
                Ok(None) => Finding::new("root", subject, true, "does not exist yet".into()),
                Ok(Some(open)) => Finding::new(
                    "root",
                    subject,
                    true,
                    format!("usable (owner uid {})", open.uid),
                ),
                Err(why) => {
                    let fix = root_fix(&root.path, root.owner.as_ref().map(|o| o.uid));
                    let finding = Finding::new("root", subject, false, why);
                    match fix {
                        Some(how) => finding.fix(how),
                        None => finding,
                    }
                }
            }
        })
        .collect()
}

/// The command that makes a refused root acceptable, from what it is:
/// a symlink is replaced by its target in the configuration, a directory
/// others can write gets the sticky bit, one a stranger owns goes to root.
fn root_fix(path: &Path, configured_owner: Option<u32>) -> Option<String> {
    use std::os::unix::fs::FileTypeExt as _;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some(format!(
            "name the directory {} points to as the root's path instead of the symlink",
            path.display()
        ));
    }
    if kind.is_fifo() || !kind.is_dir() {
        return None;
    }
    let mut fixes = Vec::new();
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        fixes.push(format!("chmod +t {}", path.display()));
    }
    if meta.uid() != 0 && Some(meta.uid()) != configured_owner {
        fixes.push(format!(
            "chown root: {}  # or set the root's owner = \"{}\"",
            path.display(),
            meta.uid()
        ));
    }
    (!fixes.is_empty()).then(|| fixes.join(" && "))
}

/// The lines a person reads: one per finding (a problem with its fix on
/// the next line), then the count.
pub fn render_human(d: &Diagnosis) -> String {
    let mut out = String::new();
    let colour = crate::style::colour_enabled();
    for f in &d.findings {
        let mark = if f.ok {
            "ok      ".to_owned()
        } else {
            crate::style::alarm("PROBLEM ", colour)
        };
        out.push_str(&format!("{mark} {} {}: {}\n", f.check, f.subject, f.detail));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("         fix: {fix}\n"));
        }
    }
    out.push_str(&format!("{} problem(s)\n", d.problems));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_permission_table() {
        let cases = [
            (0o644, 10, 10, 10, vec![10], true),
            (0o444, 10, 10, 10, vec![10], false),
            (0o664, 10, 20, 11, vec![20], true),
            (0o644, 10, 20, 11, vec![20], false),
            (0o646, 10, 20, 11, vec![30], true),
            (0o000, 10, 20, 0, vec![0], true),
        ];
        for (mode, fu, fg, uid, groups, want) in cases {
            assert_eq!(
                may_write(mode, fu, fg, uid, &groups),
                want,
                "{mode:o} {uid}"
            );
        }
    }
}
