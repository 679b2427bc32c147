//! The one trust decision: is this entry really a linked worktree of the
//! repository it names, and does everything on the way belong to the one
//! user treeward may act for? Only a [`Claim`] — the proof that it is —
//! unlocks a git operation (lock, relocate, assess, preserve, prune, branch
//! delete, restore, hook install); everything that fails is residue for the
//! safe removal engine or is refused (SPEC invariant 2).
//!
//! A claim holds only when all of this was checked, in this order, on
//! directory descriptors opened without following a symlink anywhere:
//!
//! 1. the entry is a directory, opened under its parent's descriptor;
//! 2. its `.git` is a regular file that says exactly
//!    `gitdir: <common>/worktrees/<name>` (absolute, already normal: no `.`,
//!    `..` or doubled `/`);
//! 3. every directory from `/` down to the common dir, and the `worktrees`
//!    and admin dirs below it, is owned by root or the expected owner and
//!    writable by no one else (no group or other write bit, sticky or not):
//!    sshd's `StrictModes`, stricter than git's `safe.directory`;
//! 4. the admin dir's `commondir` resolves to that same common dir, and its
//!    `gitdir` names this entry's `.git` back;
//! 5. the entry, the admin dir and the common dir are owned by one uid, the
//!    expected owner (the root's configured owner, or root when root owns
//!    the root and none is configured);
//! 6. the git files a git operation reads first (`HEAD`, `index`, `locked`,
//!    `config`...) are regular files or absent, never a FIFO or a device.
//!
//! A repository with no live worktree to claim (a preserved set to restore,
//! a hook to install, a path `treeward-check` is given) is verified the same
//! way, from its common dir ([`verify_repository`], [`repository_of`]): a
//! [`Repository`], owned by one user on a strict path.
//!
//! Everything it reads is read with [`crate::fd::read_at`]: regular files
//! only, capped, never blocking. Once a claim holds, the only people who can
//! change what it proved are root and the owner, and every git operation
//! runs as the owner: the owner can then only act on what the owner may
//! already change.

use crate::as_owner::Owner;
use crate::fd::{self, ReadError};
use nix::sys::stat::{fstat, FileStat};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The largest `.git`, `gitdir`, `commondir` or `locked` file read.
const MAX_POINTER: u64 = 4096;

/// Git files that a git operation opens by path before anything else: each
/// must be a regular file (or absent) in the admin dir.
const ADMIN_FILES: &[&str] = &[
    "HEAD",
    "index",
    "ORIG_HEAD",
    "MERGE_HEAD",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "config.worktree",
];
/// The same, in the common dir.
const COMMON_FILES: &[&str] = &["HEAD", "config", "packed-refs", "shallow", "commondir"];

/// A linked worktree proven to be what its `.git` says, owned by one user.
/// Made only by [`verify_at`] and [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    entry: PathBuf,
    common: PathBuf,
    admin: PathBuf,
    name: OsString,
    owner: Owner,
    lock: Option<String>,
    /// The former place its admin dir was allowed to name ([`Expect`]).
    also_named: Option<PathBuf>,
    /// Its admin dir names that former place, not the entry.
    named_before: bool,
}

impl Claim {
    /// The worktree's directory, where it is now.
    /// Where the worktree was before the sweep moved it (its former
    /// place, when its admin dir may still name it), else where it is.
    pub fn origin(&self) -> &Path {
        self.also_named.as_deref().unwrap_or(&self.entry)
    }

    pub fn entry(&self) -> &Path {
        &self.entry
    }

    /// The common git dir of its repository.
    pub fn common(&self) -> &Path {
        &self.common
    }

    /// Its admin dir, `<common>/worktrees/<name>`.
    pub fn admin(&self) -> &Path {
        &self.admin
    }

    /// Its admin name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The one user who owns the entry, the admin dir and the repository:
    /// every git operation on it runs as this user.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// The reason of its `git worktree lock` (empty when none was given);
    /// `None` when it is not locked.
    pub fn lock(&self) -> Option<&str> {
        self.lock.as_deref()
    }

    /// Whether its admin dir still names where it was before it was moved
    /// (a relocation that did not happen): git finds its files only once
    /// the admin dir is pointed at the entry ([`crate::admin_dir::relocate`]).
    pub fn named_before(&self) -> bool {
        self.named_before
    }

