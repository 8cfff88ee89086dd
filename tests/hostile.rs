//! Hostile local users: what another account can do to a running daemon and
//! to its clients. Each test acts as that account from a forked child that
//! gives up root (setresuid to the account, no groups, hence no
//! capabilities), then tries the attack for real and reports what worked.
//! Forged files are in client_file.rs and hardening.rs; this file is about
//! the processes and their liveness.
#![allow(unsafe_code)]

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use barrierd_client::{Barrierd, Liveness, OpenError};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid, User};

use common::{compile_c, repo, Daemon, TempDir};

const NOBODY: u32 = 65534;

/// An account's uid and primary gid.
fn account(name: &str) -> (u32, u32) {
    let user = User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no account {name}: run scripts/setup"));
    (user.uid.as_raw(), user.gid.as_raw())
}

/// Forks a child that becomes `uid`:`gid` with no supplementary groups and
/// runs `act`, whose result is its exit status (100: could not become the
/// account). The child only makes system calls and allocates (glibc's
/// malloc is fork-safe), and leaves by _exit.
fn spawn_as(uid: u32, gid: u32, act: impl FnOnce() -> i32) -> Pid {
    // SAFETY: see above; the child never returns into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // SAFETY: plain system calls on the child's own credentials.
            let became = unsafe {
                libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(gid, gid, gid) == 0
                    && libc::setresuid(uid, uid, uid) == 0
            };
            let status = if became { act() } else { 100 };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn exit_status(child: Pid) -> i32 {
    match waitpid(child, None).unwrap() {
        WaitStatus::Exited(_, status) => status,
        other => panic!("probe ended with {other:?}"),
    }
}

fn as_user(uid: u32, gid: u32, act: impl FnOnce() -> i32) -> i32 {
    exit_status(spawn_as(uid, gid, act))
}

/// What an attacker may try on a process, one bit each in the probe's exit
/// status.
const ATTACKS: [&str; 7] = [
    "kill(SIGSTOP)",
    "kill(SIGKILL)",
    "setpriority(19)",
    "ptrace(PTRACE_SEIZE)",
    "open /proc/PID/mem",
    "process_vm_readv",
    "pidfd_getfd (steal a descriptor)",
];

/// Tries each attack on `pid` (the signals and the priority only if
/// `signals`) and returns the bits of those that worked. Permission is
/// checked before anything else happens, so a refused attack leaves no
/// trace; one that works is undone where it can be (SIGCONT; the tracee of
/// PTRACE_SEIZE is not stopped, and the probe's exit detaches it).
fn attack(pid: i32, signals: bool) -> i32 {
    let mut worked = 0;
    // SAFETY: system calls on plain values and on buffers that live for
    // the call.
    unsafe {
        if signals {
            if libc::kill(pid, libc::SIGSTOP) == 0 {
                libc::kill(pid, libc::SIGCONT);
                worked |= 1 << 0;
            }
            // Signal 0: the same permission check as SIGKILL, without the
            // kill; a process of the same uid would pass it.
            if libc::kill(pid, 0) == 0 {
                worked |= 1 << 1;
            }
            if libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, 19) == 0 {
                worked |= 1 << 2;
            }
        }
        if libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) == 0 {
            worked |= 1 << 3;
        }
        let mem = CString::new(format!("/proc/{pid}/mem")).unwrap();
        let fd = libc::open(mem.as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            libc::close(fd);
            worked |= 1 << 4;
        }
        let mut byte = 0u8;
        let local = libc::iovec {
            iov_base: (&mut byte as *mut u8).cast(),
            iov_len: 1,
        };
        // Any address: the access check comes first (EPERM), EFAULT after.
        let remote = libc::iovec {
            iov_base: 0x10000 as *mut libc::c_void,
            iov_len: 1,
        };
        let read = libc::process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if read >= 0 || *libc::__errno_location() != libc::EPERM {
            worked |= 1 << 5;
        }
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd >= 0 {
            // Descriptor 0 exists in both processes (/dev/null at least).
            let stolen = libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0);
            if stolen >= 0 {
                libc::close(stolen as i32);
                worked |= 1 << 6;
            }
            libc::close(pidfd as i32);
        }
    }
    worked
}

fn named(bits: i32) -> Vec<&'static str> {
    (0..ATTACKS.len())
        .filter(|bit| bits & (1 << bit) != 0)
        .map(|bit| ATTACKS[bit])
        .collect()
}

