//! Running one git process: started without copying treeward's address
//! space, its output collected in the calling thread, under a deadline.
//!
//! Why not `std::process::Command`: every git needs two things done in the
//! child before `exec` (see the contract in [`super`]): `PR_SET_PDEATHSIG`,
//! so that it dies with the thread that started it, and a process group of
//! its own, so that the deadline kills all it started. Any `pre_exec` makes
//! std `fork`, and forking a multi-threaded process copies its page tables
//! and write-protects its pages on every CPU. In a reap of 100 orphans that
//! was as much of treeward's CPU as the gits it started: 686 against 569
//! ms with a spawn that does not copy (medians of 10). Here the child is
//! made as `posix_spawn` makes it, with `clone(CLONE_VM | CLONE_VFORK)`: it
//! runs on a stack of its own in the parent's memory while the calling
//! thread waits, until it execs or exits.
//!
//! Contract of the child, between `clone` and `exec`: it calls only
//! async-signal-safe functions of libc, allocates nothing, takes no lock
//! and has no panic path; everything it reads was prepared by the parent
//! before. Every signal is blocked across `clone`, and the child resets
//! each handled signal to its default before unblocking any: a handler of
//! treeward's never runs in the child, on memory it shares with the
//! parent. A failure before `exec` is left in a cell the parent reads and
//! ends the child with `_exit(127)`; the parent reaps it and reports it.
//!
//! Collecting: stdout, stderr, stdin (when given) and a pidfd of the child
//! are polled together by the calling thread, so a command costs no thread.
//! At the deadline, git's process group is killed (with whatever git
//! started: a FIFO planted where git reads cannot block treeward), before
//! or after git itself ended: a process git started may hold its output
//! open.

use super::Finished;
use nix::libc::{self, c_char, c_int, c_void};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The child's stack: it calls a few system calls and `execve`, in
/// treeward's own memory (the parent's thread is suspended meanwhile).
const CHILD_STACK: usize = 64 * 1024;

/// What to run.
pub struct Spec<'a> {
    /// A name looked up in `PATH` of `env` (never in the current
    /// directory), or a path.
    pub program: &'a OsStr,
    /// `argv[1..]`.
    pub args: &'a [OsString],
    /// The whole environment.
    pub env: &'a [(OsString, OsString)],
    /// The working directory.
    pub cwd: &'a OsStr,
    /// Whether stdin is a pipe (to [`Child::finish`]'s input) rather than
    /// `/dev/null`.
    pub stdin: bool,
    /// One more descriptor for the child: `(ours, at)`, open at `at` (3 to
    /// 9) in it across `exec` (git's trace2 stream); ours is closed once
    /// the child has it.
    pub extra: Option<(OwnedFd, RawFd)>,
}

/// A started child, not yet reaped.
pub struct Child {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    reaped: bool,
}

/// What the child reads between `clone` and `exec`, prepared by the
/// parent: pointers into the parent's `CString`s, null-terminated arrays.
struct Setup {
    paths: Vec<*const c_char>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    cwd: *const c_char,
    /// `(from, to)`: `dup2`ed in this order; every `from` is above every
    /// `to` ([`above_targets`]).
    dups: Vec<(RawFd, RawFd)>,
    /// Where the extra descriptor goes, if there is one (3 to 9).
    extra_at: Option<RawFd>,
    /// The highest signal number (glibc's `SIGRTMAX`, a function call).
    last_signal: c_int,
    parent: libc::pid_t,
    /// The errno of the step that failed, or 0.
    failed: AtomicI32,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a NUL byte in {:?}", s.to_string_lossy()),
        )
    })
}