    /// Opens `<common>/worktrees` again, with the same checks as the claim,
    /// for an operation on the admin dir inside it.
    pub fn open_worktrees(&self) -> Result<OwnedFd, Unclaimed> {
        open_worktrees_of(&self.common, self.owner.uid)
    }

    /// Whether its admin dir holds submodules' git dirs (`modules/`):
    /// their `.git` files name them by relative paths, so the worktree
    /// cannot be moved without breaking them (git refuses to move one).
    pub fn holds_submodules(&self) -> bool {
        self.open_admin().is_ok_and(|admin| {
            fd::stat_at(admin.as_fd(), OsStr::new("modules"))
                .ok()
                .flatten()
                .is_some_and(|st| st.st_mode & 0o170000 == 0o040000)
        })
    }

    /// Opens the admin dir again, with the same checks as the claim, for an
    /// operation that writes into it.
    pub fn open_admin(&self) -> Result<OwnedFd, Unclaimed> {
        let worktrees = self.open_worktrees()?;
        descend(
            &worktrees,
            &self.common.join("worktrees"),
            &self.name,
            self.owner.uid,
        )
    }

    /// What a worker is sent to act on this claim: it verifies it again, as
    /// the owner, before any git operation ([`Claimed::verify`]).
    pub fn ticket(&self) -> Claimed {
        Claimed {
            entry: self.entry.clone(),
            owner: self.owner.uid,
            also_named: self.also_named.clone(),
        }
    }

    /// The ticket for this worktree once renamed to `now` (into the trash,
    /// or back), while its admin dir may still name where it was.
    pub fn ticket_moved(&self, now: &Path) -> Claimed {
        Claimed {
            entry: now.to_path_buf(),
            owner: self.owner.uid,
            also_named: Some(self.entry.clone()),
        }
    }
}

/// A claim on its way to the worker that acts on it: the entry and whom it
/// must belong to. It proves nothing by itself (it crossed a process
/// boundary): [`Claimed::verify`] turns it back into a [`Claim`] on the
/// serving side. Made only from a [`Claim`] (or decoded from the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    #[serde(with = "crate::as_owner::wire_path")]
    entry: PathBuf,
    owner: u32,
    #[serde(default, with = "crate::as_owner::wire_path_opt")]
    also_named: Option<PathBuf>,
}

impl Claimed {
    /// The entry it is about (for messages).
    pub fn entry(&self) -> &Path {
        &self.entry
    }

    /// Verifies the claim again where it is served: the serving process
    /// must run as the claim's owner (root only for root's own).
    pub fn verify(&self) -> Result<Claim, Unclaimed> {
        let euid = nix::unistd::Uid::effective().as_raw();
        if euid != self.owner {
            return Err(Unclaimed::Refused(format!(
                "{}: a claim for uid {} served by uid {euid}",
                self.entry.display(),
                self.owner
            )));
        }
        verify(
            &self.entry,
            Expect {
                owner: self.owner,
                also_named: self.also_named.as_deref(),
            },
        )
    }
}

/// Why an entry is not a verified claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclaimed {
    /// It has no `.git` file: a plain directory, a clone, or not a
    /// directory. The caller classifies it; no git operation is due.
    NotLinked,
    /// Its `.git` names an admin dir or a repository that is gone: a broken
    /// worktree.
    Broken(String),
    /// It is, or pretends to be, a linked worktree, but something above does
    /// not hold: refused, never a git operation.
    Refused(String),
}

impl fmt::Display for Unclaimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unclaimed::NotLinked => f.write_str("not a linked worktree"),
            Unclaimed::Broken(why) | Unclaimed::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Unclaimed {}

/// Whom a claim must belong to, and which paths the admin dir may name.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The uid that must own the entry, the admin dir and the repository.
    pub owner: u32,
    /// A second path the admin dir's `gitdir` may name instead of the
    /// entry's own: where a quarantined entry lived before the sweep moved
    /// it, until its admin entry is pointed at the trash.
    pub also_named: Option<&'a Path>,
}

impl Expect<'_> {
    /// A claim for `owner`, named by its own path only.
    pub fn owner(owner: u32) -> Expect<'static> {
        Expect {
            owner,
            also_named: None,
        }
    }
}

/// The uid whose worktrees a root holds, for a pass running as `euid`: the
/// root's configured owner; else root for a privileged pass, and the pass's
/// own uid for an unprivileged one (which can act for no one else).
pub fn expected_owner(root: &crate::config::Root, euid: u32) -> u32 {
    root.owner.as_ref().map_or(euid, |o| o.uid)
}