/// Another local user (nobody), the publisher's account and the helper's
/// account each try to stop, kill, slow down, trace and read the other
/// processes. Only an account's own processes may signal each other, and
/// nobody but root reaches into either process's memory or descriptors:
/// both are not dumpable, and each runs under its own uid.
#[test]
fn other_accounts_cannot_signal_trace_or_read_the_daemon() {
    require_privileged!();
    let dir = TempDir::new("hostile-reach");
    let daemon = Daemon::start(&dir.join("pub"), &[]);
    let publisher = daemon.publisher_pid();
    let helper = daemon.helper_pid();
    let publisher_account = account("barrierd");
    let helper_account = account("barrierd-helper");

    let mut failures = Vec::new();
    let mut expect = |who: &str, (uid, gid): (u32, u32), target: &str, pid: i32, signals: bool| {
        let worked = as_user(uid, gid, || attack(pid, signals));
        eprintln!("{who} -> {target}: worked {:?}", named(worked));
        if worked != 0 {
            failures.push(format!("{who} -> {target}: {:?}", named(worked)));
        }
    };
    let nobody = (NOBODY, NOBODY);
    expect("nobody", nobody, "publisher", publisher, true);
    expect("nobody", nobody, "helper", helper, true);
    expect("barrierd", publisher_account, "helper", helper, true);
    expect(
        "barrierd-helper",
        helper_account,
        "publisher",
        publisher,
        true,
    );
    // The same account may signal its own process (the kernel's rule), but
    // not trace it or read it: both are not dumpable.
    expect("barrierd", publisher_account, "publisher", publisher, false);
    expect("barrierd-helper", helper_account, "helper", helper, false);
    assert!(failures.is_empty(), "attacks that worked: {failures:#?}");

    // The probe can tell: root's works, so a refusal above is the policy.
    let root_worked = as_user(0, 0, || attack(publisher, false));
    assert_eq!(
        named(root_worked),
        ATTACKS[3..].to_vec(),
        "root should reach the publisher"
    );

    let (status, stderr) = daemon.stop();
    assert!(status.success(), "the daemon survived unharmed: {stderr}");
}

/// Takes an OFD read lock on `path` from a read-only descriptor, waiting
/// until it can (once no daemon holds its write lock), then holds it until
/// killed: all a reader can do to the file.
fn hold_read_lock(path: &Path) -> i32 {
    let name = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: open, fcntl on our descriptor with a valid flock, pause.
    unsafe {
        let fd = libc::open(name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 1;
        }
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_RDLCK as i16;
        lock.l_whence = libc::SEEK_SET as i16;
        if libc::fcntl(fd, libc::F_OFD_SETLKW, &lock) != 0 {
            return 2;
        }
        loop {
            libc::pause();
        }
    }
}

/// Whether some open file description holds a read lock on `path`.
fn read_locked(path: &Path) -> bool {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: flock is plain data; all zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as i16;
    lock.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_OFD_GETLK on our own descriptor with a valid flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    assert_eq!(rc, 0, "F_OFD_GETLK: {}", std::io::Error::last_os_error());
    lock.l_type == libc::F_RDLCK as i16
}

fn liveness_on_open(path: &Path) -> Liveness {
    match Barrierd::open(path) {
        Ok(_) => Liveness::Running,
        Err(OpenError::NotRunning { liveness, .. }) => liveness,
        Err(other) => panic!("{other}"),
    }
}

/// A reader (nobody) that takes a read lock as soon as the daemon dies can
/// neither make the dead daemon look alive to the Rust and C clients nor
/// keep the next daemon from starting: that one publishes a fresh copy in
/// the file's place, which new clients open and old ones see stopped.
#[test]
fn a_readers_lock_neither_fakes_liveness_nor_blocks_a_restart() {
    require_privileged!();
    let dir = TempDir::new("hostile-lock");
    let path = dir.join("pub");
    let c_client = dir.join("client");
    compile_c(&repo().join("examples/client.c"), &c_client);
    let mut daemon = Daemon::start(&path, &[]);
    let old_handle = Barrierd::open(&path).unwrap();
    let reader = spawn_as(NOBODY, NOBODY, || hold_read_lock(&path));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !read_locked(&path),
        "the daemon's write lock keeps readers off"
    );

    daemon.signal(Signal::SIGKILL);
    daemon.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_locked(&path) {
        assert!(Instant::now() < deadline, "the reader never got its lock");
        std::thread::sleep(Duration::from_millis(10));
    }

    assert_eq!(liveness_on_open(&path), Liveness::Dead);
    assert_eq!(old_handle.liveness(), Liveness::Dead);
    let output = Command::new(&c_client)
        .arg(&path)
        .arg("1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("daemon not running"), "{stderr}");

    let daemon = Daemon::start(&path, &[]);
    assert!(
        daemon
            .stderr
            .text()
            .contains("another process holds a read lock"),
        "{}",
        daemon.stderr.text()
    );
    assert_eq!(liveness_on_open(&path), Liveness::Running);
    Barrierd::open(&path)
        .unwrap()
        .heavy_barrier(Duration::from_secs(30))
        .unwrap();
    let output = Command::new(&c_client)
        .arg(&path)
        .arg("1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // The new daemon marked the old file stopped before it copied it.
    assert_eq!(old_handle.liveness(), Liveness::Stopped);

    kill(reader, Signal::SIGKILL).unwrap();
    assert!(matches!(
        waitpid(reader, None).unwrap(),
        WaitStatus::Signaled(_, Signal::SIGKILL, _)
    ));
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
}