/// The paths `execve` tries for `program`: itself when it names a path,
/// else each directory of `PATH` in order (an empty entry, which means the
/// current directory to a shell, is skipped).
fn candidates(program: &OsStr, env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![cstring(program)?]);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(&b""[..], |(_, v)| v.as_bytes());
    path.split(|b| *b == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| {
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            cstring(OsStr::from_bytes(&full))
        })
        .collect()
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// `fd` moved above the descriptors the child is given (0 to 9), so that
/// no `dup2` of the child overwrites another's source (and none is already
/// at its target, where it would keep its close-on-exec flag).
fn above_targets(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 9 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one,
    // which is then owned here alone.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is a descriptor just returned to us, owned by nothing.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Starts `spec`.
pub fn spawn(spec: Spec) -> io::Result<Child> {
    if spec
        .extra
        .as_ref()
        .is_some_and(|(_, at)| !(3..=9).contains(at))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the extra descriptor goes at 3 to 9",
        ));
    }
    let paths = candidates(spec.program, spec.env)?;
    if paths.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let mut argv = vec![cstring(spec.program)?];
    for a in spec.args {
        argv.push(cstring(a)?);
    }
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = cstring(spec.cwd)?;

    let (child_in, stdin) = if spec.stdin {
        let (read, write) = pipe()?;
        (read, Some(write))
    } else {
        let null = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        (null, None)
    };
    let (stdout, child_out) = pipe()?;
    let (stderr, child_err) = pipe()?;
    let (child_in, child_out, child_err) = (
        above_targets(child_in)?,
        above_targets(child_out)?,
        above_targets(child_err)?,
    );
    let extra = spec
        .extra
        .map(|(fd, at)| above_targets(fd).map(|fd| (fd, at)))
        .transpose()?;
    let mut dups = vec![
        (child_in.as_raw_fd(), 0),
        (child_out.as_raw_fd(), 1),
        (child_err.as_raw_fd(), 2),
    ];
    if let Some((fd, at)) = &extra {
        dups.push((fd.as_raw_fd(), *at));
    }

    let nul = |v: &[CString]| {
        let mut p: Vec<*const c_char> = v.iter().map(|c| c.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    };
    let setup = Setup {
        paths: paths.iter().map(|c| c.as_ptr()).collect(),
        argv: nul(&argv),
        envp: nul(&envp),
        cwd: cwd.as_ptr(),
        dups,
        extra_at: extra.as_ref().map(|(_, at)| *at),
        parent: nix::unistd::getpid().as_raw(),
        last_signal: libc::SIGRTMAX(),
        failed: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down from its 16-byte-aligned top.
    let top = {
        let end = stack.as_mut_ptr().wrapping_add(CHILD_STACK);
        end.wrapping_sub(end as usize % 16)
    };
    let mut pidfd: c_int = -1;
    let (pid, clone_errno) = {
        let _blocked = BlockedSignals::new()?;
        // SAFETY: the child runs `child` on `stack`, which nothing else
        // uses, in this process's memory (CLONE_VM); this thread is
        // suspended until the child execs or exits (CLONE_VFORK), so
        // `setup` and everything it points to outlive the child's use of
        // them. The child gets its own descriptor table and signal
        // handlers (no CLONE_FILES, no CLONE_SIGHAND). CLONE_PIDFD stores a
        // pidfd of the child in `pidfd` (the argument after `arg`).
        let pid = unsafe {
            libc::clone(
                child,
                top.cast::<c_void>(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                std::ptr::from_ref(&setup).cast_mut().cast::<c_void>(),
                &mut pidfd as *mut c_int,
            )
        };
        (pid, errno())
    };
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(clone_errno));
    }
    // SAFETY: CLONE_PIDFD put a new descriptor of ours there.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop((child_in, child_out, child_err, extra));
    let failed = setup.failed.load(Ordering::SeqCst);
    if failed != 0 {
        // It exited before exec: reap it.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(io::Error::from_raw_os_error(failed));
    }
    Ok(Child {
        pid,
        pidfd,
        stdin,
        stdout: Some(stdout),
        stderr: Some(stderr),
        reaped: false,
    })
}

/// Every signal blocked in the calling thread until dropped: the child
/// inherits the mask and unblocks only once no handler of treeward's is
/// left in it.
struct BlockedSignals(libc::sigset_t);