/// Opens `<common>/worktrees` of a repository that must belong to `owner`,
/// with the checks of a claim on the way (for removing an admin entry whose
/// worktree is gone, which no claim can vouch for any more).
pub fn open_worktrees_of(common: &Path, owner: u32) -> Result<OwnedFd, Unclaimed> {
    let (fd, _) = open_common(common, owner)?;
    descend(&fd, common, "worktrees", owner)
}

/// A repository proven to belong to one user: its common git dir is on a
/// strict path (as a claim's is), owned by that user, and holds a regular
/// `HEAD`. What an admin command needs before a git operation on a
/// repository that has no live worktree to claim (restoring a preserved
/// set, installing the hook, reading the hook's state). Made only by
/// [`verify_repository`], [`repository_of`] and [`Claim::repository`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    common: PathBuf,
    owner: Owner,
}

impl Repository {
    /// Its common git dir.
    pub fn common(&self) -> &Path {
        &self.common
    }

    /// The one user it belongs to: every git operation on it runs as them.
    pub fn owner(&self) -> Owner {
        self.owner
    }
}

impl Claim {
    /// The repository the claimed worktree belongs to, as verified.
    pub fn repository(&self) -> Repository {
        Repository {
            common: self.common.clone(),
            owner: self.owner,
        }
    }
}

/// Verifies the repository whose common git dir is `common` (absolute,
/// normal) as one that belongs to `owner`: every directory from `/` to it
/// owned by root or `owner` and writable by no one else, the common dir
/// owned by `owner`, its `HEAD` a regular file and the files git opens
/// first regular or absent.
pub fn verify_repository(common: &Path, owner: u32) -> Result<Repository, Unclaimed> {
    let (fd, st) = open_common(common, owner)?;
    match fd::stat_at(fd.as_fd(), OsStr::new("HEAD")) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Unclaimed::Broken(format!(
                "{}: not a git repository (it has no HEAD)",
                common.display()
            )))
        }
        Err(e) => {
            return Err(Unclaimed::Refused(format!(
                "{}/HEAD: {e}",
                common.display()
            )))
        }
    }
    regular_or_absent(&fd, common, COMMON_FILES)?;
    Ok(Repository {
        common: common.to_path_buf(),
        owner: Owner {
            uid: owner,
            gid: st.st_gid,
        },
    })
}

/// The repository a person names by `path` (absolute, normal): a worktree
/// top with a `.git` directory, a linked worktree (verified as a claim), or
/// a common git dir itself; verified as belonging to `owner`, or when
/// `None`, to whoever owns the directory at `path` (one owner all the
/// same, on a strict path). `NotLinked` when it is none of these, or
/// nothing is there. Nothing is read through a symlink or from a FIFO, and
/// git is not involved: this decides whether it may run.
pub fn repository_of(path: &Path, owner: Option<u32>) -> Result<Repository, Unclaimed> {
    let refused = |why: String| Unclaimed::Refused(format!("{}: {why}", path.display()));
    if !is_normal(path) {
        return Err(refused("not an absolute, normal path".to_owned()));
    }
    let dir = match fd::open_path(path) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Err(Unclaimed::NotLinked),
        Err(e) => {
            return Err(refused(format!(
                "cannot be opened as a directory without following a link: {e}"
            )))
        }
    };
    let st = fstat(dir.as_fd()).map_err(|e| refused(format!("cannot stat: {e}")))?;
    let owner = owner.unwrap_or(st.st_uid);
    let kind = |name: &str| {
        fd::stat_at(dir.as_fd(), OsStr::new(name))
            .map(|st| st.map(|st| st.st_mode & 0o170000))
            .map_err(|e| refused(format!("{name}: {e}")))
    };
    const DIR: u32 = 0o040000;
    const REGULAR: u32 = 0o100000;
    match kind(".git")? {
        Some(DIR) => {
            owned_by(&st, owner, "the worktree").map_err(&refused)?;
            strict(&st, "the worktree").map_err(&refused)?;
            verify_repository(&path.join(".git"), owner)
        }
        Some(REGULAR) => verify(path, Expect::owner(owner)).map(|c| c.repository()),
        Some(mode) => Err(refused(format!(
            ".git is {}: git would block or misread it",
            fd::kind_name(mode)
        ))),
        None => match (kind("HEAD")?, kind("commondir")?) {
            (Some(REGULAR), None) => verify_repository(path, owner),
            (_, Some(_)) => Err(refused(
                "the git dir of a linked worktree (it has a commondir): name the repository \
                 or the worktree instead"
                    .to_owned(),
            )),
            _ => Err(Unclaimed::NotLinked),
        },
    }
}

