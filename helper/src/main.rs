//! barrierd-helper: the privileged half of barrierd.
//!
//! `barrierd` starts it as root with a SOCK_SEQPACKET socket on fd 3, the
//! account to become (`UID:GID`) and raw tracepoint names as arguments. It
//! loads and attaches bpf/barrierd.bpf.c, gives up root for that account,
//! says hello, locks itself under its seccomp table (src/confinement.rs) and then
//! for ever: sleeps until a CPU that may hold the minimum back signals (or a
//! debt BPF deferred is due), reads every CPU's timestamp, sends a snapshot.
//! It reads nothing from the publisher and exits (status 0) when the
//! publisher hangs up.
//!
//! Exit status: 0 publisher gone; 1 setup or runtime error; 2 bad arguments.

#![deny(unsafe_code)]

mod confinement;
mod skel;
mod timestamps;

use std::borrow::Cow;
use std::convert::Infallible;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::{env, io};

use barrierd_privsep::cpus::{self, CpuMask};
use barrierd_privsep::credentials::{self, CredentialsError};
use barrierd_privsep::handover::{is_tracepoint_identifier, DEMAND_NS, HELPER_SOCKET_FD};
use barrierd_privsep::ipc::{HelperEnd, HelperMessage, IpcError, MAX_CPUS, PROTOCOL_VERSION};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{RingBuffer, RingBufferBuilder};

