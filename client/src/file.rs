//! A validated, read-only mapping of a barrierd file: accessors, waits and the
//! heavy barrier through the daemon.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use crate::layout::{self, word, BootId};
use crate::sys::{self, Mapping};
use crate::trust;
use crate::wait::{self, Liveness, WaitError, Words};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: daemon not running (no such file): start `barrierd {path}` as root, or check the path", path = path.display())]
    NoFile { path: PathBuf },
    #[error("{path}: not a regular file, so not a barrierd file; check the path", path = path.display())]
    NotRegular { path: PathBuf },
    #[error("{path}: a directory; open the barrierd file in it (the daemon's default is {default})", path = path.display(), default = layout::DEFAULT_PATH)]
    Directory { path: PathBuf },
    #[error("{path}: {why}; refusing to trust it: a barrierd file must be owned by root (or by you), not writable by group or others, in directories that only they can change, or a forged one could complete barriers that have not happened", path = path.display())]
    Untrusted {
        path: PathBuf,
        #[source]
        why: trust::Untrusted,
    },
    #[error("{path}: not a barrierd file ({why}); check the path", path = path.display())]
    NotBarrierd { path: PathBuf, why: &'static str },
    #[error("{path}: barrierd file format version {found}, this client reads version {expected}; use a client and a daemon of the same format", path = path.display())]
    Version {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("{path}: {len} bytes cannot hold the {ncpu} CPU records its header announces; restart barrierd (with --force) to rewrite it", path = path.display())]
    TooShort { path: PathBuf, ncpu: u64, len: u64 },
    #[error("{path}: daemon not running ({liveness}): start `barrierd {path}` as root{retry}", path = path.display(), retry = if *liveness == Liveness::Starting { ", or retry in a moment" } else { "" })]
    NotRunning { path: PathBuf, liveness: Liveness },
    #[error("{path}: cannot read this boot's id from {proc} ({source}), which tells this boot's file from a stale one; run with /proc mounted and readable", proc = BootId::PATH, path = path.display())]
    BootId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A barrier started at a CLOCK_MONOTONIC time: complete once every CPU has
/// entered the kernel after it (see [`Barrierd::heavy_barrier`]).
///
/// Splitting [`Barrierd::heavy_barrier`] into [`BarrierTicket::begin`] and
/// [`Barrierd::try_complete`] lets a caller that must not block (an async
/// task, a reclamation queue) start barriers early and poll them later.
/// While no client of the daemon waits, a polled ticket completes within
/// 200 ms of every CPU passing it, not at once: the daemon publishes
/// promptly for waiters (a client blocked in a shared futex wait, as
/// [`Barrierd::wait_ns`] does). A poller that wants promptness asks for it:
/// start with [`Barrierd::begin_polled`] (or call
/// [`Barrierd::request_promptness`] while it polls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BarrierTicket {
    t_ns: u64,
}

impl BarrierTicket {
    /// Orders this thread's earlier stores before the barrier (a full fence:
    /// they are globally visible before the clock is read), then takes the
    /// time. One `clock_gettime` (vDSO, no syscall).
    pub fn begin() -> BarrierTicket {
        fence(Ordering::SeqCst);
        BarrierTicket {
            t_ns: sys::monotonic_ns(),
        }
    }

    /// The CLOCK_MONOTONIC ns the barrier waits past.
    pub fn time_ns(self) -> u64 {
        self.t_ns
    }
}

/// An open barrierd file: a read-only shared mapping, validated.
///
/// Cheap to share between threads (`&Barrierd` is all any method needs).
/// The daemon may stop and start again on the same file while it is mapped:
/// waits then fail with [`WaitError::NotRunning`] in the meantime and work
/// again afterwards. A daemon started on a *new* file at the same path is
/// not seen through an old mapping: open the path again. The current boot's
/// id is read once, at open: every liveness check and every wait compares
/// the file's with it, and a file of another boot is
/// [`Liveness::OtherBoot`] until a daemon starts on it. As with any mapped
/// file, shrinking it under the mapping would make reads fault (SIGBUS);
/// the daemon only resizes a file when the machine's CPU count changed.
#[derive(Debug)]
pub struct Barrierd {
    map: Mapping,
    path: PathBuf,
    ncpu: usize,
    boot: BootId,
    /// When [`Barrierd::request_promptness`] last asked (0: never).
    prompt_requested_ns: AtomicU64,
}