/// Opens the common dir `common` with the strict checks on its path, and
/// checks that `owner` owns it.
fn open_common(common: &Path, owner: u32) -> Result<(OwnedFd, FileStat), Unclaimed> {
    if !is_normal(common) {
        return Err(Unclaimed::Refused(format!(
            "{}: not an absolute, normal path",
            common.display()
        )));
    }
    let fd = open_strict(common, owner)?;
    let st = fstat(fd.as_fd())
        .map_err(|e| Unclaimed::Refused(format!("{}: cannot stat: {e}", common.display())))?;
    owned_by(&st, owner, "the repository")
        .map_err(|why| Unclaimed::Refused(format!("{}: {why}", common.display())))?;
    Ok((fd, st))
}

/// Verifies the entry `name` of the open directory `parent`, which lives at
/// `parent_path`.
pub fn verify_at(
    parent: BorrowedFd<'_>,
    parent_path: &Path,
    name: &OsStr,
    expect: Expect<'_>,
) -> Result<Claim, Unclaimed> {
    let entry = parent_path.join(name);
    let refused = |why: String| Unclaimed::Refused(format!("{}: {why}", entry.display()));
    let entry_fd = fd::open_path_at(parent, name).map_err(|_| Unclaimed::NotLinked)?;
    let dotgit = match fd::read_at(entry_fd.as_fd(), OsStr::new(".git"), MAX_POINTER) {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(ReadError::NotRegular("a directory")) => return Err(Unclaimed::NotLinked),
        Err(e) => return Err(refused(format!(".git {e}"))),
    };
    let admin = parse_gitfile(&dotgit).map_err(|why| refused(format!(".git {why}")))?;
    let (common, admin_name) = split_admin(&admin).ok_or_else(|| {
        refused(format!(
            ".git names {}, which is not <repository>/worktrees/<name>",
            admin.display()
        ))
    })?;
    let entry_st = fstat(entry_fd.as_fd()).map_err(|e| refused(format!("cannot stat: {e}")))?;
    owned_by(&entry_st, expect.owner, "the worktree").map_err(&refused)?;
    strict(&entry_st, "the worktree").map_err(&refused)?;

    let common_fd = open_strict(&common, expect.owner)?;
    let worktrees_fd = descend(&common_fd, &common, "worktrees", expect.owner)?;
    let admin_fd = descend(
        &worktrees_fd,
        &common.join("worktrees"),
        &admin_name,
        expect.owner,
    )?;
    let common_st = fstat(common_fd.as_fd()).map_err(|e| refused(format!("cannot stat: {e}")))?;
    owned_by(&common_st, expect.owner, "the repository").map_err(&refused)?;
    let admin_st = fstat(admin_fd.as_fd()).map_err(|e| refused(format!("cannot stat: {e}")))?;
    owned_by(&admin_st, expect.owner, "the admin dir").map_err(&refused)?;

    let commondir = read_pointer(&admin_fd, &admin, "commondir")?
        .ok_or_else(|| refused(format!("{}/commondir is missing", admin.display())))?;
    let named_common = normalize(&admin.join(OsStr::from_bytes(&commondir)));
    if named_common != common {
        return Err(refused(format!(
            "{}/commondir names {}, not the repository {} that holds it",
            admin.display(),
            named_common.display(),
            common.display()
        )));
    }
    let backlink = read_pointer(&admin_fd, &admin, "gitdir")?
        .ok_or_else(|| refused(format!("{}/gitdir is missing", admin.display())))?;
    let backlink = PathBuf::from(OsString::from_vec(backlink));
    let named_before = backlink != entry.join(".git");
    let names_us = !named_before
        || expect
            .also_named
            .is_some_and(|p| backlink == p.join(".git"));
    if !names_us {
        return Err(refused(format!(
            "its admin dir {} belongs to {}, not to this path (`git worktree repair` fixes a moved worktree)",
            admin.display(),
            backlink.display()
        )));
    }
    regular_or_absent(&admin_fd, &admin, ADMIN_FILES)?;
    regular_or_absent(&common_fd, &common, COMMON_FILES)?;
    let lock = read_pointer(&admin_fd, &admin, "locked")?
        .map(|r| String::from_utf8_lossy(&r).trim_end().to_owned());
    Ok(Claim {
        entry,
        common,
        admin,
        name: admin_name,
        owner: Owner {
            uid: expect.owner,
            gid: common_st.st_gid,
        },
        lock,
        also_named: expect.also_named.map(Path::to_path_buf),
        named_before,
    })
}

