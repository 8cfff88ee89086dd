//! The per-CPU timestamps and the watermark, read and written in place in the
//! BPF program's memory-mapped .bss: no bpf(2) call after setup.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::addr_of_mut;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use barrierd_privsep::ipc::MAX_CPUS;

use crate::skel::types;

// The protocol's CPU cap and BARRIERD_MAX_CPUS must agree.
const _: () = assert!(
    std::mem::size_of::<types::bss>() >= MAX_CPUS * std::mem::size_of::<types::barrierd_cpu_slot>()
        && std::mem::size_of::<types::bss>()
            < (MAX_CPUS + 2) * std::mem::size_of::<types::barrierd_cpu_slot>()
);

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

    fn slot(&self, cpu: usize) -> &AtomicU64 {
        // SAFETY: `bss` points into the .bss mapping, which outlives 'bss; `cpu < ncpu <= MAX_CPUS` is in bounds; the
        // field is 8-byte aligned; BPF only accesses it atomically (xchg) and
        // we only through this AtomicU64.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).slots[cpu].last_ns)) }
    }

    fn watermark(&self) -> &AtomicU64 {
        // SAFETY: as in `slot`; BPF only loads the watermark.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.bss).watermark.ns)) }
    }

    fn read_into(&self, out: &mut Vec<u64>) {
        out.clear();
        out.extend((0..self.ncpu).map(|cpu| self.slot(cpu).load(Ordering::Acquire)));
    }

    /// Reads every CPU's timestamp into `out` and leaves the watermark at
    /// their minimum such that the CPU(s) holding it will signal at their next
    /// event. Dekker-style: BPF exchanges its slot then loads the watermark;
    /// we store the watermark, fence, then re-read the slots. Either a CPU's
    /// next event sees the new watermark, or our re-read sees that event; so
    /// once a re-read leaves the minimum unchanged, no advance can go
    /// unsignalled.
    pub fn settle(&mut self, out: &mut Vec<u64>) {
        self.read_into(out);
        loop {
            let min = out.iter().copied().min().unwrap_or(0);
            self.watermark().store(min, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            self.read_into(out);
            if out.iter().copied().min().unwrap_or(0) == min {
                return;
            }
        }
    }
}
