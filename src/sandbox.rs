//! The publisher's confinement, applied in this order before it reads the
//! helper's first message: drop to an unprivileged user with no capabilities
//! (and an empty bounding set), no_new_privs, Landlock denying every
//! filesystem and network access and both scopes, then the seccomp table.
//! Each step is verified; any failure is fatal (fail closed).

use std::os::fd::RawFd;

use barrierd_privsep::credentials;
use barrierd_privsep::seccomp::{self, Allow, Arg};
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus,
    Scope, ABI,
};
use nix::unistd::{Gid, Uid, User};

/// Landlock rights required in full: ABI 6 (Linux 6.12) is the newest that
/// adds rights the publisher can lose; later ABIs add none that it holds.
const LANDLOCK_ABI: ABI = ABI::V6;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("user {name:?} (--{flag}) does not exist: create barrierd's accounts with scripts/setup (or `systemd-sysusers contrib/barrierd.sysusers`), or name an existing unprivileged user with --{flag}")]
    NoSuchUser { flag: &'static str, name: String },
    #[error("--{flag} {name:?} has uid or gid 0; barrierd's processes must run unprivileged")]
    RootUser { flag: &'static str, name: String },
    #[error("--user and --helper-user are both {0:?} (uid {1}): give each process an account of its own, so that neither can signal or ptrace the other")]
    SharedAccount(String, Uid),
    #[error("looking up user {user:?}: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error("dropping privileges to the account: {0}")]
    Credentials(#[from] credentials::CredentialsError),
    #[error("landlock: {0} (barrierd needs Landlock ABI {abi} or newer: Linux 6.12, with landlock in the lsm= list)", abi = LANDLOCK_ABI as i32)]
    Landlock(#[from] landlock::RulesetError),
    #[error("landlock ruleset only {0:?}; refusing to run with less protection than documented")]
    LandlockPartial(RulesetStatus),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
}

/// An unprivileged account one of barrierd's processes becomes.
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// The publisher's and the helper's accounts: two, neither of them root.
pub fn lookup_accounts(user: &str, helper_user: &str) -> Result<[Account; 2], SandboxError> {
    let publisher = lookup("user", user)?;
    let helper = lookup("helper-user", helper_user)?;
    if publisher.uid == helper.uid {
        return Err(SandboxError::SharedAccount(publisher.name, publisher.uid));
    }
    Ok([publisher, helper])
}

fn lookup(flag: &'static str, name: &str) -> Result<Account, SandboxError> {
    let user = User::from_name(name)
        .map_err(|source| SandboxError::Lookup {
            user: name.to_owned(),
            source,
        })?
        .ok_or_else(|| SandboxError::NoSuchUser {
            flag,
            name: name.to_owned(),
        })?;
    if user.uid.is_root() || user.gid.as_raw() == 0 {
        return Err(SandboxError::RootUser {
            flag,
            name: name.to_owned(),
        });
    }
    Ok(Account {
        name: name.to_owned(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// Becomes `account` for good (see [`credentials::drop_to`]).
pub fn drop_privileges(account: &Account) -> Result<(), SandboxError> {
    credentials::drop_to(account.uid.as_raw(), account.gid.as_raw())?;
    Ok(())
}

/// Denies every filesystem access (the mapping and descriptors the publisher
/// needs are already open), TCP bind and connect, abstract unix sockets and
/// signals outside its domain. Also sets no_new_privs.
pub fn restrict_access() -> Result<(), SandboxError> {
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?
        .restrict_self()?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(SandboxError::LandlockPartial(status.ruleset));
    }
    Ok(())
}

/// Every system call the publisher may make once confined: its own rows,
/// then privsep's shared baseline. Anything else kills it by SIGSYS, named. `prod`: --prod-after is on.
pub fn seccomp_table(
    socket: RawFd,
    signals: RawFd,
    notify: Option<RawFd>,
    prod: bool,
) -> Vec<Allow> {
    let fd = |fd: RawFd| Arg::Eq(0, fd as u64);
    let mut table = vec![
        // Sleep until the helper sends or a stop signal arrives.
        Allow::any("poll"),
        Allow::any("ppoll"),
        // The helper's messages; MSG_TRUNC reports oversize datagrams.
        Allow::when("recvfrom", [fd(socket), Arg::Eq(3, libc::MSG_TRUNC as u64)]),
        // Stop signals, through the signalfd.
        Allow::when("read", [fd(signals)]),
        // Wake clients on the file's words (shared futexes by design).
        Allow::when("futex", [Arg::Eq(1, libc::FUTEX_WAKE as u64)]),
        // Decoded snapshots and log lines allocate: heap growth only, never
        // executable memory.
        Allow::any("brk"),
        Allow::when("mmap", [Arg::MaskedEq(2, libc::PROT_EXEC as u64, 0)]),
        Allow::any("munmap"),
        Allow::any("mremap"),
        // Hanging up on the helper at stop, then reaping it; at exit, closing
        // the signalfd, the file and its locks (nothing can be reopened).
        Allow::any("close"),
        Allow::any("wait4"),
        // Debug builds of std check that a descriptor is open before closing it.
        Allow::when("fcntl", [Arg::Eq(1, libc::F_GETFD as u64)]),
        // std's exit path removes the main thread's alternate signal stack.
        Allow::any("sigaltstack"),
    ];
    table.extend(seccomp::baseline());
    if prod {
        // --prod-after: moving ourselves (pid 0 only) onto a lagging CPU
        // and back.
        table.push(Allow::when("sched_setaffinity", [Arg::Eq(0, 0)]));
    }
    if let Some(notify) = notify {
        // Readiness and stopping, to the service manager's socket only: the
        // descriptor is connected, and no other address may be given.
        table.push(Allow::when(
            "sendto",
            [
                fd(notify),
                Arg::Eq(3, libc::MSG_NOSIGNAL as u64),
                Arg::Eq(4, 0),
                Arg::Eq(5, 0),
            ],
        ));
    }
    table
}

pub fn lock_down(
    socket: RawFd,
    signals: RawFd,
    notify: Option<RawFd>,
    prod: bool,
) -> Result<(), SandboxError> {
    Ok(seccomp::install(
        "barrierd",
        &seccomp_table(socket, signals, notify, prod),
    )?)
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use barrierd_privsep::seccomp::run_confined_child;

    use super::*;

    #[test]
    fn architecture_md_lists_exactly_the_calls_of_this_table() {
        let doc = include_str!("../ARCHITECTURE.md");
        // Every optional row too: a service manager's socket, --prod-after.
        let table = seccomp_table(3, 4, Some(5), true);
        barrierd_privsep::seccomp::documented_exactly(&table, doc, "## The publisher").unwrap();
    }

    /// Leaves the forked child with `code`, never returning to the harness.
    fn exit(code: i32) -> ! {
        // SAFETY: _exit is always safe; the child must not run harness code.
        unsafe { libc::_exit(code) }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn opening_a_file_kills_the_publisher_and_is_named() {
        let (status, stderr) = run_confined_child(
            || lock_down(3, 4, None, false).unwrap_or_else(|_| exit(2)),
            // SAFETY: a plain open; the filter traps it before it runs.
            || unsafe {
                libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY);
            },
        );
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(
            stderr.contains("barrierd: seccomp: forbidden system call openat"),
            "{stderr:?}"
        );
    }

    /// Code running in a compromised publisher cannot reach its helper (the
    /// test process stands in for it) by any of the ways another process
    /// of the same kernel could: each is a forbidden system call.
    #[test]
    fn a_compromised_publisher_cannot_reach_another_process() {
        let target = std::process::id() as libc::c_long;
        let attempts: [(&str, libc::c_long, [libc::c_long; 4]); 6] = [
            ("kill", libc::SYS_kill, [target, 0, 0, 0]),
            ("tgkill", libc::SYS_tgkill, [target, target, 0, 0]),
            (
                "ptrace",
                libc::SYS_ptrace,
                [libc::PTRACE_SEIZE as libc::c_long, target, 0, 0],
            ),
            (
                "process_vm_readv",
                libc::SYS_process_vm_readv,
                [target, 0, 0, 0],
            ),
            ("pidfd_open", libc::SYS_pidfd_open, [target, 0, 0, 0]),
            (
                "setpriority",
                libc::SYS_setpriority,
                [libc::PRIO_PROCESS as libc::c_long, target, 19, 0],
            ),
        ];
        for (name, number, [a, b, c, d]) in attempts {
            let (status, stderr) = run_confined_child(
                || lock_down(3, 4, None, true).unwrap_or_else(|_| exit(2)),
                // SAFETY: each call names another process; the filter traps
                // it before it runs.
                || unsafe {
                    libc::syscall(number, a, b, c, d);
                },
            );
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
                "{name}: status {status:#x}, stderr {stderr:?}"
            );
            assert!(
                stderr.contains(&format!("forbidden system call {name}")),
                "{name}: {stderr:?}"
            );
        }
    }

    /// sched_setaffinity on itself, says so, then on its parent.
    fn set_affinity_of_self_then_parent(prod: bool) -> (i32, String) {
        let parent = std::process::id() as libc::pid_t;
        run_confined_child(
            || lock_down(3, 4, None, prod).unwrap_or_else(|_| exit(2)),
            // SAFETY: plain syscalls with a valid, zeroed (then filled) set.
            || unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                let size = std::mem::size_of_val(&set);
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, size, &set) != 0 {
                    exit(3);
                }
                libc::write(2, c"moved itself\n".as_ptr().cast(), 13);
                libc::sched_setaffinity(parent, size, &set);
            },
        )
    }

    /// Sends one datagram on `fd`, connected, then one to another socket's
    /// address, under the publisher's policy with `fd` as the notify socket.
    fn notify_then_send_elsewhere(fd: RawFd, elsewhere: &Path) -> (i32, String) {
        // SAFETY: all-zero is a valid sockaddr_un.
        let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, byte) in address
            .sun_path
            .iter_mut()
            .zip(elsewhere.as_os_str().as_bytes())
        {
            *slot = *byte as libc::c_char;
        }
        run_confined_child(
            || lock_down(3, 4, Some(fd), false).unwrap_or_else(|_| exit(2)),
            // SAFETY: valid buffers and address for the calls' duration.
            || unsafe {
                let sent = libc::sendto(
                    fd,
                    c"READY=1".as_ptr().cast(),
                    7,
                    libc::MSG_NOSIGNAL,
                    std::ptr::null(),
                    0,
                );
                if sent == 7 {
                    libc::write(2, c"notified\n".as_ptr().cast(), 9);
                }
                libc::sendto(
                    fd,
                    c"X".as_ptr().cast(),
                    1,
                    libc::MSG_NOSIGNAL,
                    (&address as *const libc::sockaddr_un).cast(),
                    std::mem::size_of_val(&address) as libc::socklen_t,
                );
                libc::write(2, c"sent elsewhere\n".as_ptr().cast(), 15);
            },
        )
    }

    #[test]
    fn notify_datagrams_go_to_the_service_manager_only() {
        let dir = std::env::temp_dir().join(format!("barrierd-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let manager = std::os::unix::net::UnixDatagram::bind(dir.join("manager")).unwrap();
        let other = std::os::unix::net::UnixDatagram::bind(dir.join("other")).unwrap();
        other.set_nonblocking(true).unwrap();
        let notify = std::os::unix::net::UnixDatagram::unbound().unwrap();
        notify.connect(dir.join("manager")).unwrap();
        let (status, stderr) = notify_then_send_elsewhere(notify.as_raw_fd(), &dir.join("other"));
        let mut buf = [0u8; 16];
        let received = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..received], b"READY=1");
        assert!(
            other.recv(&mut buf).is_err(),
            "a datagram reached another socket"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(stderr.contains("notified"), "{stderr:?}");
        assert!(
            stderr.contains("forbidden system call sendto"),
            "{stderr:?}"
        );
        assert!(!stderr.contains("sent elsewhere"), "{stderr:?}");
    }

    #[test]
    fn only_the_monotonic_clock_may_be_read() {
        let (status, stderr) = run_confined_child(
            || lock_down(3, 4, None, false).unwrap_or_else(|_| exit(2)),
            // SAFETY: `ts` is valid for writes; raw syscalls bypass the vDSO.
            || unsafe {
                let mut ts: libc::timespec = std::mem::zeroed();
                if libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) == 0 {
                    libc::write(2, c"monotonic\n".as_ptr().cast(), 10);
                }
                libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts);
                libc::write(2, c"realtime\n".as_ptr().cast(), 9);
            },
        );
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "status {status:#x}, stderr {stderr:?}"
        );
        assert!(
            stderr.contains("monotonic") && !stderr.contains("realtime"),
            "{stderr:?}"
        );
    }

    #[test]
    fn prodding_allows_moving_ourselves_and_no_one_else() {
        for prod in [true, false] {
            let (status, stderr) = set_affinity_of_self_then_parent(prod);
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
                "prod {prod}: status {status:#x}, stderr {stderr:?}"
            );
            assert!(
                stderr.contains("forbidden system call sched_setaffinity"),
                "prod {prod}: {stderr:?}"
            );
            assert_eq!(stderr.contains("moved itself"), prod, "{stderr:?}");
        }
    }

    #[test]
    fn landlock_is_fully_enforced_and_denies_files_and_tcp() {
        let (status, stderr) = run_confined_child(
            // Fails unless the ruleset is fully enforced.
            || restrict_access().unwrap_or_else(|_| exit(2)),
            || {
                // SAFETY: plain syscalls on values we own.
                unsafe {
                    if libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) >= 0
                        || errno() != libc::EACCES
                    {
                        exit(3);
                    }
                    let socket = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    let address = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: 9u16.to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                        },
                        sin_zero: [0; 8],
                    };
                    let rc = libc::connect(
                        socket,
                        (&address as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    // Without Landlock this is ECONNREFUSED.
                    if rc == 0 || errno() != libc::EACCES {
                        exit(4);
                    }
                }
            },
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child exit {} (2: not fully enforced, 3: file opened, 4: TCP connect not denied); {stderr}",
            libc::WEXITSTATUS(status)
        );
    }
}
