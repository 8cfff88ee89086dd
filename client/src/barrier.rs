//! The heavy barrier with a policy for when the daemon cannot serve it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::file::{Barrierd, OpenError};
use crate::wait::{Liveness, WaitError};
use crate::{layout, sys};

/// How long [`Barrier::heavy`] waits for the daemon unless told otherwise.
/// Barriers normally complete within a few milliseconds (a few scheduler
/// ticks); this bounds the rare stall, it is not a latency target.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Barrier::heavy`] does when the daemon cannot complete a barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Fail with the reason: fast or nothing.
    None,
    /// Issue `membarrier(MEMBARRIER_CMD_GLOBAL)` instead: always correct,
    /// sometimes slow (it waits for an RCU grace period, tens of ms).
    Membarrier,
}

/// How a barrier completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Daemon,
    Membarrier(Why),
}

/// Why a barrier fell back to membarrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The file could not be opened (see [`Barrier::unavailable`]).
    Unavailable,
    NotRunning(Liveness),
    TimedOut,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Unavailable => f.write_str("the barrierd file could not be opened"),
            Why::NotRunning(liveness) => write!(f, "daemon not running ({liveness})"),
            Why::TimedOut => f.write_str("the daemon did not complete the barrier in time"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("membarrier(MEMBARRIER_CMD_GLOBAL) is unavailable ({0}), so there can be no fallback: it needs Linux 4.3 or later without nohz_full CPUs; use Fallback::None with a running daemon")]
    MembarrierUnsupported(#[source] io::Error),
    #[error("membarrier(MEMBARRIER_CMD_GLOBAL) failed: {0}")]
    Membarrier(#[source] io::Error),
}

/// Heavy barriers through barrierd, with a [`Fallback`] policy: the three
/// lines most programs need.
///
/// ```no_run
/// use barrierd_client::{Barrier, Fallback};
/// let barrier = Barrier::open_default(Fallback::Membarrier)?;
/// barrier.heavy()?; // pairs with light() in the fast threads
/// # Ok::<(), barrierd_client::BarrierError>(())
/// ```
///
/// With [`Fallback::Membarrier`], every call returns a completed barrier
/// unless membarrier itself fails: through the daemon when it runs, through
/// membarrier when the file is missing or bad, when the daemon is stopped
/// or dead, when the file is of another boot, or when the daemon times out.
/// While the daemon does not serve, a call opens the path again, at most
/// once per [`REOPEN_INTERVAL`]: a daemon that starts later, or that
/// restarts on a new file at the path, is used as soon as it runs. After a
/// failure the next calls check the daemon's liveness first (one syscall),
/// so a dead daemon does not cost a probe interval per barrier.
#[derive(Debug)]
pub struct Barrier {
    path: PathBuf,
    fallback: Fallback,
    timeout: Duration,
    current: Mutex<Current>,
}

/// How often a [`Barrier`] whose daemon does not serve opens its path again.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Current {
    daemon: Result<Arc<Barrierd>, Arc<OpenError>>,
    /// The file was not running, or the last barrier failed: check
    /// liveness before waiting.
    suspect: bool,
    opened_at: Instant,
}

impl Barrier {
    /// With [`Fallback::None`], fails as [`Barrierd::open`] does. With
    /// [`Fallback::Membarrier`], fails only if membarrier is unavailable.
    pub fn open(path: impl AsRef<Path>, fallback: Fallback) -> Result<Barrier, BarrierError> {
        let path = path.as_ref().to_owned();
        let daemon = match fallback {
            Fallback::None => Ok(Barrierd::open(&path)?),
            Fallback::Membarrier => {
                sys::membarrier_global_supported().map_err(BarrierError::MembarrierUnsupported)?;
                Barrierd::open_even_if_stopped(&path)
            }
        };
        Ok(Barrier {
            path,
            fallback,
            timeout: DEFAULT_TIMEOUT,
            current: Mutex::new(Current::new(daemon)),
        })
    }

    /// [`Barrier::open`] on [`layout::default_path`]: `$BARRIERD_FILE`, or
    /// [`layout::DEFAULT_PATH`].
    pub fn open_default(fallback: Fallback) -> Result<Barrier, BarrierError> {
        Self::open(layout::default_path(), fallback)
    }

