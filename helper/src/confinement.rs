//! The helper's system-facing policy: its steady-state seccomp table, and the
//! few raw calls its loop makes (the table must cover exactly these).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use barrierd_privsep::errno::check;
use barrierd_privsep::seccomp::{self, Allow, Arg};

/// Every system call the helper may make once set up: nothing that opens,
/// maps, loads or attaches. Its own rows, then privsep's shared baseline. Anything else kills it by SIGSYS, named.
pub fn seccomp_table(socket: RawFd, epoll: RawFd) -> Vec<Allow> {
    let fd = |fd: RawFd| Arg::Eq(0, fd as u64);
    let mut table = vec![
        // Sleep until BPF signals or the publisher hangs up (see `wait`).
        Allow::when("epoll_wait", [fd(epoll)]),
        // Snapshots to the publisher; MSG_NOSIGNAL so a gone peer is EPIPE.
        Allow::when(
            "sendto",
            [fd(socket), Arg::Eq(3, libc::MSG_NOSIGNAL as u64)],
        ),
    ];
    table.extend(seccomp::baseline());
    table
}

/// Takes ownership of the socket `barrierd` left at `fd`.
pub fn inherited_socket(fd: RawFd) -> OwnedFd {
    // SAFETY: barrierd starts us with its end of the socketpair at `fd` and
    // nothing else in this process uses that number; HelperEnd::new then
    // checks that it is a SOCK_SEQPACKET socket.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub fn ignore_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// An epoll set with `readable` registered for input and `hangup` for
/// nothing: hang-ups and errors are reported without asking (its input side is
/// shut down, so asking for input would wake us for ever). Each event carries
/// its fd.
pub fn epoll_with(readable: RawFd, hangup: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let raw = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: epoll_create1 returned a new descriptor that we now own.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    for (fd, events) in [(readable, libc::EPOLLIN as u32), (hangup, 0)] {
        let mut event = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the call's duration.
        check(unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    }
    Ok(epoll)
}

pub enum Wake {
    /// The socket reported a hang-up or an error: the publisher is gone.
    Hangup,
    /// BPF signalled.
    Event,
    /// `timeout_ns` passed first.
    Timeout,
}

/// Sleeps until an event, or for at most `timeout_ns` (rounded up to whole
/// milliseconds, so never short of it).
pub fn wait(epoll: BorrowedFd<'_>, socket: RawFd, timeout_ns: Option<u64>) -> io::Result<Wake> {
    let timeout_ms = timeout_ns.map_or(-1, |ns| {
        i32::try_from(ns.div_ceil(1_000_000)).unwrap_or(i32::MAX)
    });
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
    loop {
        // SAFETY: `events` is valid for writes of its length.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n > 0 {
            let hangup = events[..n as usize].iter().any(|e| e.u64 == socket as u64);
            return Ok(if hangup { Wake::Hangup } else { Wake::Event });
        }
        if n == 0 {
            return Ok(Wake::Timeout);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Leaves at once: no destructors, no std runtime cleanup (which would call
/// sigaltstack and munmap, outside the policy). Detaching is the kernel's job
/// when our descriptors close.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit is always safe to call; nothing needs flushing (stderr is
    // unbuffered and all messages are sent).
    unsafe { libc::_exit(status) }
}

#[cfg(test)]
mod tests {
    use barrierd_privsep::seccomp::{install, run_confined_child};

    use super::*;

    fn killed_by_sigsys(status: i32) -> bool {
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
    }

    #[test]
    fn architecture_md_lists_exactly_the_calls_of_this_table() {
        let doc = include_str!("../../ARCHITECTURE.md");
        barrierd_privsep::seccomp::documented_exactly(&seccomp_table(3, 4), doc, "## The helper")
            .unwrap();
    }

    #[test]
    fn opening_a_file_kills_the_helper_and_is_named() {
        let (status, stderr) = run_confined_child(
            || install("barrierd-helper", &seccomp_table(3, 4)).unwrap(),
            // SAFETY: a plain open; the filter traps it before it runs.
            || unsafe {
                libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY);
            },
        );
        assert!(
            killed_by_sigsys(status),
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(
            stderr.contains("barrierd-helper: seccomp: forbidden system call openat"),
            "{stderr:?}"
        );
    }

    #[test]
    fn loading_a_bpf_program_kills_the_helper_and_is_named() {
        let (status, stderr) = run_confined_child(
            || install("barrierd-helper", &seccomp_table(3, 4)).unwrap(),
            // SAFETY: bpf(BPF_PROG_LOAD) with no attributes; trapped before it runs.
            || unsafe {
                libc::syscall(libc::SYS_bpf, 5, 0, 0);
            },
        );
        assert!(
            killed_by_sigsys(status),
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(
            stderr.contains("forbidden system call bpf (321)"),
            "{stderr:?}"
        );
    }

    #[test]
    fn reading_another_clock_kills_the_helper() {
        let (status, stderr) = run_confined_child(
            || install("barrierd-helper", &seccomp_table(3, 4)).unwrap(),
            // SAFETY: `ts` is valid for writes; trapped before it runs.
            || unsafe {
                let mut ts: libc::timespec = std::mem::zeroed();
                libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts);
            },
        );
        assert!(
            killed_by_sigsys(status),
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(
            stderr.contains("forbidden system call clock_gettime"),
            "{stderr:?}"
        );
    }

    #[test]
    fn what_the_loop_needs_is_allowed() {
        let (status, stderr) = run_confined_child(
            || install("barrierd-helper", &seccomp_table(3, 4)).unwrap(),
            || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let alive = b"still alive";
                // SAFETY: valid pointers; allowed calls only (the test
                // harness captures eprintln!, so write to fd 2 itself).
                unsafe {
                    libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts);
                    libc::write(2, alive.as_ptr().cast(), alive.len());
                }
            },
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x} {stderr:?}"
        );
        assert!(stderr.contains("still alive"));
    }
}