use crate::confinement::Wake;
use crate::timestamps::Timestamps;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("usage: barrierd-helper UID:GID TRACEPOINT... (started by barrierd, socket on fd {HELPER_SOCKET_FD})")]
    Usage,
    #[error("invalid account {0:?}: expected UID:GID, both numbers other than 0")]
    BadAccount(String),
    #[error("invalid raw tracepoint name {0:?}: expected [a-z0-9_]+")]
    BadName(String),
    #[error("fd {HELPER_SOCKET_FD} is not the socket barrierd passes: {0}")]
    Socket(#[source] IpcError),
    #[error("running once on every online CPU: {0}")]
    Visit(#[source] io::Error),
    #[error("reading the possible or online CPUs: {0}")]
    PossibleCpus(#[source] io::Error),
    #[error("{0} possible CPUs exceed the supported {MAX_CPUS}")]
    TooManyCpus(usize),
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("the BPF program's .bss is not memory-mapped (kernel too old?)")]
    BssNotMapped,
    #[error("the BPF program's .rodata is not memory-mapped before loading")]
    RodataNotMapped,
    #[error("epoll: {0}")]
    Epoll(#[source] io::Error),
    #[error("sending to the publisher: {0}")]
    Send(#[source] IpcError),
    #[error("giving up root: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] barrierd_privsep::seccomp::SeccompError),
}

impl Error {
    fn exit_code(&self) -> i32 {
        match self {
            Error::Usage | Error::BadAccount(_) | Error::BadName(_) => 2,
            _ => 1,
        }
    }
}

fn bpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
    let what = what.into();
    move |source| Error::Bpf { what, source }
}

fn main() {
    let Err(error) = run();
    eprintln!("barrierd-helper: {error}");
    confinement::exit_now(error.exit_code())
}

/// Sets up, then serves for ever; returns only a setup error.
fn run() -> Result<Infallible, Error> {
    // Ctrl-C and `systemctl stop` signal the whole group: the publisher alone
    // decides when to stop, and we follow when it hangs up.
    confinement::ignore_stop_signals();
    credentials::not_dumpable()?;
    let mut args = env::args().skip(1);
    let account = args.next().ok_or(Error::Usage)?;
    let (uid, gid) = parse_account(&account).ok_or(Error::BadAccount(account))?;
    let tracepoints: Vec<String> = args.collect();
    if tracepoints.is_empty() {
        return Err(Error::Usage);
    }
    if let Some(bad) = tracepoints
        .iter()
        .find(|name| !is_tracepoint_identifier(name))
    {
        return Err(Error::BadName(bad.clone()));
    }
    let socket = confinement::inherited_socket(HELPER_SOCKET_FD);
    let mut publisher = HelperEnd::new(socket).map_err(Error::Socket)?;

    let ncpu = cpus::possible_cpus().map_err(Error::PossibleCpus)?;
    if ncpu > MAX_CPUS {
        return Err(Error::TooManyCpus(ncpu));
    }
    let mut storage = MaybeUninit::uninit();
    let mut open = skel::BarrierdSkelBuilder::default()
        .open(&mut storage)
        .map_err(bpf("opening the BPF object"))?;
    open.maps
        .rodata_data
        .as_mut()
        .ok_or(Error::RodataNotMapped)?
        .demand_window_ns = DEMAND_NS;
    let mut skel = open.load().map_err(bpf("loading the BPF program"))?;
    // BPF learns our tasks' tgids itself: the pids we see of ourselves are
    // our pid namespace's, and sched_switch sees the kernel's.
    skel.progs
        .identify_daemon
        .test_run(libbpf_rs::ProgramInput::default())
        .map_err(bpf("telling BPF which tasks are barrierd's"))?;
    let bss = skel.maps.bss_data.take().ok_or(Error::BssNotMapped)?;
    let timestamps = Timestamps::new(bss, ncpu);
    // Quiescence tracking is always on, and it already records every context
    // switch: attaching the generic program to sched_switch too would only
    // run twice per switch.
    let mut links = vec![
        skel.progs
            .on_sched_switch
            .attach()
            .map_err(bpf("attaching quiescence tracking to sched_switch"))?,
        skel.progs
            .on_cpu_idle
            .attach()
            .map_err(bpf("attaching quiescence tracking to cpu_idle"))?,
    ];
    for name in tracepoints.iter().filter(|name| *name != "sched_switch") {
        links.push(
            skel.progs
                .on_kernel_entry
                .attach_raw_tracepoint(name)
                .map_err(bpf(format!("attaching to raw tracepoint {name:?}")))?,
        );
    }
    // Read only now that every switch is traced: a CPU that comes online
    // later starts in its idle task, and its first switch to a client is
    // seen. Offline CPUs would hold the minimum at 0 for ever, and a CPU idle
    // since before we attached until its next interrupt: the first start
    // quiescent, and running on each of the others once makes it switch (and
    // record whether it is quiescent) now.
    let online = cpus::online_cpus().map_err(Error::PossibleCpus)?;
    timestamps.mark_offline((0..ncpu).filter(|cpu| !online.contains(cpu)));
    let home = CpuMask::of_this_thread(ncpu).map_err(Error::Visit)?;
    for cpu in cpus::visit(&online, &home).map_err(Error::Visit)? {
        eprintln!(
            "barrierd-helper: CPU {cpu} went offline or is outside our cpuset; it records its state at its next event"
        );
    }
    let mut ring = RingBufferBuilder::new();
    ring.add(&skel.maps.wakeups, |_| 0)
        .map_err(bpf("adding the wake-up ring buffer"))?;
    let ring = ring.build().map_err(bpf("building the ring buffer"))?;
    // One epoll set for both reasons to wake: the ring buffer's own epoll fd
    // (readable when BPF signalled) and the socket (EPOLLHUP when the
    // publisher is gone, reported without asking).
    let epoll = confinement::epoll_with(ring.epoll_fd(), HELPER_SOCKET_FD).map_err(Error::Epoll)?;
    // Everything that needed root is done: what remains works on descriptors
    // and mappings we hold. From here on we follow the publisher by the
    // socket's hang-up alone: its parent-death signal comes from another uid
    // (and from inside its Landlock signal scope), which the kernel refuses.
    credentials::drop_to(uid, gid)?;

    publisher
        .send(&HelperMessage::Hello {
            protocol: PROTOCOL_VERSION,
            ncpu: ncpu as u32,
        })
        .map_err(Error::Send)?;
    barrierd_privsep::seccomp::install(
        "barrierd-helper",
        &confinement::seccomp_table(HELPER_SOCKET_FD, epoll.as_raw_fd()),
    )?;

    let _links = links;
    serve(&mut publisher, &timestamps, &ring, epoll.as_fd())
}

/// The steady state. Never returns: leaving through `_exit` keeps the
/// skeleton, links and ring buffer from being torn down under the seccomp
/// policy (the kernel detaches everything when the descriptors close).
fn serve(
    publisher: &mut HelperEnd,
    timestamps: &Timestamps<'_>,
    ring: &RingBuffer<'_>,
    epoll: BorrowedFd<'_>,
) -> ! {
    let mut last_ns = Vec::with_capacity(timestamps.ncpu());
    let failure = loop {
        timestamps.settle(&mut last_ns);
        match publisher.send(&HelperMessage::Snapshot {
            last_ns: Cow::Borrowed(&last_ns),
            demand_ns: timestamps.demand_ns(),
        }) {
            Ok(()) => {}
            // ECONNRESET when it closed with snapshots still unread.
            Err(IpcError::Io(e))
                if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) =>
            {
                confinement::exit_now(0)
            }
            Err(e) => break Error::Send(e),
        }
        // While BPF may defer a debt, sleep no later than the end of that
        // spacing, and read again then if it did: a CPU that went idle owing
        // may have no later event of its own.
        let woke = loop {
            let now = timestamps::monotonic_ns();
            let ends = timestamps.spacing_ends_ns();
            let deadline = if now < ends {
                Some(ends - now)
            } else if timestamps.may_sleep_without_deadline() {
                None
            } else {
                break Ok(Wake::Event);
            };
            match confinement::wait(epoll, HELPER_SOCKET_FD, deadline) {
                Ok(Wake::Timeout) => continue,
                other => break other,
            }
        };
        match woke {
            Ok(Wake::Hangup) => confinement::exit_now(0),
            Ok(_) => {}
            Err(e) => break Error::Epoll(e),
        }
        // Only advances the consumer position (plain memory, no syscall), so
        // that BPF's next record wakes us again.
        if let Err(e) = ring.consume() {
            break bpf("consuming the ring buffer")(e);
        }
    };
    eprintln!("barrierd-helper: {failure}");
    confinement::exit_now(failure.exit_code())
}

/// `UID:GID`, both decimal and other than root's.
fn parse_account(text: &str) -> Option<(u32, u32)> {
    let (uid, gid) = text.split_once(':')?;
    let number = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|&n| n != 0)
    };
    Some((number(uid)?, number(gid)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        assert_eq!(parse_account("999:998"), Some((999, 998)));
        for bad in [
            "", "999", "0:998", "999:0", "-1:5", "+1:5", "1:5:6", "a:b", ":", "1:",
        ] {
            assert_eq!(parse_account(bad), None, "{bad:?}");
        }
    }
}
