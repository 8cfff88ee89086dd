//! The per-CPU timestamps, quiescence flags and the watermark, read and
//! written in place in the BPF program's memory-mapped .bss: no bpf(2) call
//! after setup.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::addr_of_mut;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use barrierd_privsep::ipc::MAX_CPUS;

use crate::skel::shared::QUIESCENT;
use crate::skel::types;

/// Subtracted from BPF's timestamps before they are sent: BPF reads the
/// kernel's NMI-safe accessor (bpf_ktime_get_ns), clients the vDSO, and a
/// stamp must not exceed a client's T read before the event. Both read the
/// same TSC with the same timekeeper, but the fast accessor may lag an
/// update by a few ns; `clock-order` (bench) finds no inversion here and
/// bounds how far the BPF clock can lead by ~200 ns (the hand-over time).
/// Costs a barrier at most this much more wait.
const CLOCK_MARGIN_NS: u64 = 1_000;

// Compiles only if the protocol's CPU cap and BARRIERD_MAX_CPUS agree.
const _: fn(&types::bss) -> &[types::barrierd_cpu_slot; MAX_CPUS] = |bss| &bss.slots;

pub struct Timestamps<'bss> {
    bss: *mut types::bss,
    ncpu: usize,
    _bss: PhantomData<&'bss mut types::bss>,
}

impl<'bss> Timestamps<'bss> {
    /// `ncpu` must not exceed [`MAX_CPUS`], the length of `slots`.
    pub fn new(bss: &'bss mut types::bss, ncpu: usize) -> Self {
        assert!(ncpu <= bss.slots.len());
        Self {
            bss,
            ncpu,
            _bss: PhantomData,
        }
    }

    pub fn ncpu(&self) -> usize {
        self.ncpu
    }

    /// CPU `cpu`'s state word: its latest timestamp and quiescent bit.
    fn state(&self, cpu: usize) -> &AtomicU64 {
        assert!(cpu < self.ncpu);
        // SAFETY: `bss` points into the .bss mapping, which outlives 'bss;
        // `cpu < ncpu <= MAX_CPUS` is in bounds; the field is 8-byte
        // aligned; BPF only accesses it atomically (xchg, volatile loads)
        // and we only through AtomicU64.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).slots[cpu].state)) }
    }

    /// When a client last blocked in a barrier wait (BPF's `demand_ns`).
    pub fn demand_ns(&self) -> u64 {
        // SAFETY: as in `state`; BPF stores it with single aligned 8-byte
        // stores.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).demand_ns)) }.load(Ordering::Relaxed)
    }

    fn watermark(&self, field: WatermarkField) -> &AtomicU64 {
        // SAFETY: as in `state`; BPF only loads the watermark.
        unsafe {
            let watermark = addr_of_mut!((*self.bss).watermark);
            AtomicU64::from_ptr(match field {
                WatermarkField::Ns => addr_of_mut!((*watermark).ns),
                WatermarkField::ArmOnExit => addr_of_mut!((*watermark).arm_on_exit),
                WatermarkField::HelperSleeps => addr_of_mut!((*watermark).helper_sleeps),
            })
        }
    }

    /// BPF's `last_signal.deferred`: a debt was deferred since our last read.
    fn deferred(&self) -> &AtomicU64 {
        // SAFETY: as in `state`; BPF stores it with a fully ordered exchange.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).last_signal.deferred)) }
    }

    /// When the spacing of undemanded signals ends: until then BPF may defer
    /// a debt (bpf/barrierd.bpf.c, `signal_if_due`), after it no more.
    pub fn spacing_ends_ns(&self) -> u64 {
        // SAFETY: as in `state`; BPF stores it with single aligned 8-byte
        // stores.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).last_signal.spacing_ends_ns)) }
            .load(Ordering::Relaxed)
    }

    /// Called once the spacing has ended, before sleeping with no deadline:
    /// false if a debt was deferred since the last read (read again first).
    /// Dekker-style with BPF: we store `helper_sleeps`, fence, take
    /// `deferred`; it stores `deferred`, then loads `helper_sleeps` and
    /// signals if it is set. So no deferred debt is left uncollected.
    pub fn may_sleep_without_deadline(&self) -> bool {
        self.watermark(WatermarkField::HelperSleeps)
            .store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.deferred().swap(0, Ordering::SeqCst) == 0
    }