/// Verifies the directory at the absolute `path` (its parent is opened
/// without following a symlink anywhere).
pub fn verify(path: &Path, expect: Expect<'_>) -> Result<Claim, Unclaimed> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Unclaimed::Refused(format!(
            "{}: not a path to a directory entry",
            path.display()
        )));
    };
    if !is_normal(path) {
        return Err(Unclaimed::Refused(format!(
            "{}: not an absolute, normal path",
            path.display()
        )));
    }
    let parent_fd = fd::open_path(parent).map_err(|e| {
        Unclaimed::Refused(format!(
            "{}: cannot reach it without following a link: {e}",
            path.display()
        ))
    })?;
    verify_at(parent_fd.as_fd(), parent, name, expect)
}

/// Where the work of a broken worktree can be recorded: a repository
/// verified as the owner's, and the worktree's admin dir in it when that is
/// still there (the repository moved, taking it along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub repository: Repository,
    pub admin: Option<PathBuf>,
    /// The admin name its `.git` names.
    pub name: OsString,
}

/// For the broken worktree `name` of the open directory `parent` (at
/// `parent_path`; `original` is where it lived before the trash), whose
/// `.git` names an admin dir that is gone: the repository its work can be
/// preserved into (SPEC, "preserve"), if one can be found and verified:
///
/// - the repository its `.git` names, when only the admin dir is gone (it
///   was pruned or deleted);
/// - else one of the `known` repositories (those the ledger names) whose
///   `worktrees/<name>` names this entry back (`gitdir`) and that
///   repository (`commondir`): the repository moved with its admin dirs.
///
/// The entry must be a directory of `owner`'s, writable by no one else,
/// and the repository `owner`'s on a strict path ([`verify_repository`]);
/// everything is read relative to directory descriptors, never through a
/// symlink. `None` when no repository qualifies: the work is unrecordable.
pub fn find_repository(
    parent: BorrowedFd<'_>,
    parent_path: &Path,
    name: &OsStr,
    original: &Path,
    owner: u32,
    known: &[PathBuf],
) -> Option<Found> {
    let entry_fd = fd::open_path_at(parent, name).ok()?;
    let st = fstat(entry_fd.as_fd()).ok()?;
    owned_by(&st, owner, "the worktree").ok()?;
    strict(&st, "the worktree").ok()?;
    let dotgit = fd::read_at(entry_fd.as_fd(), OsStr::new(".git"), MAX_POINTER).ok()??;
    let (common, admin_name) = split_admin(&parse_gitfile(&dotgit).ok()?)?;
    if let Ok(repository) = verify_repository(&common, owner) {
        let worktrees = open_worktrees_of(&common, owner);
        let gone = match &worktrees {
            Ok(fd) => matches!(fd::stat_at(fd.as_fd(), &admin_name), Ok(None)),
            Err(Unclaimed::Broken(_)) => true,
            Err(_) => false,
        };
        return gone.then_some(Found {
            repository,
            admin: None,
            name: admin_name,
        });
    }
    let names_us = [parent_path.join(name).join(".git"), original.join(".git")];
    known.iter().find_map(|k| {
        let repository = verify_repository(k, owner).ok()?;
        let worktrees = open_worktrees_of(k, owner).ok()?;
        let admin = k.join("worktrees").join(&admin_name);
        let admin_fd = descend(&worktrees, &k.join("worktrees"), &admin_name, owner).ok()?;
        owned_by(&fstat(admin_fd.as_fd()).ok()?, owner, "the admin dir").ok()?;
        regular_or_absent(&admin_fd, &admin, ADMIN_FILES).ok()?;
        let back = read_pointer(&admin_fd, &admin, "gitdir").ok()??;
        let commondir = read_pointer(&admin_fd, &admin, "commondir").ok()??;
        let back = PathBuf::from(OsString::from_vec(back));
        let names_common = normalize(&admin.join(OsStr::from_bytes(&commondir))) == *k;
        (names_common && names_us.contains(&back)).then(|| Found {
            repository,
            admin: Some(admin),
            name: admin_name.clone(),
        })
    })
}

