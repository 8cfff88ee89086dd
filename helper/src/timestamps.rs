//! The per-CPU timestamps, idle flags and the watermark, read and written in
//! place in the BPF program's memory-mapped .bss: no bpf(2) call after setup.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::addr_of_mut;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use barrierd_privsep::ipc::MAX_CPUS;

use crate::skel::types;

/// bpf/barrierd_shared.h: BARRIERD_ALL_IDLE.
const ALL_IDLE: u64 = u64::MAX;

// The protocol's CPU cap and BARRIERD_MAX_CPUS must agree.
const _: () = assert!(
    std::mem::size_of::<types::bss>() >= MAX_CPUS * std::mem::size_of::<types::barrierd_cpu_slot>()
        && std::mem::size_of::<types::bss>()
            < (MAX_CPUS + 2) * std::mem::size_of::<types::barrierd_cpu_slot>()
);

pub struct Timestamps<'bss> {
    bss: *mut types::bss,
    ncpu: usize,
    /// Which CPUs the last two reads found idle (reused: no allocation).
    idle: [Vec<bool>; 2],
    _bss: PhantomData<&'bss mut types::bss>,
}

impl<'bss> Timestamps<'bss> {
    /// `ncpu` must not exceed [`MAX_CPUS`], the length of `slots`.
    pub fn new(bss: &'bss mut types::bss, ncpu: usize) -> Self {
        assert!(ncpu <= bss.slots.len());
        Self {
            bss,
            ncpu,
            idle: [vec![false; ncpu], vec![false; ncpu]],
            _bss: PhantomData,
        }
    }

    pub fn ncpu(&self) -> usize {
        self.ncpu
    }

    fn slot_word(&self, cpu: usize, idle: bool) -> &AtomicU64 {
        assert!(cpu < self.ncpu);
        // SAFETY: `bss` points into the .bss mapping, which outlives 'bss;
        // `cpu < ncpu <= MAX_CPUS` is in bounds; the fields are 8-byte
        // aligned; BPF only accesses them atomically (xchg, volatile loads)
        // and we only through AtomicU64.
        unsafe {
            let slot = addr_of_mut!((*self.bss).slots[cpu]);
            AtomicU64::from_ptr(if idle {
                addr_of_mut!((*slot).idle)
            } else {
                addr_of_mut!((*slot).last_ns)
            })
        }
    }

    fn watermark(&self) -> &AtomicU64 {
        // SAFETY: as in `slot_word`; BPF only loads the watermark.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).watermark.ns)) }
    }

    /// Marks a CPU that cannot run anything (offline) as idle; it clears the
    /// flag itself when it first switches away from its idle task.
    pub fn mark_idle(&self, cpu: usize) {
        self.slot_word(cpu, true).store(1, Ordering::SeqCst);
    }

    /// Reads every CPU into `out`, which holds the previous values: each
    /// entry only ever grows. An idle CPU counts as up to date at `now`, the
    /// clock read *before* its idle flag: if the flag is still set after the
    /// fence, the CPU has run no user code since before `now`, and its exit
    /// from idle (a fully ordered exchange) precedes any user code it runs.
    ///
    /// Records which CPUs were idle in `self.idle[which]`; returns the
    /// minimum timestamp over busy CPUs (ALL_IDLE if none is busy).
    fn read_into(&mut self, out: &mut [u64], which: usize) -> u64 {
        let now = monotonic_ns();
        fence(Ordering::SeqCst);
        let mut busy_min = ALL_IDLE;
        for (cpu, entry) in out.iter_mut().enumerate() {
            let idle = self.slot_word(cpu, true).load(Ordering::Acquire) != 0;
            let last_ns = self.slot_word(cpu, false).load(Ordering::Acquire);
            self.idle[which][cpu] = idle;
            let value = if idle {
                now
            } else {
                busy_min = busy_min.min(last_ns);
                last_ns
            };
            *entry = (*entry).max(value);
        }
        busy_min
    }

    /// Reads every CPU into `out` and leaves the watermark such that any busy
    /// CPU holding the minimum back signals at its next event. Dekker-style:
    /// BPF exchanges its slot then loads its idle flag and the watermark; we
    /// store the watermark, fence, then read again. Either a CPU's next event
    /// sees the new watermark, or our re-read sees that event; so once a
    /// re-read finds the same busy minimum and idle set, no advance can go
    /// unsignalled. A CPU leaving idle does not signal: the watermark is
    /// ALL_IDLE when every CPU was idle, so its first event as a busy CPU does.
    pub fn settle(&mut self, out: &mut Vec<u64>) {
        out.resize(self.ncpu, 0);
        let mut busy_min = self.read_into(out, 0);
        loop {
            self.watermark().store(busy_min, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let again = self.read_into(out, 1);
            if again == busy_min && self.idle[0] == self.idle[1] {
                return;
            }
            busy_min = again;
            self.idle.swap(0, 1);
        }
    }
}

fn monotonic_ns() -> u64 {
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
