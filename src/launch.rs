//! Finds and starts the privileged helper with its end of the socketpair on
//! fd 3. It follows us by the socket: it exits when we hang up. Its
//! PR_SET_PDEATHSIG covers only our root, unconfined start: once we run as
//! another uid under Landlock's signal scope the kernel refuses that signal,
//! and the helper's own credential change clears it.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use barrierd_client::trust;
use barrierd_privsep::errno::check;
use barrierd_privsep::handover::HELPER_SOCKET_FD;

use crate::sandbox::Account;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("helper {0} not found or not executable; build it with `cargo build --release` (it belongs next to barrierd) or pass --helper PATH")]
    Missing(PathBuf),
    #[error("helper {path}: {why}; refusing to run it as root (install it, and every directory above it, owned by root and not writable by group or others)")]
    Untrusted { path: PathBuf, why: String },
    #[error("closing inherited descriptors (close_range, Linux 5.9+): {0}")]
    CloseInherited(#[source] io::Error),
    #[error("locating our own executable: {0}")]
    SelfPath(#[source] io::Error),
    #[error("starting helper {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Closes every descriptor above stderr that whoever started us left open
/// without close-on-exec: none is ours, and through us one would reach the
/// root helper, or the publisher past its sandbox. First thing at start.
pub fn close_inherited_descriptors() -> Result<(), LaunchError> {
    // SAFETY: close_range on descriptors nothing in this process uses yet.
    check(unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) })
        .map_err(LaunchError::CloseInherited)?;
    Ok(())
}

/// `explicit`, or `barrierd-helper` next to the running executable.
pub fn helper_path(explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .map_err(LaunchError::SelfPath)?
            .with_file_name("barrierd-helper"),
    };
    match path.metadata() {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {}
        _ => return Err(LaunchError::Missing(path)),
    }
    check_trusted(&path)?;
    Ok(path)
}

/// We run the helper as root: only root may have been able to write it, or
/// to replace it or any directory on its way. The clients' rule for the file
/// ([`trust::check`]), with root alone trusted: we are root.
fn check_trusted(path: &Path) -> Result<(), LaunchError> {
    let untrusted = |why: String| LaunchError::Untrusted {
        path: path.to_owned(),
        why,
    };
    let meta = path
        .metadata()
        .map_err(|e| untrusted(format!("cannot read it: {e}")))?;
    trust::check(path, &meta, &[]).map_err(|e| untrusted(e.0))
}

/// Starts the helper with an empty environment, stdin and stdout on
/// /dev/null, our stderr, `socket` as fd 3, and the account it becomes once
/// set up as its first argument (`UID:GID`, resolved here so that the root
/// helper reads no account database).
pub fn spawn(
    helper: &Path,
    account: &Account,
    tracepoints: &[String],
    socket: OwnedFd,
) -> Result<Child, LaunchError> {
    let parent = std::process::id() as libc::pid_t;
    let socket_fd = socket.as_raw_fd();
    let mut command = Command::new(helper);
    command
        .arg(format!("{}:{}", account.uid, account.gid))
        .args(tracepoints)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (dup2, fcntl, close_range, prctl, getppid,
    // _exit).
    unsafe {
        command.pre_exec(move || {
            if socket_fd == HELPER_SOCKET_FD {
                // dup2 onto itself keeps close-on-exec: clear it by hand.
                check(libc::fcntl(socket_fd, libc::F_SETFD, 0))?;
            } else {
                check(libc::dup2(socket_fd, HELPER_SOCKET_FD))?;
            }
            // Only the socket crosses exec: everything above it closes then
            // (close-on-exec, not closed now: std's pipe that reports a
            // failed exec is among them).
            check(libc::syscall(
                libc::SYS_close_range,
                (HELPER_SOCKET_FD + 1) as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ))?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            // We may have died before the prctl: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| LaunchError::Spawn {
        path: helper.to_owned(),
        source,
    })?;
    drop(socket);
    Ok(child)
}

/// Sets this process's nice value (the helper inherits it) unless it is
/// already at least as favourable: the daemon's passes are short, and under
/// load every one of them is a wake-up that waits for a CPU.
pub fn raise_priority(nice: i32) -> io::Result<()> {
    // getpriority can legitimately return -1: clear errno to tell.
    // SAFETY: errno is thread-local and writable.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscalls on our own process.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if current == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(io::Error::last_os_error());
    }
    if current <= nice {
        return Ok(());
    }
    // SAFETY: as above.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) })?;
    Ok(())
}