/// The admin dir a `.git` file names: `gitdir: <absolute normal path>`, one
/// optional trailing newline, nothing else.
fn parse_gitfile(bytes: &[u8]) -> Result<PathBuf, String> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let target = body
        .strip_prefix(b"gitdir: ")
        .ok_or("does not say `gitdir: <path>`")?;
    if target.is_empty() || target.contains(&b'\n') || target.contains(&0) {
        return Err("does not say `gitdir: <path>` on one line".to_owned());
    }
    let path = PathBuf::from(OsStr::from_bytes(target));
    if !path.is_absolute() {
        return Err(RELATIVE.to_owned());
    }
    if !is_normal(&path) {
        return Err(format!(
            "names {}, which is not a normal path",
            path.display()
        ));
    }
    Ok(path)
}

/// Why a worktree linked to its repository by relative paths is left alone:
/// renaming it into the trash would break the link.
pub const RELATIVE: &str =
    "is linked to its repository by relative paths (worktree.useRelativePaths): \
     moving it would break the link, so it is left in place; with that setting off, \
     `git worktree repair` makes the paths absolute";

/// `<common>/worktrees/<name>` → (`<common>`, `<name>`).
fn split_admin(admin: &Path) -> Option<(PathBuf, OsString)> {
    let name = admin.file_name()?;
    let worktrees = admin.parent()?;
    if worktrees.file_name()? != "worktrees" {
        return None;
    }
    Some((worktrees.parent()?.to_path_buf(), name.to_os_string()))
}

/// Opens the absolute, normal `dir` from `/`, one component at a time,
/// never through a symlink, checking that each directory is owned by root
/// or `owner` and writable by no one else.
fn open_strict(dir: &Path, owner: u32) -> Result<OwnedFd, Unclaimed> {
    let root =
        fd::open_path_root().map_err(|e| Unclaimed::Refused(format!("cannot open /: {e}")))?;
    check_dir(&root, Path::new("/"), owner)?;
    let mut current = root;
    let mut path = PathBuf::from("/");
    for component in dir.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let next = descend(&current, &path, name, owner)?;
        path.push(name);
        current = next;
    }
    Ok(current)
}

