//! CPU numbering both sides agree on: slots are indexed by CPU id, so their
//! count is the highest possible id plus one (a sparse possible mask still
//! needs a slot per id), and the one way either side makes a CPU switch to
//! it: running there.
#![allow(unsafe_code)]

use std::{fs, io};

use crate::errno::check;

pub const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
pub const ONLINE: &str = "/sys/devices/system/cpu/online";

/// The number of CPU slots: highest possible CPU id + 1. Reads sysfs: call it
/// before a sandbox goes on.
pub fn possible_cpus() -> io::Result<usize> {
    Ok(read_cpu_list(POSSIBLE)?
        .into_iter()
        .max()
        .map_or(0, |h| h + 1))
}

/// The ids of the CPUs online now. Reads sysfs: call it before a sandbox.
pub fn online_cpus() -> io::Result<Vec<usize>> {
    read_cpu_list(ONLINE)
}

fn read_cpu_list(path: &str) -> io::Result<Vec<usize>> {
    let text = fs::read_to_string(path)?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected content {text:?}"),
        )
    })
}

/// Parses a kernel CPU list such as `0-3,5,7-8` into ids, in order.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for range in text.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        if first > last || ids.last().is_some_and(|&l| l >= first) {
            return None;
        }
        ids.extend(first..=last);
    }
    Some(ids)
}

/// A CPU mask for `sched_{get,set}affinity` as wide as the machine's CPU
/// ids (`libc::cpu_set_t` stops at 1024, and the kernel refuses a mask
/// narrower than its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMask(Vec<libc::c_ulong>);

impl CpuMask {
    const BITS: usize = libc::c_ulong::BITS as usize;

    fn empty(ncpu: usize) -> Self {
        Self(vec![0; ncpu.div_ceil(Self::BITS).max(1)])
    }

    fn only(ncpu: usize, cpu: usize) -> Self {
        let mut mask = Self::empty(ncpu.max(cpu + 1));
        mask.0[cpu / Self::BITS] |= 1 << (cpu % Self::BITS);
        mask
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(self.0.as_slice())
    }

    /// The calling thread's affinity, for a machine of `ncpu` CPU slots.
    pub fn of_this_thread(ncpu: usize) -> io::Result<Self> {
        let mut mask = Self::empty(ncpu);
        // SAFETY: the mask is valid for writes of `bytes()` bytes.
        check(unsafe { libc::sched_getaffinity(0, mask.bytes(), mask.0.as_mut_ptr().cast()) })?;
        Ok(mask)
    }

    /// Makes this the calling thread's affinity; on return it runs on one
    /// of these CPUs.
    fn apply(&self) -> io::Result<()> {
        // SAFETY: the mask is valid for reads of `bytes()` bytes.
        check(unsafe { libc::sched_setaffinity(0, self.bytes(), self.0.as_ptr().cast()) })?;
        Ok(())
    }
}

/// Runs the calling thread once on each of `cpus`, then gives it the
/// affinity `home`: each CPU context-switches to us (sched_setaffinity
/// returns once we run there) and back. Returns the CPUs the kernel would
/// not run us on (EINVAL): offline, or outside our cpuset.
pub fn visit(cpus: &[usize], home: &CpuMask) -> io::Result<Vec<usize>> {
    let ncpu = home.0.len() * CpuMask::BITS;
    let mut skipped = Vec::new();
    for &cpu in cpus {
        if let Err(error) = CpuMask::only(ncpu, cpu).apply() {
            if error.raw_os_error() != Some(libc::EINVAL) {
                // Best effort: the caller reports the first error.
                let _ = home.apply();
                return Err(error);
            }
            skipped.push(cpu);
        }
    }
    home.apply()?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_masks_reach_every_possible_cpu() {
        let mask = CpuMask::only(4096, 1500);
        assert_eq!(mask.bytes(), 512);
        assert_eq!(mask.0.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        assert_eq!(mask.0[1500 / 64], 1 << (1500 % 64));
        assert_eq!(CpuMask::empty(2).bytes(), 8);
    }

    fn allowed() -> Vec<usize> {
        let status = fs::read_to_string("/proc/thread-self/status").unwrap();
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .to_owned();
        parse_cpu_list(&list).unwrap()
    }

    #[test]
    fn visiting_this_machines_cpus_restores_our_affinity() {
        let home = CpuMask::of_this_thread(possible_cpus().unwrap()).unwrap();
        let before = allowed();
        assert_eq!(visit(&before, &home).unwrap(), Vec::<usize>::new());
        assert_eq!(allowed(), before);
    }

    /// CPU 1500 is no CPU of this machine, but its mask is one the kernel
    /// reads (a 1024-bit `cpu_set_t` cannot even name it).
    #[test]
    fn cpus_beyond_1024_are_named_and_skipped_when_absent() {
        let ncpu = 4096;
        let home = CpuMask::of_this_thread(ncpu).unwrap();
        let before = allowed();
        assert_eq!(visit(&[before[0], 1500], &home).unwrap(), [1500]);
        assert_eq!(allowed(), before);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("2,1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn this_machine_has_some() {
        let possible = possible_cpus().unwrap();
        let online = online_cpus().unwrap();
        assert!(possible >= 1);
        assert!(!online.is_empty() && online.iter().all(|&cpu| cpu < possible));
    }
}