impl BlockedSignals {
    fn new() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain data, filled by sigfillset before use;
        // pthread_sigmask writes the previous mask into `old`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let e = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            if e != 0 {
                return Err(io::Error::from_raw_os_error(e));
            }
            Ok(BlockedSignals(old))
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// The child, between `clone` and `exec`. Async-signal-safe calls only,
/// nothing allocated (see the module's contract).
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Setup`, alive and unchanged while the
    // parent's thread is suspended (CLONE_VFORK).
    let setup = unsafe { &*arg.cast::<Setup>() };
    // SAFETY: each call below is async-signal-safe; the pointers are the
    // parent's, valid until the child execs or exits.
    let errno = unsafe { prepare_and_exec(setup) };
    setup.failed.store(errno.max(1), Ordering::SeqCst);
    // SAFETY: _exit ends the child without running anything of the
    // parent's (no atexit handler, no stdio flush).
    unsafe { libc::_exit(127) }
}

/// Runs in the child: returns the errno of the step that failed (`execve`
/// returns only on failure).
unsafe fn prepare_and_exec(s: &Setup) -> c_int {
    // Handlers back to their defaults (a handler's code must not run here,
    // nor in git), SIGPIPE too (treeward ignores it; git expects it); an
    // ignored signal stays ignored, as std's spawn leaves it.
    for sig in 1..=s.last_signal {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            continue; // glibc's own signals (32, 33) are refused: not ours.
        }
        let ignored = old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGPIPE;
        if old.sa_sigaction != libc::SIG_DFL && !ignored {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, std::ptr::null_mut());
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

    // git dies with the thread that started it.
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        return errno();
    }
    // A group of its own: the deadline kills all of it.
    if libc::setpgid(0, 0) != 0 {
        return errno();
    }
    // The parent died before PR_SET_PDEATHSIG took: nobody waits.
    if libc::getppid() != s.parent {
        return libc::ESRCH;
    }
    for &(from, to) in &s.dups {
        if libc::dup2(from, to) < 0 {
            return errno();
        }
    }
    // Nothing else open reaches git: not treeward's (close-on-exec
    // already), nor what treeward inherited without the flag. The table
    // is the child's own (no CLONE_FILES). A kernel without close_range
    // (before 5.9) leaves only the latter.
    let above = match s.extra_at {
        Some(at) => {
            if at > 3 {
                libc::close_range(3, (at - 1) as libc::c_uint, 0);
            }
            at + 1
        }
        None => 3,
    };
    libc::close_range(above as libc::c_uint, libc::c_uint::MAX, 0);
    if libc::chdir(s.cwd) != 0 {
        return errno();
    }
    // As execvp: the first candidate that is not missing; a denied one is
    // remembered and the search goes on.
    let mut error = libc::ENOENT;
    for &path in &s.paths {
        libc::execve(path, s.argv.as_ptr(), s.envp.as_ptr());
        match errno() {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => error = libc::EACCES,
            other => return other,
        }
    }
    error
}

/// errno (read without allocating: the child calls this too).
fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno cell.
    unsafe { *libc::__errno_location() }
}

impl Child {
    /// Feeds `input` to its stdin (when piped), reads its stdout and stderr
    /// to their end and reaps it, all within `deadline`. `Ok(None)`: the
    /// deadline passed, and the child's process group was killed.
    ///
    /// The child is reaped last: until then its pid, which is its group's
    /// id, cannot be taken by another process, so the kill at the deadline
    /// reaches git's group whether or not git itself has ended.
    pub fn finish(mut self, input: Vec<u8>, deadline: Duration) -> io::Result<Option<Finished>> {
        let until = Instant::now() + deadline;
        let mut input = self
            .stdin
            .take()
            .filter(|_| !input.is_empty())
            .map(|fd| (fd, input, 0));
        if let Some((fd, _, _)) = &input {
            set_nonblocking(fd)?;
        }
        let mut out = Stream::new(self.stdout.take());
        let mut err = Stream::new(self.stderr.take());
        let mut exited = false;
        while !(exited && out.fd.is_none() && err.fd.is_none()) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Ok(None);
            }
            let mut polled = Vec::with_capacity(4);
            let mut watch = |fd: Option<&OwnedFd>, events| {
                if let Some(fd) = fd {
                    polled.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events,
                        revents: 0,
                    });
                }
            };
            watch(out.fd.as_ref(), libc::POLLIN);
            watch(err.fd.as_ref(), libc::POLLIN);
            watch(Some(&self.pidfd).filter(|_| !exited), libc::POLLIN);
            watch(input.as_ref().map(|(fd, _, _)| fd), libc::POLLOUT);
            let ms = left.as_millis().clamp(1, c_int::MAX as u128) as c_int;
            // SAFETY: `polled` is an array of `polled.len()` pollfds.
            let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
            if n < 0 {
                match errno() {
                    libc::EINTR => continue,
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
            let ready = |fd: &OwnedFd| {
                polled
                    .iter()
                    .any(|p| p.fd == fd.as_raw_fd() && p.revents != 0)
            };
            for s in [&mut out, &mut err] {
                if s.fd.as_ref().is_some_and(ready) {
                    s.read();
                }
            }
            if let Some((fd, data, at)) = &mut input {
                if ready(fd) {
                    match nix::unistd::write(&*fd, &data[*at..]) {
                        Ok(n) => *at += n,
                        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                        // git closed its stdin (an error, say): its status
                        // says what happened.
                        Err(_) => *at = data.len(),
                    }
                    if *at == data.len() {
                        input = None; // closed: git reads the end of its input
                    }
                }
            }
            // The pidfd is readable once the child has ended.
            exited = exited || ready(&self.pidfd);
        }
        let code = self.reap()?;
        Ok(Some(Finished {
            code,
            stdout: out.data,
            stderr: err.data,
        }))
    }

    /// Waits for the child, which has ended or been killed; its exit code,
    /// `None` when a signal ended it.
    fn reap(&mut self) -> io::Result<Option<i32>> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return Ok(Some(code));
                }
                Ok(WaitStatus::Signaled(..)) => {
                    self.reaped = true;
                    return Ok(None);
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    self.reaped = true; // ECHILD: nothing left to wait for
                    return Err(e.into());
                }
            }
        }
    }

    /// Kills the child's process group and reaps the child.
    fn kill(&mut self) {
        // SAFETY: kill(2) of the group whose id is the child's pid, made
        // before exec; the child is not reaped yet, so the id is still its.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let _ = self.reap();
    }
}

impl Drop for Child {
    /// A child given up on (an error while collecting it) is not left
    /// running, nor unreaped.
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// One output pipe being read to its end (best effort: what was read
/// before an error).
struct Stream {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
}

impl Stream {
    fn new(fd: Option<OwnedFd>) -> Stream {
        Stream {
            fd,
            data: Vec::new(),
        }
    }

    /// One read, after poll said the pipe is ready.
    fn read(&mut self) {
        let Some(fd) = &self.fd else { return };
        self.data.reserve(64 * 1024);
        let spare = self.data.spare_capacity_mut();
        // SAFETY: read(2) writes at most `spare.len()` bytes into the
        // vector's spare capacity.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            0 => self.fd = None,
            // SAFETY: read(2) initialised these `n` bytes.
            n if n > 0 => unsafe { self.data.set_len(self.data.len() + n as usize) },
            _ if matches!(errno(), libc::EINTR | libc::EAGAIN) => {}
            _ => self.fd = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn spec<'a>(
        program: &'a str,
        args: &'a [OsString],
        env: &'a [(OsString, OsString)],
    ) -> Spec<'a> {
        Spec {
            program: OsStr::new(program),
            args,
            env,
            cwd: OsStr::new("/"),
            stdin: false,
            extra: None,
        }
    }

    fn path() -> Vec<(OsString, OsString)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    fn run(s: Spec, input: Vec<u8>) -> Finished {
        spawn(s)
            .unwrap()
            .finish(input, Duration::from_secs(20))
            .unwrap()
            .expect("within its deadline")
    }

    /// A field of `/proc/<pid>/status` (`SigCgt`, …), as a mask.
    fn mask(status: &str, field: &str) -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    /// (A handler of the parent's is reset by `exec` itself, so what the
    /// child does about handlers, for the moment before `exec`, cannot be
    /// seen from git.)
    #[test]
    fn the_child_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
        use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
        let bit = |s: Signal| 1u64 << (s as i32 - 1);
        let mut usr2 = SigSet::empty();
        usr2.add(Signal::SIGUSR2);
        signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr2), None).unwrap();
        let ours = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let env = path();
        let args = [OsString::from("/proc/self/status")];
        let child = run(spec("cat", &args, &env), Vec::new());
        signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&usr2), None).unwrap();
        let theirs = String::from_utf8(child.stdout).unwrap();

        // Control: this thread blocks SIGUSR2 and ignores SIGPIPE (Rust's
        // runtime does).
        assert_ne!(mask(&ours, "SigBlk") & bit(Signal::SIGUSR2), 0);
        assert_ne!(mask(&ours, "SigIgn") & bit(Signal::SIGPIPE), 0);
        assert_eq!(child.code, Some(0));
        assert_eq!(mask(&theirs, "SigBlk"), 0, "{theirs}");
        assert_eq!(
            mask(&theirs, "SigIgn") & bit(Signal::SIGPIPE),
            0,
            "{theirs}"
        );
    }

    #[test]
    fn the_child_leads_a_process_group_of_its_own_in_the_directory_given() {
        let env = path();
        let args = ["-c".into(), "cut -d' ' -f1,5 /proc/$$/stat; pwd".into()];
        let out = run(spec("sh", &args, &env), Vec::new());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(ids[0], ids[1], "pid and process group");
        assert_ne!(ids[1], nix::unistd::getpgrp().to_string());
        assert_eq!(lines.next(), Some("/"));
    }

    #[test]
    fn the_child_holds_only_its_standard_descriptors_and_the_extra_one() {
        let env = path();
        let args = [OsString::from("/proc/self/fd")];
        let names = |out: &[u8]| {
            String::from_utf8_lossy(out)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let listed = |extra| {
            let mut s = spec("ls", &args, &env);
            s.extra = extra;
            names(&run(s, Vec::new()).stdout)
        };
        // A descriptor without close-on-exec, as one inherited would be.
        // SAFETY: dup(2) of stdin; the new descriptor is closed below.
        let inherited = unsafe { libc::dup(0) };
        assert!(inherited > 2);
        // 3 is the directory `ls` reads.
        let plain = listed(None);
        let (_read, write) = pipe().unwrap();
        let with_extra = listed(Some((write, 9)));
        // Control: std's spawn passes it on.
        let std_listed = names(
            &std::process::Command::new("ls")
                .arg("/proc/self/fd")
                .output()
                .unwrap()
                .stdout,
        );
        // SAFETY: closes the descriptor dup'd above, ours alone.
        unsafe { libc::close(inherited) };
        assert!(
            std_listed.contains(&inherited.to_string()),
            "{std_listed:?}"
        );
        assert_eq!(plain, ["0", "1", "2", "3"]);
        assert_eq!(with_extra, ["0", "1", "2", "3", "9"]);
    }

    #[test]
    fn input_and_output_larger_than_a_pipe_pass_whole() {
        let env = path();
        let input: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let mut s = spec("cat", &[], &env);
        s.stdin = true;
        let out = run(s, input.clone());
        assert_eq!(out.code, Some(0));
        assert!(
            out.stdout == input,
            "{} bytes back of {}",
            out.stdout.len(),
            input.len()
        );
        // Control: without a pipe, stdin is empty.
        assert!(run(spec("cat", &[], &env), input).stdout.is_empty());
    }

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        let env = path();
        let args = [OsString::from("30")];
        let start = || {
            let child = spawn(spec("sleep", &args, &env)).unwrap();
            let pid = nix::unistd::Pid::from_raw(child.pid);
            // Neither killed nor reaped by its drop.
            std::mem::forget(child);
            pid
        };
        let alive = start();
        let orphan = std::thread::scope(|s| s.spawn(start).join().unwrap());
        let ended = nix::sys::wait::waitpid(orphan, None).unwrap();
        assert_eq!(
            ended,
            nix::sys::wait::WaitStatus::Signaled(orphan, nix::sys::signal::Signal::SIGKILL, false)
        );
        // Control: the one whose thread lives is still running.
        assert_eq!(
            nix::sys::wait::waitpid(alive, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap(),
            nix::sys::wait::WaitStatus::StillAlive
        );
        nix::sys::signal::kill(alive, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(alive, None).unwrap();
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error_named_by_its_errno() {
        let env = vec![("PATH".into(), OsString::from(":/nonexistent:/usr/bin"))];
        let e = spawn(spec("treeward-no-such-program", &[], &env))
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // Control: a program on that PATH starts.
        assert_eq!(run(spec("true", &[], &env), Vec::new()).code, Some(0));
        let nul = [OsString::from_vec(b"a\0b".to_vec())];
        let e = spawn(spec("true", &nul, &env)).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // An extra descriptor where stdout goes is refused, not dup2ed.
        let (_read, write) = pipe().unwrap();
        let mut over_stdout = spec("true", &[], &env);
        over_stdout.extra = Some((write, 1));
        let e = spawn(over_stdout).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn at_the_deadline_the_whole_group_is_killed() {
        let env = path();
        // The shell's child holds stdout open: git's end would not end it.
        let args = ["-c".into(), "sleep 30 & echo started; wait".into()];
        let started = Instant::now();
        let ended = spawn(spec("sh", &args, &env))
            .unwrap()
            .finish(Vec::new(), Duration::from_millis(300))
            .unwrap();
        assert!(ended.is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
