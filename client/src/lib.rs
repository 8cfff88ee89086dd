//! Client side of barrierd: global asymmetric memory barriers through the
//! file the daemon publishes.
//!
//! The daemon publishes, per CPU, the CLOCK_MONOTONIC time at which that CPU
//! last entered the kernel, and their minimum. Once the minimum exceeds a
//! time T, every CPU has been through a full barrier since T. So a *heavy*
//! side can take T and wait, and the many *light* sides pay nothing but a
//! compiler fence:
//!
//! ```no_run
//! use barrierd_client::{light, Barrier, Fallback};
//! let barrier = Barrier::open_default(Fallback::Membarrier)?;
//! barrier.heavy()?; // heavy side; light sides call light()
//! # Ok::<(), barrierd_client::BarrierError>(())
//! ```
//!
//! Or, shaped like the `membarrier` crate's: [`light()`] and [`heavy()`] on
//! a process-wide handle at the default path (`$BARRIERD_FILE`, or
//! [`layout::DEFAULT_PATH`]), falling back to membarrier while no daemon
//! serves it.
//!
//! [`Barrierd::heavy_barrier`] states exactly what a heavy barrier
//! guarantees. [`Barrier`] adds the policy for a missing or dead daemon;
//! [`Barrierd`] is the file itself, with the fast-path checks
//! ([`Barrierd::passed_ns`]), the blocking waits, and per-CPU and vtime
//! accessors; [`layout`] is the file format, shared with the daemon and
//! `include/barrierd.h`.
//!
//! Nothing here is async: the waits block their thread. In async code, start
//! barriers with [`BarrierTicket::begin`] and poll [`Barrierd::try_complete`],
//! or run the waits on a blocking pool.

#![deny(unsafe_code)]

mod barrier;
mod file;
pub mod layout;
mod sys;
pub mod trust;
mod wait;

pub use barrier::{
    heavy, try_heavy, Barrier, BarrierError, Fallback, Via, Why, DEFAULT_TIMEOUT, REOPEN_INTERVAL,
};
pub use file::{BarrierTicket, Barrierd, OpenError, PROMPTNESS};
pub use layout::{default_path, DEFAULT_PATH};
pub use sys::monotonic_ns;
pub use wait::{Liveness, WaitError, PROBE_INTERVAL};

/// The light side of an asymmetric barrier: a compiler fence, no
/// instruction. It keeps the compiler from moving memory accesses across
/// it; the heavy side ([`Barrier::heavy`], [`Barrierd::heavy_barrier`])
/// accounts for what the CPU reorders.
#[inline(always)]
pub fn light() {
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}