    /// Once the programs are attached: CPUs that were `offline` when the
    /// online list was read start quiescent (one coming online starts in its
    /// idle task, and its first switch to a client task clears the flag),
    /// unless BPF already recorded an event there. Such a CPU came online
    /// since, and its state word is BPF's: a compare-exchange from "never
    /// seen", not a store over it.
    pub fn mark_offline(&self, offline: impl Iterator<Item = usize>) {
        for cpu in offline {
            // Failure means BPF got there first, which is the point.
            let _ =
                self.state(cpu)
                    .compare_exchange(0, QUIESCENT, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Reads every CPU into `out`, which holds the previous values: each
    /// entry only ever grows. A busy CPU counts as up to date at its latest
    /// event less [`CLOCK_MARGIN_NS`]. A quiescent CPU counts as up to date
    /// at `now`, the clock read *before* its flag: if the flag is still set
    /// after the fence, the CPU has run no client code since before `now`,
    /// and leaving quiescence (a fully ordered exchange) precedes any client
    /// code it runs.
    ///
    /// Returns the watermark this reading calls for: the minimum over busy
    /// CPUs, and whether none was busy (then the minimum is `now`).
    fn read_into(&self, out: &mut [u64]) -> (u64, bool) {
        let now = monotonic_ns();
        fence(Ordering::SeqCst);
        let mut busy_min = None;
        for (cpu, entry) in out.iter_mut().enumerate() {
            // One load: the timestamp and the flag BPF exchanged together.
            let state = self.state(cpu).load(Ordering::Acquire);
            let last_ns = state & !QUIESCENT;
            let value = if state & QUIESCENT != 0 {
                now
            } else {
                busy_min = Some(busy_min.map_or(last_ns, |min: u64| min.min(last_ns)));
                last_ns.saturating_sub(CLOCK_MARGIN_NS)
            };
            *entry = (*entry).max(value);
        }
        busy_min.map_or((now, true), |min| (min, false))
    }

    /// Reads every CPU into `out` (one pass, no retry) and leaves the
    /// watermark such that every busy CPU that may hold the minimum back
    /// owes a signal (bpf/barrierd.bpf.c says when it sends it).
    ///
    /// The read happens inside a window where the watermark is all-ones and
    /// leaving quiescence arms: any event the read may miss falls in the
    /// window and leaves its CPU owing. Dekker-style on both edges: BPF
    /// exchanges its state word, then loads the watermark; we store the
    /// watermark, fence, then read (or leave). An event that saw the
    /// watermark from before the window is seen by the read; one that saw the
    /// window owes; one that saw the final watermark owes exactly if it holds
    /// the minimum read. So no advance goes unsignalled, and under a
    /// context-switch storm this still costs one pass per wake-up.
    pub fn settle(&self, out: &mut Vec<u64>) {
        out.resize(self.ncpu, 0);
        // Awake: BPF may defer again. What it deferred so far, this reads.
        self.watermark(WatermarkField::HelperSleeps)
            .store(0, Ordering::SeqCst);
        self.deferred().store(0, Ordering::SeqCst);
        self.watermark(WatermarkField::Ns)
            .store(u64::MAX, Ordering::SeqCst);
        self.watermark(WatermarkField::ArmOnExit)
            .store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let (min, all_quiescent) = self.read_into(out);
        self.watermark(WatermarkField::ArmOnExit)
            .store(u64::from(all_quiescent), Ordering::SeqCst);
        self.watermark(WatermarkField::Ns)
            .store(min, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }
}

#[derive(Clone, Copy)]
enum WatermarkField {
    Ns,
    ArmOnExit,
    HelperSleeps,
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; CLOCK_MONOTONIC always exists. The
    // vDSO serves it without a system call (clock_gettime is allowed as a
    // fallback).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marking_offline_cpus_never_overwrites_what_bpf_recorded() {
        // SAFETY: .bss is plain integers, for which all-zero is valid (and is
        // what the kernel maps before BPF runs).
        let mut bss: Box<types::bss> = unsafe { Box::new_zeroed().assume_init() };
        // CPU 1 came online after the list was read and switched to a client
        // task at 1000: busy.
        bss.slots[1].state = 1000;
        let timestamps = Timestamps::new(&mut bss, 3);
        timestamps.mark_offline([1, 2].into_iter());
        assert_eq!(timestamps.state(1).load(Ordering::SeqCst), 1000);
        assert_eq!(timestamps.state(2).load(Ordering::SeqCst), QUIESCENT);
        assert_eq!(timestamps.state(0).load(Ordering::SeqCst), 0);
    }
}
