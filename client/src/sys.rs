//! Everything that talks to the kernel or reads the shared mapping: the only
//! module allowed `unsafe`. Kept small so that each block can be checked
//! against its `SAFETY` comment.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// `membarrier(2)` commands (not in the libc crate).
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// A read-only shared mapping of a whole barrierd file, and the descriptor
/// used to probe the daemon's liveness lock.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: MmapRaw,
    words: usize,
    file: File,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (its size when checked by the
    /// caller) read-only and shared.
    pub(crate) fn new(file: File, len: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw_read_only(&file)?;
        Ok(Self {
            map,
            words: len / 8,
            file,
        })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.words, "word {index} is outside the mapping");
        // SAFETY: `index` is inside the mapping, which is page-aligned (so
        // the word is 8-byte aligned) and lives as long as `self`. The page is
        // read-only: `load` below only ever does relaxed loads of 8 bytes,
        // which Rust guarantees to work on read-only memory on x86-64 and
        // other 64-bit targets (std::sync::atomic, "Atomic accesses to
        // read-only memory"). The daemon writes it only with atomic stores.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>().add(index)) }
    }

    /// An acquire load of word `index`: a relaxed load, which is what is
    /// allowed on read-only pages, then an acquire fence, which makes it
    /// synchronize like an acquire load (and costs nothing on x86-64).
    #[inline]
    pub(crate) fn load(&self, index: usize) -> u64 {
        let value = self.word(index).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        value
    }

    /// Sleeps while the low 32-bit half of word `index` equals `expected`,
    /// at most `timeout_ns`; returns on a wake, a mismatch, a signal or the
    /// timeout alike: the caller re-checks everything.
    pub(crate) fn futex_wait(&self, index: usize, expected: u32, timeout_ns: u64) {
        let half = crate::layout::futex_half(self.word(index));
        let timeout = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT reads the 4-byte aligned `half` inside our
        // mapping and `timeout`, both valid for the call; it writes nothing.
        // Not FUTEX_PRIVATE_FLAG: the waker is another process. Errors
        // (EAGAIN, EINTR, ETIMEDOUT) all mean "re-check", so none is kept.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                half,
                libc::FUTEX_WAIT,
                expected,
                &timeout as *const libc::timespec,
                std::ptr::null::<u32>(),
                0,
            );
        }
    }

    /// Whether some process holds a write lock on the file, which only a
    /// running daemon does (an OFD write lock for its whole life, dropped by
    /// the kernel however it dies). Asking whether a *read* lock could be
    /// taken finds write locks alone: a reader, who can only take read
    /// locks, cannot make a dead daemon look alive. F_OFD_GETLK only tests:
    /// it takes nothing, and works on our read-only descriptor. If the test
    /// itself fails we cannot tell, so we say "held" and leave the verdict
    /// to the state word.
    pub(crate) fn lock_held(&self) -> bool {
        // SAFETY: all-zero is a valid `struct flock`; the fields that matter
        // are set below (F_OFD_GETLK requires l_pid to be 0).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_RDLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: `lock` is a valid struct flock for the call's duration and
        // the descriptor is ours.
        let result = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        result != 0 || lock.l_type != libc::F_UNLCK as libc::c_short
    }
}

pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the file's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; CLOCK_MONOTONIC always exists, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether `membarrier(MEMBARRIER_CMD_GLOBAL)` is available: Linux 4.3 or
/// later, and not disabled (it is with `nohz_full`).
pub(crate) fn membarrier_global_supported() -> io::Result<()> {
    // SAFETY: MEMBARRIER_CMD_QUERY only returns a bit mask.
    let mask = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
    if mask < 0 {
        return Err(io::Error::last_os_error());
    }
    if mask & libc::c_long::from(MEMBARRIER_CMD_GLOBAL) == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL)`: returns once every running thread of
/// every process has passed a full memory barrier.
pub(crate) fn membarrier_global() -> io::Result<()> {
    // SAFETY: MEMBARRIER_CMD_GLOBAL touches no memory of ours.
    if unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