/// How long the daemon publishes promptly after a client blocked in a
/// shared futex wait (`barrierd_privsep::handover::DEMAND_NS`, BPF's
/// `demand_window_ns`).
pub const PROMPTNESS: Duration = Duration::from_secs(1);

/// How long [`Barrierd::request_promptness`] sleeps to be seen blocking: the
/// daemon recognises a waiter by a thread that blocks in a shared futex
/// wait, and a shorter timeout may expire before the thread blocks.
const PROMPTNESS_REQUEST_NS: u64 = 20_000;

impl Barrierd {
    /// [`Barrierd::open`] on [`layout::default_path`]: `$BARRIERD_FILE`, or
    /// [`layout::DEFAULT_PATH`].
    pub fn open_default() -> Result<Barrierd, OpenError> {
        Self::open(layout::default_path())
    }

    /// Maps and validates `path`, and checks that a daemon is publishing to
    /// it (one `fcntl` probe of its lock). The file must pass
    /// [`trust::check`]: owned by root or by us, as is every directory above
    /// it, and writable by nobody else.
    pub fn open(path: impl AsRef<Path>) -> Result<Barrierd, OpenError> {
        Self::open_trusting(path, &[])
    }

    /// [`Barrierd::open`], also trusting files and directories owned by
    /// `uids` (a daemon whose root is another uid here, as in a container
    /// with its own user namespace).
    pub fn open_trusting(path: impl AsRef<Path>, uids: &[u32]) -> Result<Barrierd, OpenError> {
        let barrierd = Self::open_even_if_stopped_trusting(path, uids)?;
        match barrierd.liveness() {
            Liveness::Running => Ok(barrierd),
            liveness => Err(OpenError::NotRunning {
                path: barrierd.path,
                liveness,
            }),
        }
    }

    /// Maps and validates `path` whether or not a daemon publishes to it: for
    /// inspecting a stopped file, or for waiting until a daemon (re)starts.
    /// The waits check that the file is of this boot, the fast-path checks
    /// ([`Barrierd::passed_ns`], [`Barrierd::try_complete`]) do not: on such
    /// a handle, see that [`Barrierd::liveness`] is running before trusting
    /// them.
    pub fn open_even_if_stopped(path: impl AsRef<Path>) -> Result<Barrierd, OpenError> {
        Self::open_even_if_stopped_trusting(path, &[])
    }