/// Opens `name` under `parent` (at `parent_path`) and checks it like
/// [`open_strict`] does.
fn descend(
    parent: &OwnedFd,
    parent_path: &Path,
    name: impl AsRef<OsStr>,
    owner: u32,
) -> Result<OwnedFd, Unclaimed> {
    let path = parent_path.join(name.as_ref());
    let fd = match fd::open_path_at(parent.as_fd(), name.as_ref()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => {
            return Err(Unclaimed::Broken(format!(
                "{} no longer exists: the worktree's repository or admin dir is gone",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Unclaimed::Refused(format!(
                "{} cannot be opened as a directory without following a link: {e}",
                path.display()
            )))
        }
    };
    check_dir(&fd, &path, owner)?;
    Ok(fd)
}

fn check_dir(fd: &OwnedFd, path: &Path, owner: u32) -> Result<(), Unclaimed> {
    let refused = |why: String| Unclaimed::Refused(format!("{}: {why}", path.display()));
    let st = fstat(fd.as_fd()).map_err(|e| refused(format!("cannot stat: {e}")))?;
    if st.st_uid != 0 && st.st_uid != owner {
        return Err(refused(format!(
            "owned by uid {}, neither root nor the owner (uid {owner}): never part of a repository treeward acts on",
            st.st_uid
        )));
    }
    strict(&st, "a directory on the repository's path").map_err(refused)
}

fn strict(st: &FileStat, what: &str) -> Result<(), String> {
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "{what} is writable by group or others (mode {:o}): never trusted as a repository",
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn owned_by(st: &FileStat, owner: u32, what: &str) -> Result<(), String> {
    if st.st_uid != owner {
        return Err(format!(
            "{what} is owned by uid {}, not by uid {owner}, the one user it must belong to",
            st.st_uid
        ));
    }
    Ok(())
}

/// A one-line pointer file of the admin dir, without its trailing newline.
fn read_pointer(dir: &OwnedFd, dir_path: &Path, name: &str) -> Result<Option<Vec<u8>>, Unclaimed> {
    match fd::read_at(dir.as_fd(), OsStr::new(name), MAX_POINTER) {
        Ok(bytes) => Ok(bytes.map(|mut b| {
            while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                b.pop();
            }
            b
        })),
        Err(e) => Err(Unclaimed::Refused(format!(
            "{}/{name} {e}",
            dir_path.display()
        ))),
    }
}

fn regular_or_absent(dir: &OwnedFd, dir_path: &Path, names: &[&str]) -> Result<(), Unclaimed> {
    for name in names {
        match fd::stat_at(dir.as_fd(), OsStr::new(name)) {
            Ok(Some(st)) if st.st_mode & 0o170000 != 0o100000 => {
                return Err(Unclaimed::Refused(format!(
                    "{}/{name} is {}: git would block or misread it",
                    dir_path.display(),
                    fd::kind_name(st.st_mode)
                )))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Unclaimed::Refused(format!(
                    "{}/{name}: {e}",
                    dir_path.display()
                )))
            }
        }
    }
    Ok(())
}

/// Whether `path` is absolute and written the one way it can be: no `.`,
/// `..`, doubled or trailing `/` (compared byte for byte: `Path`'s own
/// comparison skips such differences).
pub fn is_normal(path: &Path) -> bool {
    path.is_absolute() && normalize(path).as_os_str() == path.as_os_str()
}

/// Removes `.` and `name/..` pairs lexically, as git resolves `commondir`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitfile_forms() {
        assert_eq!(
            parse_gitfile(b"gitdir: /r/.git/worktrees/a\n"),
            Ok(PathBuf::from("/r/.git/worktrees/a"))
        );
        assert_eq!(
            parse_gitfile(b"gitdir: /r/.git/worktrees/a"),
            Ok(PathBuf::from("/r/.git/worktrees/a"))
        );
        assert_eq!(parse_gitfile(b"gitdir: ../x"), Err(RELATIVE.to_owned()));
        for bad in [
            &b"gitdir:/r/.git/worktrees/a\n"[..],
            b"gitdir: \n",
            b"ref: refs/heads/main\n",
            b"gitdir: /r/.git/worktrees/a\n/etc\n",
            b"gitdir: /r/.git/worktrees/../../etc",
            b"gitdir: /r//.git/worktrees/a",
            b"gitdir: /r/./.git/worktrees/a",
            b"gitdir: /r/.git/worktrees/a/",
        ] {
            assert!(
                parse_gitfile(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn admin_dirs_split_only_under_worktrees() {
        assert_eq!(
            split_admin(Path::new("/r/.git/worktrees/a")),
            Some((PathBuf::from("/r/.git"), OsString::from("a")))
        );
        assert_eq!(split_admin(Path::new("/r/.git/modules/a")), None);
        assert_eq!(split_admin(Path::new("/worktrees")), None);
    }

    #[test]
    fn a_repository_under_a_world_writable_directory_is_never_one() {
        // tempdir() is under /tmp (mode 1777): refused whoever asks, before
        // anything inside is read.
        let tmp = tempfile::tempdir().unwrap();
        let common = tmp.path().join("repo/.git");
        std::fs::create_dir_all(&common).unwrap();
        std::fs::write(common.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        for result in [
            verify_repository(&common, me),
            repository_of(&tmp.path().join("repo"), None),
            repository_of(&common, Some(me)),
        ] {
            match result {
                Err(Unclaimed::Refused(why)) => {
                    assert!(why.contains("writable by group or others"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn what_names_no_repository_is_not_linked_and_odd_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            repository_of(&tmp.path().join("absent"), None),
            Err(Unclaimed::NotLinked)
        );
        let odd = tmp.path().join("x/../y");
        assert!(matches!(
            repository_of(&odd, None),
            Err(Unclaimed::Refused(why)) if why.contains("normal")
        ));
        assert!(matches!(
            verify_repository(Path::new("relative/.git"), 0),
            Err(Unclaimed::Refused(_))
        ));
    }

    #[test]
    fn normalize_folds_dot_dot() {
        assert_eq!(
            normalize(Path::new("/r/.git/worktrees/a/../..")),
            PathBuf::from("/r/.git")
        );
        assert_eq!(normalize(Path::new("/r/./x")), PathBuf::from("/r/x"));
    }
}
