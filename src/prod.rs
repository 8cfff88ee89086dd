//! `--prod-after`: a bound for CPUs that take no ticks while they run user
//! code (nohz_full, or a stuck tick), which would otherwise hold every
//! barrier back until they next enter the kernel.
//!
//! While a client waits, a CPU that was busy at the last pass and whose
//! latest kernel entry is older than the bound is made to enter the kernel:
//! the publisher moves itself onto that CPU (so that it switches to us, an
//! event BPF records and signals) and back. Off by default: it is the
//! publisher's only timer, and it moves the daemon around.

use std::time::Duration;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// How long after a client blocked in a barrier wait it may still be
/// waiting: a waiter blocks again at least every 100 ms (its probe
/// interval). The same window as BPF's `BARRIERD_DEMAND_NS`.
const DEMAND_NS: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ProdError {
    #[error("reading the publisher's CPU affinity: {0}")]
    Affinity(#[source] nix::Error),
    #[error("moving onto CPU {cpu}: {source} (--prod-after needs barrierd allowed on every CPU)")]
    Move {
        cpu: usize,
        #[source]
        source: nix::Error,
    },
    #[error("moving back to the publisher's CPUs: {0}")]
    MoveBack(#[source] nix::Error),
}

pub struct Prodder {
    after_ns: u64,
    /// The CPUs we may run on, read at start: where we return after a prod.
    home: CpuSet,
    /// At most one round of prods per bound, whatever the passes do.
    not_before: u64,
}

impl Prodder {
    /// Reads the affinity to return to; call before the sandbox is applied.
    pub fn new(after: Duration) -> Result<Self, ProdError> {
        Ok(Self {
            after_ns: u64::try_from(after.as_nanos()).unwrap_or(u64::MAX),
            home: sched_getaffinity(Pid::from_raw(0)).map_err(ProdError::Affinity)?,
            not_before: 0,
        })
    }

    /// When to prod if no pass comes first: `None` unless a client blocked
    /// in a barrier wait recently enough to still be waiting then and a CPU
    /// was busy at the last pass.
    pub fn deadline(&self, received: &[u64], demand_ns: u64) -> Option<u64> {
        let oldest_busy = busy(received).map(|(_, ns)| ns).min()?;
        let at = oldest_busy
            .saturating_add(self.after_ns)
            .max(self.not_before);
        (at < demand_ns.saturating_add(DEMAND_NS)).then_some(at)
    }

    /// Moves onto every CPU that `lagging` names, then back home. Returns
    /// how many were reached; the first failure ends the round.
    pub fn prod(&mut self, received: &[u64], now: u64) -> (u64, Result<(), ProdError>) {
        self.not_before = now.saturating_add(self.after_ns);
        let mut prodded = 0;
        for cpu in lagging(received, now, self.after_ns) {
            let mut one = CpuSet::new();
            let moved = one
                .set(cpu)
                .and_then(|()| sched_setaffinity(Pid::from_raw(0), &one));
            if let Err(source) = moved {
                return (
                    prodded,
                    self.go_home().and(Err(ProdError::Move { cpu, source })),
                );
            }
            // sched_setaffinity returns once we run on `cpu`: it has switched.
            prodded += 1;
        }
        (prodded, self.go_home())
    }

    fn go_home(&self) -> Result<(), ProdError> {
        sched_setaffinity(Pid::from_raw(0), &self.home).map_err(ProdError::MoveBack)
    }
}

/// The CPUs busy at the last read, with their times: a quiescent CPU is
/// reported at the time of the read, the largest value, and a busy one at
/// its latest kernel entry, before it.
fn busy(received: &[u64]) -> impl Iterator<Item = (usize, u64)> + '_ {
    let read_at = received.iter().copied().max().unwrap_or(0);
    received
        .iter()
        .copied()
        .enumerate()
        .filter(move |&(_, ns)| ns < read_at)
}

/// CPUs busy at the last read whose latest kernel entry is `after_ns` old.
fn lagging(received: &[u64], now: u64, after_ns: u64) -> Vec<usize> {
    busy(received)
        .filter(|&(_, ns)| ns.saturating_add(after_ns) <= now)
        .map(|(cpu, _)| cpu)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn prodder(after_ms: u64) -> Prodder {
        Prodder::new(Duration::from_millis(after_ms)).unwrap()
    }

    #[test]
    fn no_deadline_without_a_busy_cpu_or_a_waiter() {
        let p = prodder(5);
        // Every CPU quiescent: all at the read's time.
        assert_eq!(p.deadline(&[100 * MS, 100 * MS], 99 * MS), None);
        // A busy CPU, but the last waiter blocked over a second before the
        // bound comes.
        assert_eq!(p.deadline(&[1000 * MS, 2000 * MS], 4 * MS), None);
        assert_eq!(p.deadline(&[1000 * MS, 2000 * MS], 6 * MS), Some(1005 * MS));
    }

    #[test]
    fn deadline_is_the_oldest_busy_cpu_plus_the_bound() {
        let p = prodder(5);
        assert_eq!(
            p.deadline(&[30 * MS, 20 * MS, 40 * MS], 35 * MS),
            Some(25 * MS)
        );
    }

    #[test]
    fn lagging_cpus_are_old_and_were_busy() {
        // CPU 2 is quiescent (at the read, 40 ms); CPU 1 is busy but recent.
        assert_eq!(lagging(&[10 * MS, 38 * MS, 40 * MS], 41 * MS, 5 * MS), [0]);
        assert_eq!(
            lagging(&[10 * MS, 12 * MS, 40 * MS], 41 * MS, 5 * MS),
            [0, 1]
        );
        assert!(lagging(&[40 * MS, 40 * MS], 100 * MS, 5 * MS).is_empty());
    }

    #[test]
    fn a_round_of_prods_waits_a_whole_bound_for_the_next() {
        let mut p = prodder(5);
        // Nothing lags yet at 12 ms, but the round still spaces the next one.
        let (prodded, result) = p.prod(&[10 * MS, 40 * MS], 12 * MS);
        assert_eq!(prodded, 0);
        result.unwrap();
        assert_eq!(p.deadline(&[10 * MS, 40 * MS], 12 * MS), Some(17 * MS));
    }

    #[test]
    fn prodding_runs_us_on_the_lagging_cpu_and_brings_us_home() {
        let mut p = prodder(1);
        let home = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpu = (0..CpuSet::count())
            .find(|&cpu| home.is_set(cpu).unwrap_or(false))
            .unwrap();
        // Another (quiescent) CPU reported at the read, after it.
        let mut received = vec![1000 * MS; cpu + 2];
        received[cpu] = MS;
        let (prodded, result) = p.prod(&received, 1000 * MS);
        result.unwrap();
        assert_eq!(prodded, 1);
        assert_eq!(sched_getaffinity(Pid::from_raw(0)).unwrap(), home);
    }
}