    /// [`Barrierd::open_even_if_stopped`], also trusting `uids` (see
    /// [`Barrierd::open_trusting`]).
    pub fn open_even_if_stopped_trusting(
        path: impl AsRef<Path>,
        uids: &[u32],
    ) -> Result<Barrierd, OpenError> {
        let path = path.as_ref();
        let io_error = |source: io::Error| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let not_barrierd = |why| OpenError::NotBarrierd {
            path: path.to_owned(),
            why,
        };
        // O_NONBLOCK: opening a FIFO put at PATH must not hang.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => OpenError::NoFile {
                    path: path.to_owned(),
                },
                _ => io_error(source),
            })?;
        let metadata = file.metadata().map_err(io_error)?;
        if metadata.is_dir() {
            return Err(OpenError::Directory {
                path: path.to_owned(),
            });
        }
        if !metadata.is_file() {
            return Err(OpenError::NotRegular {
                path: path.to_owned(),
            });
        }
        trust::check(path, &metadata, uids).map_err(|why| OpenError::Untrusted {
            path: path.to_owned(),
            why,
        })?;
        let len = metadata.len();
        if len < layout::HEADER_BYTES as u64 {
            return Err(not_barrierd(
                "shorter than a header; if barrierd is just starting, retry",
            ));
        }
        let map_len = usize::try_from(len)
            .map_err(|_| io_error(io::Error::from_raw_os_error(libc::EFBIG)))?;
        let map = Mapping::new(file, map_len).map_err(io_error)?;
        // The daemon stores the magic word last, with release: once we see
        // it, the version and CPU count are the ones it wrote.
        if map.load(word::MAGIC) != layout::MAGIC {
            return Err(not_barrierd(
                "no barrierd magic word; if barrierd is just starting, retry",
            ));
        }
        let found = map.load(word::FORMAT_VERSION);
        if found != layout::FORMAT_VERSION {
            return Err(OpenError::Version {
                path: path.to_owned(),
                found,
                expected: layout::FORMAT_VERSION,
            });
        }
        let ncpu = map.load(word::NCPU);
        if ncpu == 0 {
            return Err(not_barrierd("its header announces no CPUs"));
        }
        // Divides rather than multiplies: `ncpu` can be anything.
        let fits = (map_len - layout::HEADER_BYTES) / (layout::PER_CPU_WORDS * 8);
        let ncpu =
            usize::try_from(ncpu)
                .ok()
                .filter(|&n| n <= fits)
                .ok_or(OpenError::TooShort {
                    path: path.to_owned(),
                    ncpu,
                    len,
                })?;
        let boot = BootId::current().map_err(|source| OpenError::BootId {
            path: path.to_owned(),
            source,
        })?;
        Ok(Barrierd {
            prompt_requested_ns: AtomicU64::new(0),
            map,
            path: path.to_owned(),
            ncpu,
            boot,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of per-CPU records.
    pub fn ncpu(&self) -> usize {
        self.ncpu
    }

    /// Whether a daemon publishes to the file now. A syscall (a lock probe):
    /// for slow paths and diagnostics, not for every barrier.
    pub fn liveness(&self) -> Liveness {
        Liveness::of(self)
    }

    /// Minimum over CPUs of their `last_interrupt_ns`: every CPU has entered
    /// the kernel at or after this CLOCK_MONOTONIC time.
    pub fn last_interrupt_ns(&self) -> u64 {
        self.map.load(word::LAST_INTERRUPT_NS)
    }

    /// The virtual time counter. To start a barrier with it, take
    /// [`Barrierd::begin_vtime`] instead: a plain load does not order this
    /// thread's earlier stores before it.
    pub fn vtime(&self) -> u64 {
        self.map.load(word::VTIME)
    }

    /// The start point of a barrier in vtime, for [`Barrierd::wait_vtime`]
    /// and [`Barrierd::passed_vtime`], as [`BarrierTicket::begin`] is in
    /// CLOCK_MONOTONIC time: a full fence (this thread's earlier stores are
    /// globally visible before the load), then a load of vtime. Cheaper than
    /// a clock read.
    ///
    /// ```no_run
    /// # let bd = barrierd_client::Barrierd::open_default()?;
    /// let v = bd.begin_vtime();
    /// bd.wait_vtime(v, std::time::Duration::from_secs(5))?;
    /// std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn begin_vtime(&self) -> u64 {
        fence(Ordering::SeqCst);
        self.vtime()
    }

    /// Minimum over CPUs of their `last_interrupt_vtime`.
    pub fn last_interrupt_vtime(&self) -> u64 {
        self.map.load(word::LAST_INTERRUPT_VTIME)
    }

    /// CPU `cpu`'s latest published kernel entry, or `None` past
    /// [`Barrierd::ncpu`].
    pub fn cpu_last_interrupt_ns(&self, cpu: usize) -> Option<u64> {
        (cpu < self.ncpu).then(|| self.map.load(layout::cpu_ns_word(cpu)))
    }

    /// The vtime in force when CPU `cpu`'s latest published entry happened.
    pub fn cpu_last_interrupt_vtime(&self, cpu: usize) -> Option<u64> {
        (cpu < self.ncpu).then(|| self.map.load(layout::cpu_vtime_word(cpu)))
    }

    /// The boot in which a daemon last started on this file (compare
    /// [`BootId::current`]); [`BootId::UNKNOWN`] if one that did not record
    /// boots did.
    pub fn boot_id(&self) -> BootId {
        wait::file_boot(self)
    }

    /// How many times a daemon has started publishing into this file.
    pub fn generation(&self) -> u64 {
        self.map.load(word::GENERATION)
    }

    /// The publishing daemon's pid, in its pid namespace (informational).
    pub fn daemon_pid(&self) -> u64 {
        self.map.load(word::DAEMON_PID)
    }

    /// How many times the daemon has made a lagging CPU enter the kernel
    /// since it started (`barrierd --prod-after`; 0 without it).
    pub fn prods(&self) -> u64 {
        self.map.load(word::PRODS)
    }

    /// Has every CPU entered the kernel after CLOCK_MONOTONIC time `t_ns`?
    /// The fast path: one load and a compare, no syscall. A `true` stays
    /// true. Follow it with an acquire fence before relying on other
    /// threads' stores, or use [`Barrierd::try_complete`], which does.
    /// Polled alone, it sees the minimum advance within 200 ms while no
    /// client waits (see [`BarrierTicket`]). It does not check the file's
    /// boot: see [`Barrierd::open_even_if_stopped`].
    #[inline]
    pub fn passed_ns(&self, t_ns: u64) -> bool {
        self.map.load(word::LAST_INTERRUPT_NS) > t_ns
    }

    /// Has every CPU entered the kernel after vtime `v` ended, i.e. after
    /// any read of `vtime() == v` (take `v` with [`Barrierd::begin_vtime`])?
    /// One load, no syscall.
    #[inline]
    pub fn passed_vtime(&self, v: u64) -> bool {
        self.map.load(word::LAST_INTERRUPT_VTIME) > v
    }

    /// Waits until [`Barrierd::last_interrupt_ns`] exceeds `t_ns`; returns
    /// the value seen.
    ///
    /// Sleeps on the word's futex between checks, in slices of at most
    /// [`crate::PROBE_INTERVAL`], after each of which it re-checks the word
    /// and the daemon's lock. So it fails with [`WaitError::NotRunning`] at
    /// once if the daemon stops cleanly and within a slice if it dies, and
    /// with [`WaitError::TimedOut`] after `timeout`. Blocks the calling
    /// thread: in async code, poll [`Barrierd::passed_ns`] instead (slower to
    /// see progress when nothing else waits), or call this from a
    /// blocking-task pool. The futex wait is what tells the daemon that
    /// someone waits: a wait that sleeps some other way is served within
    /// 200 ms.
    pub fn wait_ns(&self, t_ns: u64, timeout: Duration) -> Result<u64, WaitError> {
        wait::wait_above(self, word::LAST_INTERRUPT_NS, t_ns, timeout)
    }

    /// Waits until [`Barrierd::last_interrupt_vtime`] exceeds `v`: then every
    /// CPU has entered the kernel after vtime `v + 1` was published, hence
    /// after any read of `vtime() == v`. Start from
    /// [`Barrierd::begin_vtime`], and end with an acquire fence, for the
    /// guarantees of [`Barrierd::heavy_barrier`]. Coarser than
    /// [`Barrierd::wait_ns`] (vtime advances once per update pass), and its
    /// progress depends on the daemon's passes; use it to tag items cheaply,
    /// not to bound latency. Fails as [`Barrierd::wait_ns`] does.
    pub fn wait_vtime(&self, v: u64, timeout: Duration) -> Result<u64, WaitError> {
        wait::wait_above(self, word::LAST_INTERRUPT_VTIME, v, timeout)
    }

    /// Asks the daemon to publish promptly for the next [`PROMPTNESS`], as
    /// it does while a client waits, for a caller that polls
    /// [`Barrierd::try_complete`] instead of waiting. Without it a polled
    /// ticket completes within 200 ms of every CPU passing it; with it,
    /// within about as long as a waited one. Costs one FUTEX_WAIT that
    /// times out after 20 µs (about 60 µs in all, with the timer's slack),
    /// and only when the last request from this handle is half a
    /// [`PROMPTNESS`] old; other calls are one clock read.
    pub fn request_promptness(&self) {
        let now = sys::monotonic_ns();
        let last = self.prompt_requested_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < PROMPTNESS.as_nanos() as u64 / 2 {
            return;
        }
        self.prompt_requested_ns.store(now, Ordering::Relaxed);
        // The state word changes only when the daemon starts or stops: a
        // mismatch, which would not block, is all but impossible.
        let state = self.map.load(word::STATE) as u32;
        self.map
            .futex_wait(word::STATE, state, PROMPTNESS_REQUEST_NS);
    }

    /// [`BarrierTicket::begin`] and [`Barrierd::request_promptness`]: the
    /// start of a barrier that will be polled with
    /// [`Barrierd::try_complete`].
    pub fn begin_polled(&self) -> BarrierTicket {
        let ticket = BarrierTicket::begin();
        self.request_promptness();
        ticket
    }

    /// Completes `ticket` if every CPU has passed it, without blocking:
    /// when `true`, the guarantees of [`Barrierd::heavy_barrier`] hold.
    #[inline]
    pub fn try_complete(&self, ticket: BarrierTicket) -> bool {
        let passed = self.passed_ns(ticket.t_ns);
        if passed {
            fence(Ordering::Acquire);
        }
        passed
    }

    /// Waits for `ticket` as [`Barrierd::wait_ns`] does; on success the
    /// guarantees of [`Barrierd::heavy_barrier`] hold.
    pub fn complete(&self, ticket: BarrierTicket, timeout: Duration) -> Result<(), WaitError> {
        self.wait_ns(ticket.t_ns, timeout)?;
        fence(Ordering::Acquire);
        Ok(())
    }

    /// The heavy side of an asymmetric barrier: [`BarrierTicket::begin`]
    /// (a full fence, then T = CLOCK_MONOTONIC), wait until every CPU has
    /// entered the kernel after T, then an acquire fence.
    ///
    /// # What is guaranteed
    ///
    /// When it returns `Ok`, every CPU has entered the kernel after T, or was
    /// seen idle in the kernel after T (idle and offline CPUs run no user
    /// code, so they count as up to date). The daemon records each entry, and
    /// each return from idle, with a fully ordered atomic exchange from BPF,
    /// on that CPU, which also drains its store buffer. Hence, for every
    /// thread L of every process on the machine:
    ///
    /// - every store that L executed before its CPU's first kernel entry
    ///   after T is visible to the caller after this returns;
    /// - every store the caller made before calling this is visible to
    ///   everything L runs after that kernel entry.
    ///
    /// # Pairing with the light side
    ///
    /// The light side needs no instruction at all: a [`crate::light`]
    /// (a compiler fence) keeps the compiler from moving its accesses across
    /// it, and the CPU's own reordering is what the heavy side covers. The
    /// classic use, Dekker-style, is
    ///
    /// ```text
    /// light thread:  store A; light(); load B
    /// heavy thread:  store B; heavy_barrier(); load A
    /// ```
    ///
    /// after which at least one of the two loads sees the other's store: if
    /// the light load of B missed the heavy store of B, it ran before T (the
    /// heavy store was globally visible before T was read), so the light
    /// store of A preceded the light CPU's first kernel entry after T, and
    /// the heavy load of A sees it.
    ///
    /// # Assumptions
    ///
    /// x86-64 with an invariant, synchronised TSC as the CLOCK_MONOTONIC
    /// clocksource (so that times read on different CPUs order events the
    /// way memory does), and a daemon attached to events frequent enough on
    /// busy CPUs for the latency you need (by default the scheduler tick, a
    /// few milliseconds). ARCHITECTURE.md ("Why a published timestamp is
    /// safe") has the full argument.
    ///
    /// # Errors
    ///
    /// As [`Barrierd::wait_ns`]; on error nothing is guaranteed.
    pub fn heavy_barrier(&self, timeout: Duration) -> Result<(), WaitError> {
        self.complete(BarrierTicket::begin(), timeout)
    }
}

impl Words for Barrierd {
    fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self, index: usize) -> u64 {
        self.map.load(index)
    }

    fn futex_wait(&self, index: usize, expected: u32, timeout_ns: u64) {
        self.map.futex_wait(index, expected, timeout_ns);
    }

    fn lock_held(&self) -> bool {
        self.map.lock_held()
    }

    fn now_ns(&self) -> u64 {
        sys::monotonic_ns()
    }

    fn boot(&self) -> BootId {
        self.boot
    }
}
