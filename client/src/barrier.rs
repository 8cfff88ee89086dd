//! The heavy barrier with a policy for when the daemon cannot serve it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::file::{Barrierd, OpenError};
use crate::sys;
use crate::wait::{Liveness, WaitError};

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
/// let barrier = Barrier::open("/run/barrierd", Fallback::Membarrier)?;
/// barrier.heavy()?; // pairs with light_barrier() in the fast threads
/// # Ok::<(), barrierd_client::BarrierError>(())
/// ```
///
/// With [`Fallback::Membarrier`], every call returns a completed barrier
/// unless membarrier itself fails: through the daemon when it runs, through
/// membarrier when the file is missing or bad, when the daemon is stopped
/// or dead, when the file is of another boot, or when the daemon times out. A daemon that (re)starts on the file that
/// was opened is used again as soon as it runs. After a failure the next
/// calls check the daemon's liveness first (one syscall), so a dead daemon
/// does not cost a probe interval per barrier.
#[derive(Debug)]
pub struct Barrier {
    daemon: Result<Barrierd, OpenError>,
    fallback: Fallback,
    timeout: Duration,
    suspect: AtomicBool,
}

impl Barrier {
    /// With [`Fallback::None`], fails as [`Barrierd::open`] does. With
    /// [`Fallback::Membarrier`], fails only if membarrier is unavailable.
    pub fn open(path: impl AsRef<Path>, fallback: Fallback) -> Result<Barrier, BarrierError> {
        let daemon = match fallback {
            Fallback::None => Ok(Barrierd::open(path)?),
            Fallback::Membarrier => {
                sys::membarrier_global_supported().map_err(BarrierError::MembarrierUnsupported)?;
                Barrierd::open_even_if_stopped(path)
            }
        };
        let suspect = !matches!(
            daemon.as_ref().map(Barrierd::liveness),
            Ok(Liveness::Running)
        );
        Ok(Barrier {
            daemon,
            fallback,
            timeout: DEFAULT_TIMEOUT,
            suspect: AtomicBool::new(suspect),
        })
    }

    /// How long each [`Barrier::heavy`] may wait for the daemon.
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = timeout;
        self
    }

    /// The mapped file, if it could be opened.
    pub fn daemon(&self) -> Option<&Barrierd> {
        self.daemon.as_ref().ok()
    }

    /// Why the file could not be opened, if it could not.
    pub fn unavailable(&self) -> Option<&OpenError> {
        self.daemon.as_ref().err()
    }

    /// A heavy barrier with the guarantees of [`Barrierd::heavy_barrier`]
    /// (membarrier gives the same ones, for the same light side). Blocks the
    /// calling thread.
    pub fn heavy(&self) -> Result<Via, BarrierError> {
        let daemon = match &self.daemon {
            Ok(daemon) => daemon,
            Err(_) => return self.membarrier(Why::Unavailable),
        };
        if self.suspect.load(Ordering::Relaxed) {
            match daemon.liveness() {
                Liveness::Running => self.suspect.store(false, Ordering::Relaxed),
                liveness => {
                    let error = WaitError::NotRunning {
                        path: daemon.path().to_owned(),
                        liveness,
                    };
                    return self.fall_back(error, Why::NotRunning(liveness));
                }
            }
        }
        match daemon.heavy_barrier(self.timeout) {
            Ok(()) => Ok(Via::Daemon),
            Err(error) => {
                self.suspect.store(true, Ordering::Relaxed);
                let why = match error {
                    WaitError::NotRunning { liveness, .. } => Why::NotRunning(liveness),
                    WaitError::TimedOut { .. } => Why::TimedOut,
                };
                self.fall_back(error, why)
            }
        }
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
