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

use barrierd_privsep::cpus::{self, CpuMask};
// How long after a client blocked in a barrier wait it may still be
// waiting: BPF's demand window.
use barrierd_privsep::handover::DEMAND_NS;

#[derive(Debug, thiserror::Error)]
pub enum ProdError {
    #[error("reading the publisher's CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),
    #[error("moving onto a lagging CPU or back: {0}")]
    Move(#[source] std::io::Error),
}

/// What a round of prods did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub prodded: u64,
    /// Lagging CPUs the kernel would not run us on: outside our cpuset.
    pub unreachable: Vec<usize>,
}

pub struct Prodder {
    after_ns: u64,
    /// The CPUs we may run on, read at start: where we return after a prod.
    home: CpuMask,
    /// At most one round of prods per bound, whatever the passes do.
    not_before: u64,
}

impl Prodder {
    /// Reads the affinity to return to (a mask for `ncpu` CPU slots); call
    /// before the sandbox is applied.
    pub fn new(after: Duration, ncpu: usize) -> Result<Self, ProdError> {
        Ok(Self {
            after_ns: u64::try_from(after.as_nanos()).unwrap_or(u64::MAX),
            home: CpuMask::of_this_thread(ncpu).map_err(ProdError::Affinity)?,
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

    /// Moves onto every CPU that lags, then back home.
    pub fn prod(&mut self, received: &[u64], now: u64) -> Result<Round, ProdError> {
        self.not_before = now.saturating_add(self.after_ns);
        let lagging = lagging(received, now, self.after_ns);
        let unreachable = cpus::visit(&lagging, &self.home).map_err(ProdError::Move)?;
        Ok(Round {
            prodded: (lagging.len() - unreachable.len()) as u64,
            unreachable,
        })
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
        Prodder::new(Duration::from_millis(after_ms), 2).unwrap()
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
        assert_eq!(
            p.prod(&[10 * MS, 40 * MS], 12 * MS).unwrap(),
            Round::default()
        );
        assert_eq!(p.deadline(&[10 * MS, 40 * MS], 12 * MS), Some(17 * MS));
    }

    fn affinity() -> CpuMask {
        CpuMask::of_this_thread(4096).unwrap()
    }

    /// A lagging CPU of ours is prodded; one the kernel does not have (here
    /// CPU 1500, past what a 1024-bit `cpu_set_t` can name) is reported,
    /// and the round still ends at home.
    #[test]
    fn prodding_runs_us_on_the_lagging_cpu_and_brings_us_home() {
        let ncpu = 4096;
        let mut p = Prodder::new(Duration::from_millis(1), ncpu).unwrap();
        let home = affinity();
        let cpu = barrierd_privsep::cpus::online_cpus().unwrap()[0];
        // Every other CPU quiescent: reported at the read, after it.
        let mut received = vec![1000 * MS; ncpu];
        received[cpu] = MS;
        received[1500] = MS;
        let round = p.prod(&received, 1000 * MS).unwrap();
        assert_eq!(
            round,
            Round {
                prodded: 1,
                unreachable: vec![1500]
            }
        );
        assert_eq!(affinity(), home);
    }
}