    /// How long each [`Barrier::heavy`] may wait for the daemon.
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = timeout;
        self
    }

    /// The mapped file, if it could be opened.
    pub fn daemon(&self) -> Option<Arc<Barrierd>> {
        self.current().daemon.as_ref().ok().cloned()
    }

    /// Why the file could not be opened, if it could not.
    pub fn unavailable(&self) -> Option<Arc<OpenError>> {
        self.current().daemon.as_ref().err().cloned()
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        // Every update leaves `Current` whole: a panic elsewhere cannot
        // have left it half-written.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A heavy barrier with the guarantees of [`Barrierd::heavy_barrier`]
    /// (membarrier gives the same ones, for the same light side). Blocks the
    /// calling thread.
    pub fn heavy(&self) -> Result<Via, BarrierError> {
        let daemon = match self.serving() {
            Ok(daemon) => daemon,
            // No file: only with Fallback::Membarrier (with None, open
            // fails, and a reopen replaces the file by a running one only).
            Err((why, None)) => return self.membarrier(why),
            Err((why, Some(error))) => return self.fall_back(error, why),
        };
        match daemon.heavy_barrier(self.timeout) {
            Ok(()) => Ok(Via::Daemon),
            Err(error) => {
                self.current().suspect = true;
                let why = match error {
                    WaitError::NotRunning { liveness, .. } => Why::NotRunning(liveness),
                    WaitError::TimedOut { .. } => Why::TimedOut,
                };
                self.fall_back(error, why)
            }
        }
    }

    /// The daemon to wait on, or why there is none (with the error to
    /// report without a fallback). Opens the path again if it is time.
    fn serving(&self) -> Result<Arc<Barrierd>, (Why, Option<WaitError>)> {
        let mut current = self.current();
        if current.suspect && current.opened_at.elapsed() >= REOPEN_INTERVAL {
            let reopened = Current::new(Barrierd::open_even_if_stopped(&self.path));
            if !reopened.suspect || current.daemon.is_err() {
                *current = reopened;
            } else {
                current.opened_at = reopened.opened_at;
            }
        }
        let daemon = match &current.daemon {
            Ok(daemon) => Arc::clone(daemon),
            Err(_) => return Err((Why::Unavailable, None)),
        };
        if current.suspect {
            match daemon.liveness() {
                Liveness::Running => current.suspect = false,
                liveness => {
                    let error = WaitError::NotRunning {
                        path: daemon.path().to_owned(),
                        liveness,
                    };
                    return Err((Why::NotRunning(liveness), Some(error)));
                }
            }
        }
        Ok(daemon)
    }

    fn fall_back(&self, error: WaitError, why: Why) -> Result<Via, BarrierError> {
        match self.fallback {
            Fallback::None => Err(error.into()),
            Fallback::Membarrier => self.membarrier(why),
        }
    }

    fn membarrier(&self, why: Why) -> Result<Via, BarrierError> {
        sys::membarrier_global().map_err(BarrierError::Membarrier)?;
        Ok(Via::Membarrier(why))
    }
}

impl Current {
    fn new(daemon: Result<Barrierd, OpenError>) -> Current {
        let suspect = !matches!(
            daemon.as_ref().map(Barrierd::liveness),
            Ok(Liveness::Running)
        );
        Current {
            daemon: daemon.map(Arc::new).map_err(Arc::new),
            suspect,
            opened_at: Instant::now(),
        }
    }
}

static PROCESS_BARRIER: OnceLock<Option<Barrier>> = OnceLock::new();

/// The heavy side, drop-in for `membarrier::heavy()`, folly's
/// `asymmetric_thread_fence_heavy()` or `membarrier(MEMBARRIER_CMD_GLOBAL)`:
/// a barrier on a process-wide [`Barrier`], opened at the first call with
/// [`Barrier::open_default`] and [`Fallback::Membarrier`]. Pairs with
/// [`light`](crate::light). Panics only if no barrier is possible at all
/// (membarrier unavailable and no daemon); [`try_heavy`] returns that.
pub fn heavy() -> Via {
    try_heavy().unwrap_or_else(|error| panic!("barrierd_client::heavy: {error}"))
}

/// [`heavy`], returning the error instead of panicking.
pub fn try_heavy() -> Result<Via, BarrierError> {
    let barrier = PROCESS_BARRIER.get_or_init(|| Barrier::open_default(Fallback::Membarrier).ok());
    match barrier {
        Some(barrier) => barrier.heavy(),
        // Barrier::open with the fallback fails only without membarrier:
        // this call says why.
        None => {
            sys::membarrier_global().map_err(BarrierError::Membarrier)?;
            Ok(Via::Membarrier(Why::Unavailable))
        }
    }
}
