//! The publisher process's life: set up as root, start the helper, confine
//! ourselves, then publish the helper's snapshots until a stop signal or a
//! failure.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use barrierd::update::{Pass, ProtocolError, State};
use barrierd_client::layout::{self, word};
use barrierd_client::monotonic_ns;
use barrierd_privsep::ipc::{self, IpcError, PublisherEnd, Snapshot, Snapshots};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tracing::{debug, info, warn};

use crate::exit::Exit;
use crate::launch::{self, LaunchError};
use crate::notify::{Notifier, NotifyError};
use crate::prod::{ProdError, Prodder};
use crate::published::{FileError, PublishedFile};
use crate::sandbox::{self, Account, SandboxError};

pub struct Config {
    pub path: PathBuf,
    /// Raw tracepoint names.
    pub tracepoints: Vec<String>,
    pub account: Account,
    /// What the helper becomes after its setup.
    pub helper_account: Account,
    pub helper: PathBuf,
    pub force: bool,
    /// `--allow-shared-directory`: PATH may be in a sticky directory others
    /// can create entries in.
    pub allow_shared_directory: bool,
    /// Nice value for both processes.
    pub nice: i32,
    /// `--prod-after`: make a CPU that lags this long while a client waits
    /// enter the kernel.
    pub prod_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("reading the possible CPUs: {0}")]
    PossibleCpus(#[source] io::Error),
    #[error("{0} possible CPUs exceed the supported {max}", max = ipc::MAX_CPUS)]
    TooManyCpus(usize),
    #[error("creating the helper socketpair: {0}")]
    Socketpair(#[source] io::Error),
    #[error("helper socket: {0}")]
    Socket(#[source] IpcError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("stop signals: {0}")]
    Signals(#[source] nix::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Prod(#[from] ProdError),
    #[error("the helper failed during setup ({0}); its message is above")]
    HelperSetup(ExitStatus),
    #[error("the helper exited unexpectedly ({0})")]
    HelperDied(ExitStatus),
    #[error("waiting for the helper: {0}")]
    Wait(#[source] io::Error),
    #[error("protocol violation by the helper: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("receiving from the helper (a protocol violation, or the socket failed): {0}")]
    Receive(#[source] IpcError),
    #[error("poll: {0}")]
    Poll(#[source] nix::Error),
}

impl PublisherError {
    pub fn exit_code(&self) -> Exit {
        match self {
            PublisherError::File(FileError::Locked(_)) => Exit::Locked,
            PublisherError::HelperDied(_)
            | PublisherError::Protocol(_)
            | PublisherError::Receive(_)
            | PublisherError::Wait(_)
            | PublisherError::Poll(_) => Exit::Running,
            _ => Exit::Setup,
        }
    }
}

/// How the daemon stopped when it stopped cleanly.
pub struct Stopped(pub Signal);

pub fn run(config: Config) -> Result<Stopped, PublisherError> {
    // Blocked before the helper exists, so that no stop signal is lost or
    // kills us half set up: it waits in the signalfd until the loop reads it.
    let stop_signals: SigSet = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        .collect();
    stop_signals
        .thread_block()
        .map_err(PublisherError::Signals)?;
    let signals = SignalFd::with_flags(
        &stop_signals,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(PublisherError::Signals)?;

    let ncpu = barrierd_privsep::cpus::possible_cpus().map_err(PublisherError::PossibleCpus)?;
    if ncpu > ipc::MAX_CPUS {
        return Err(PublisherError::TooManyCpus(ncpu));
    }
    info!(
        "Acquiring exclusive lock on {}.",
        crate::published::lock_path(&config.path).display()
    );
    let (file, previous) = PublishedFile::open(
        &config.path,
        ncpu,
        config.force,
        config.allow_shared_directory,
    )?;

    let (helper_end, publisher_end) = ipc::socketpair().map_err(PublisherError::Socketpair)?;
    let socket = PublisherEnd::new(publisher_end).map_err(PublisherError::Socket)?;
    for name in &config.tracepoints {
        info!("Attaching to raw tracepoint {name}.");
    }
    if let Err(e) = launch::raise_priority(config.nice) {
        warn!(
            "warning: cannot set nice {} ({e}); barriers will complete later on a loaded machine (give barrierd CAP_SYS_NICE, or start it with nice -n {})",
            config.nice, config.nice
        );
    }
    let notifier = Notifier::connect()?;
    let prodder = config
        .prod_after
        .map(|after| Prodder::new(after, ncpu))
        .transpose()?;
    let helper = launch::spawn(
        &config.helper,
        &config.helper_account,
        &config.tracepoints,
        helper_end,
    )?;
    file.store(word::GENERATION, previous.generation + 1);
    file.store(word::DAEMON_PID, u64::from(std::process::id()));
    file.store(word::PRODS, 0);

    sandbox::drop_privileges(&config.account)?;
    sandbox::restrict_access()?;
    sandbox::lock_down(
        socket.as_fd().as_raw_fd(),
        signals.as_fd().as_raw_fd(),
        notifier.as_ref().map(Notifier::fd),
        prodder.is_some(),
    )?;
    debug!(
        "Publisher confined as {} (uid {}).",
        config.account.name, config.account.uid
    );

    let publisher = Publisher {
        file,
        state: State::new(previous.per_cpu, previous.vtime),
        running: false,
        notifier,
        prodder,
        prod_failed: false,
    };
    publisher.serve(socket, signals, helper)
}

/// The helper's socket, typed by where the sequence stands.
enum Stream {
    AwaitingHello(PublisherEnd),
    Publishing(Snapshots),
}

impl Stream {
    /// Receives the next message and returns the stream it leaves, with the
    /// snapshot it carried (none for the hello); `None` once the helper has
    /// gone. On error the socket is closed with the stream.
    fn recv(self, ncpu: usize) -> Result<Option<(Stream, Option<Snapshot>)>, IpcError> {
        match self {
            Stream::AwaitingHello(end) => Ok(end
                .handshake(ncpu)?
                .map(|snapshots| (Stream::Publishing(snapshots), None))),
            Stream::Publishing(mut snapshots) => Ok(snapshots
                .recv()?
                .map(|snapshot| (Stream::Publishing(snapshots), Some(snapshot)))),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::AwaitingHello(end) => end.as_fd(),
            Stream::Publishing(snapshots) => snapshots.as_fd(),
        }
    }
}

struct Publisher {
    file: PublishedFile,
    state: State,
    running: bool,
    notifier: Option<Notifier>,
    prodder: Option<Prodder>,
    /// A prod failed and was reported: later failures are not.
    prod_failed: bool,
}

impl Publisher {
    fn serve(
        mut self,
        socket: PublisherEnd,
        signals: SignalFd,
        mut helper: Child,
    ) -> Result<Stopped, PublisherError> {
        let mut stream = Stream::AwaitingHello(socket);
        loop {
            debug!("Sleep at: {}.", monotonic_ns());
            let slept = Instant::now();
            let mut fds = [
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            let prod_at = self.prod_deadline();
            let timeout = prod_at.map_or(PollTimeout::NONE, |at| {
                let ms = at.saturating_sub(monotonic_ns()).div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            });
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => {
                    drop(stream);
                    return Err(self.fail(PublisherError::Poll(e), &mut helper));
                }
            }
            debug!("Woke after {:.3} ms.", slept.elapsed().as_secs_f64() * 1e3);
            let [socket_ready, signal_ready] =
                fds.map(|fd| !fd.revents().unwrap_or(PollFlags::empty()).is_empty());

            if signal_ready {
                if let Ok(Some(info)) = signals.read_signal() {
                    let signal = Signal::try_from(info.ssi_signo as i32).unwrap_or(Signal::SIGTERM);
                    info!("Stopping on {signal}.");
                    self.mark_stopped();
                    drop(stream);
                    let status = helper.wait().map_err(PublisherError::Wait)?;
                    return if status.success() {
                        Ok(Stopped(signal))
                    } else {
                        Err(PublisherError::HelperDied(status))
                    };
                }
            }
            if !socket_ready {
                // A snapshot that came meanwhile would move the deadline.
                if prod_at.is_some_and(|at| monotonic_ns() >= at) {
                    self.prod();
                }
                continue;
            }
            let (next, snapshot) = match stream.recv(self.file.ncpu()) {
                Ok(Some(received)) => received,
                Ok(None) => {
                    self.mark_stopped();
                    let status = helper.wait().map_err(PublisherError::Wait)?;
                    return Err(if self.running {
                        PublisherError::HelperDied(status)
                    } else {
                        PublisherError::HelperSetup(status)
                    });
                }
                Err(e) => return Err(self.fail(PublisherError::Receive(e), &mut helper)),
            };
            stream = next;
            if let Some(snapshot) = snapshot {
                if let Err(e) = self.apply(snapshot) {
                    drop(stream);
                    return Err(self.fail(e.into(), &mut helper));
                }
            }
        }
    }

    /// Validates a snapshot against our clock and publishes its pass.
    fn apply(&mut self, snapshot: Snapshot) -> Result<(), ProtocolError> {
        let now = monotonic_ns();
        debug!("Now: {now}.");
        let pass = self
            .state
            .apply(&snapshot.last_ns, snapshot.demand_ns, now)?;
        self.publish(&pass);
        if !self.running {
            self.running = true;
            self.file.store(word::STATE, layout::STATE_RUNNING);
            self.file.wake(word::STATE);
            info!("Setup complete.");
            self.notify("READY=1\nSTATUS=Publishing");
        }
        Ok(())
    }

    /// Stores a pass in the order clients rely on (per-CPU words, then
    /// last_interrupt_vtime, then last_interrupt_ns, then vtime), notes when
    /// the new vtime became visible, then wakes the waiters of what changed.
    fn publish(&mut self, pass: &Pass) {
        let file = &self.file;
        let mut woken = Vec::with_capacity(2 * pass.changed.len() + 3);
        for &(cpu, words) in &pass.changed {
            debug!("CPU {cpu} -> {} ({}).", words.ns, words.vtime);
            if file.load(layout::cpu_vtime_word(cpu)) != words.vtime {
                file.store(layout::cpu_vtime_word(cpu), words.vtime);
                woken.push(layout::cpu_vtime_word(cpu));
            }
            file.store(layout::cpu_ns_word(cpu), words.ns);
            woken.push(layout::cpu_ns_word(cpu));
        }
        let vtime_changed = file.load(word::LAST_INTERRUPT_VTIME) != pass.last_interrupt_vtime;
        if vtime_changed {
            file.store(word::LAST_INTERRUPT_VTIME, pass.last_interrupt_vtime);
            woken.push(word::LAST_INTERRUPT_VTIME);
        }
        let ns_changed = file.load(word::LAST_INTERRUPT_NS) != pass.last_interrupt_ns;
        if ns_changed {
            file.store(word::LAST_INTERRUPT_NS, pass.last_interrupt_ns);
            woken.push(word::LAST_INTERRUPT_NS);
        }
        file.store(word::VTIME, pass.vtime);
        woken.push(word::VTIME);
        // The clock is read only once the vtime store is visible to all.
        fence(Ordering::SeqCst);
        self.state.vtime_published(monotonic_ns());
        debug!("change: {ns_changed} {vtime_changed}.");
        for index in woken {
            file.wake(index);
        }
    }

    /// When to prod (`--prod-after`), if a pass does not come first.
    fn prod_deadline(&self) -> Option<u64> {
        let prodder = self.prodder.as_ref()?;
        prodder.deadline(self.state.received(), self.state.demand_ns())
    }

    /// Makes the CPUs that lag enter the kernel; BPF then signals, and the
    /// helper's next snapshot shows them. The file's `prods` word is the count.
    fn prod(&mut self) {
        let Some(prodder) = self.prodder.as_mut() else {
            return;
        };
        let round = match prodder.prod(self.state.received(), monotonic_ns()) {
            Ok(round) => round,
            Err(e) => {
                if !self.prod_failed {
                    warn!("warning: cannot prod lagging CPUs: {e}; reported once");
                    self.prod_failed = true;
                }
                return;
            }
        };
        if round.prodded > 0 {
            let prods = self.file.load(word::PRODS) + round.prodded;
            self.file.store(word::PRODS, prods);
            debug!("Prodded {} CPU(s), {prods} in all.", round.prodded);
        }
        if !round.unreachable.is_empty() && !self.prod_failed {
            warn!(
                "warning: --prod-after cannot reach CPU(s) {:?}: offline or outside barrierd's cpuset, \
                 they hold barriers until they enter the kernel; reported once",
                round.unreachable
            );
            self.prod_failed = true;
        }
    }

    /// Tells clients that nobody publishes any more, and wakes every waiter so
    /// that it notices.
    fn mark_stopped(&self) {
        self.notify("STOPPING=1");
        let file = &self.file;
        file.store(word::STATE, layout::STATE_STOPPED);
        for index in [
            word::STATE,
            word::VTIME,
            word::LAST_INTERRUPT_VTIME,
            word::LAST_INTERRUPT_NS,
        ] {
            file.wake(index);
        }
        for cpu in 0..file.ncpu() {
            file.wake(layout::cpu_ns_word(cpu));
            file.wake(layout::cpu_vtime_word(cpu));
        }
    }

    fn notify(&self, state: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.send(state);
        }
    }

    /// A fatal error while running, the socket already closed (the helper
    /// exits when we hang up): mark the file stopped and reap the helper
    /// before reporting.
    fn fail(&self, error: PublisherError, helper: &mut Child) -> PublisherError {
        self.mark_stopped();
        if let Ok(status) = helper.wait() {
            debug!("Helper exited ({status}).");
        }
        error
    }
}
