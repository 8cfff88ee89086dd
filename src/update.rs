//! Pure logic of an update pass: validate a snapshot from the helper and work
//! out the words to publish. No I/O, so every rule is unit-tested.
//!
//! vtime: the counter advances by one after every pass. A CPU's vtime is the
//! counter value in force when its timestamp was taken: the largest value
//! whose publication time precedes that timestamp. So `last_interrupt_vtime >
//! V` means every CPU entered the kernel after V + 1 was published, hence
//! after any client read V. (Attributing a change to the pass that observed
//! it, as the 2018 original did, would be unsound here: the helper reads
//! ahead of the publisher, so a pass can observe an entry that predates it.)

use std::collections::VecDeque;

/// How many recent vtime publications are remembered for attribution; an
/// older timestamp keeps its CPU's previous (smaller, so safe) vtime.
const VTIME_HISTORY: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("snapshot describes {got} CPUs, expected {expected}")]
    CpuCount { expected: usize, got: usize },
    #[error("CPU {cpu}: timestamp {ns} is in the future (now {now})")]
    Future { cpu: usize, ns: u64, now: u64 },
    #[error("CPU {cpu}: timestamp went backwards from {was} to {ns}")]
    Backwards { cpu: usize, was: u64, ns: u64 },
    #[error("demand time {demand_ns} is in the future (now {now})")]
    FutureDemand { demand_ns: u64, now: u64 },
}

/// One CPU's published words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuWords {
    pub ns: u64,
    pub vtime: u64,
}

/// What a pass publishes, in the order it must be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// CPUs whose words changed, with their new words.
    pub changed: Vec<(usize, CpuWords)>,
    pub last_interrupt_vtime: u64,
    pub last_interrupt_ns: u64,
    /// The counter after this pass.
    pub vtime: u64,
}

#[derive(Debug)]
pub struct State {
    /// Last snapshot received, for the going-backwards check.
    received: Vec<u64>,
    /// When a client last blocked in a barrier wait, as last received.
    demand_ns: u64,
    published: Vec<CpuWords>,
    vtime: u64,
    /// (vtime, CLOCK_MONOTONIC ns by which it was visible), oldest first.
    history: VecDeque<(u64, u64)>,
}

impl State {
    /// Continues from what the file already holds (all zeros for a new file):
    /// nothing a client has seen ever goes backwards. The file's current
    /// vtime counts as published at time 0, the most conservative choice.
    pub fn new(published: Vec<CpuWords>, vtime: u64) -> Self {
        Self {
            received: vec![0; published.len()],
            demand_ns: 0,
            published,
            vtime,
            history: VecDeque::from([(vtime, 0)]),
        }
    }

    pub fn ncpu(&self) -> usize {
        self.published.len()
    }

    /// The last snapshot accepted: busy CPUs at their latest kernel entry,
    /// quiescent ones at the time of the read.
    pub fn received(&self) -> &[u64] {
        &self.received
    }

    /// When a client last blocked in a barrier wait (0: never).
    pub fn demand_ns(&self) -> u64 {
        self.demand_ns
    }

    /// Validates a snapshot (per-CPU times and the demand time) against `now`
    /// (read after receiving it) and computes the pass. On error nothing
    /// changes.
    pub fn apply(
        &mut self,
        snapshot: &[u64],
        demand_ns: u64,
        now: u64,
    ) -> Result<Pass, ProtocolError> {
        if demand_ns > now {
            return Err(ProtocolError::FutureDemand { demand_ns, now });
        }
        if snapshot.len() != self.ncpu() {
            return Err(ProtocolError::CpuCount {
                expected: self.ncpu(),
                got: snapshot.len(),
            });
        }
        for (cpu, (&ns, &was)) in snapshot.iter().zip(&self.received).enumerate() {
            if ns > now {
                return Err(ProtocolError::Future { cpu, ns, now });
            }
            if ns < was {
                return Err(ProtocolError::Backwards { cpu, was, ns });
            }
        }
        self.received.copy_from_slice(snapshot);
        self.demand_ns = demand_ns;

        let mut changed = Vec::new();
        for (cpu, &ns) in snapshot.iter().enumerate() {
            let old = self.published[cpu];
            // A restarted daemon's first snapshots can be older than the file.
            if ns <= old.ns {
                continue;
            }
            let words = CpuWords {
                ns,
                vtime: self.vtime_at(ns).max(old.vtime),
            };
            self.published[cpu] = words;
            changed.push((cpu, words));
        }
        self.vtime += 1;
        Ok(Pass {
            changed,
            last_interrupt_vtime: self.published.iter().map(|w| w.vtime).min().unwrap_or(0),
            last_interrupt_ns: self.published.iter().map(|w| w.ns).min().unwrap_or(0),
            vtime: self.vtime,
        })
    }

    /// Records that the current vtime was visible to everyone by `at`.
    pub fn vtime_published(&mut self, at: u64) {
        if self.history.len() == VTIME_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((self.vtime, at));
    }

    /// The vtime in force at `ns`: the newest one published strictly before.
    fn vtime_at(&self, ns: u64) -> u64 {
        self.history
            .iter()
            .rev()
            .find(|&&(_, at)| at < ns)
            .map_or(0, |&(vtime, _)| vtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(ncpu: usize) -> State {
        State::new(vec![CpuWords::default(); ncpu], 0)
    }

    #[test]
    fn minimum_over_cpus_and_only_changes_reported() {
        let mut state = fresh(3);
        let pass = state.apply(&[10, 30, 20], 0, 100).unwrap();
        assert_eq!(pass.last_interrupt_ns, 10);
        assert_eq!(pass.changed.len(), 3);
        state.vtime_published(35);
        let pass = state.apply(&[40, 30, 20], 0, 100).unwrap();
        assert_eq!(pass.last_interrupt_ns, 20);
        assert_eq!(pass.changed, vec![(0, CpuWords { ns: 40, vtime: 1 })]);
    }

    #[test]
    fn unseen_cpu_holds_the_minimum_at_zero() {
        let mut state = fresh(2);
        assert_eq!(state.apply(&[0, 50], 0, 100).unwrap().last_interrupt_ns, 0);
    }

    #[test]
    fn invalid_snapshots_change_nothing() {
        let mut state = fresh(2);
        state.apply(&[10, 20], 50, 100).unwrap();
        assert_eq!(
            state.apply(&[30, 40], 101, 100),
            Err(ProtocolError::FutureDemand {
                demand_ns: 101,
                now: 100
            })
        );
        assert_eq!(
            state.apply(&[10], 0, 100),
            Err(ProtocolError::CpuCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            state.apply(&[10, 101], 0, 100),
            Err(ProtocolError::Future {
                cpu: 1,
                ns: 101,
                now: 100
            })
        );
        assert_eq!(
            state.apply(&[9, 20], 0, 100),
            Err(ProtocolError::Backwards {
                cpu: 0,
                was: 10,
                ns: 9
            })
        );
        // The rejected snapshots left no trace: 9 < 10 is still backwards and
        // the accepted state is unchanged.
        assert_eq!((state.received(), state.demand_ns()), (&[10, 20][..], 50));
        let pass = state.apply(&[10, 20], 0, 100).unwrap();
        assert!(pass.changed.is_empty());
        assert_eq!(pass.last_interrupt_ns, 10);
    }

    #[test]
    fn vtime_advances_every_pass_and_is_attributed_by_entry_time() {
        let mut state = fresh(2);
        let pass = state.apply(&[5, 6], 0, 10).unwrap();
        assert_eq!(pass.vtime, 1);
        state.vtime_published(10);
        // CPU 0 entered at 8, before vtime 1 was visible (10): it keeps 0.
        // CPU 1 entered at 12, after: it gets 1.
        let pass = state.apply(&[8, 12], 0, 20).unwrap();
        assert_eq!(
            pass.changed,
            vec![
                (0, CpuWords { ns: 8, vtime: 0 }),
                (1, CpuWords { ns: 12, vtime: 1 })
            ]
        );
        assert_eq!(pass.last_interrupt_vtime, 0);
        assert_eq!(pass.vtime, 2);
        state.vtime_published(20);
        let pass = state.apply(&[25, 12], 0, 30).unwrap();
        assert_eq!(pass.changed, vec![(0, CpuWords { ns: 25, vtime: 2 })]);
        assert_eq!(pass.last_interrupt_vtime, 1);
    }

    #[test]
    fn vtime_never_decreases_for_a_cpu() {
        let mut state = State::new(vec![CpuWords { ns: 50, vtime: 7 }], 9);
        let pass = state.apply(&[60], 0, 100).unwrap();
        assert_eq!(pass.changed, vec![(0, CpuWords { ns: 60, vtime: 9 })]);
        assert_eq!(pass.vtime, 10);
    }

    #[test]
    fn restart_keeps_newer_file_words() {
        let mut state = State::new(vec![CpuWords { ns: 500, vtime: 3 }; 2], 4);
        let pass = state.apply(&[0, 600], 0, 1000).unwrap();
        assert_eq!(pass.changed, vec![(1, CpuWords { ns: 600, vtime: 4 })]);
        assert_eq!(pass.last_interrupt_ns, 500);
        assert_eq!(pass.last_interrupt_vtime, 3);
    }

    #[test]
    fn history_is_bounded_and_old_entries_stay_conservative() {
        let mut state = fresh(1);
        for t in 1..=200u64 {
            state.apply(&[t * 10], 0, t * 10).unwrap();
            state.vtime_published(t * 10 + 1);
        }
        assert_eq!(state.history.len(), VTIME_HISTORY);
        // Entered at 2005, after vtime 200 was published at 2001.
        let pass = state.apply(&[2005], 0, 2010).unwrap();
        assert_eq!(pass.changed[0].1.vtime, 200);
    }

    /// A small deterministic generator: the property test must be repeatable.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Random and mutated datagrams through the real decoder and validator:
    /// never a panic, and whatever is accepted never publishes a timestamp
    /// in the future, for a CPU out of range, or lower than before.
    #[test]
    fn hostile_messages_never_publish_anything_invalid() {
        use barrierd_privsep::ipc::{decode, encode, HelperMessage, MAX_MESSAGE_LEN};

        const INPUTS: usize = 200_000;
        let ncpu = 4;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut state = fresh(ncpu);
        let mut published = vec![0u64; ncpu];
        let mut now = 1_000_000u64;
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let (mut accepted, mut decoded) = (0, 0);
        for _ in 0..INPUTS {
            now += rng.below(1000);
            // A plausible snapshot, then damage it (or not), or pure noise.
            let mut bytes = if rng.below(4) == 0 {
                (0..rng.below(64))
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<u8>>()
            } else {
                let len = if rng.below(8) == 0 {
                    rng.below(8) as usize
                } else {
                    ncpu
                };
                let last_ns: Vec<u64> = (0..len)
                    .map(|_| now.saturating_sub(rng.below(5000)) + rng.below(3))
                    .collect();
                encode(
                    &HelperMessage::Snapshot {
                        last_ns: last_ns.into(),
                        demand_ns: now.saturating_sub(rng.below(5000)) + rng.below(3),
                    },
                    &mut buf,
                )
                .unwrap()
                .to_vec()
            };
            for _ in 0..rng.below(3) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len() as u64) as usize;
                match rng.below(3) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.next() as u8),
                }
            }
            let Ok(HelperMessage::Snapshot { last_ns, demand_ns }) = decode(&bytes) else {
                continue;
            };
            decoded += 1;
            let Ok(pass) = state.apply(&last_ns, demand_ns, now) else {
                continue;
            };
            accepted += 1;
            for (cpu, words) in pass.changed {
                assert!(cpu < ncpu, "CPU {cpu} out of range");
                assert!(words.ns <= now, "future timestamp {} > {now}", words.ns);
                assert!(
                    words.ns > published[cpu],
                    "CPU {cpu} went from {} to {}",
                    published[cpu],
                    words.ns
                );
                published[cpu] = words.ns;
            }
            assert_eq!(pass.last_interrupt_ns, *published.iter().min().unwrap());
            state.vtime_published(now);
        }
        eprintln!("{INPUTS} inputs: {decoded} decoded as snapshots, {accepted} accepted");
        // The generator must exercise both sides of every check.
        assert!(
            decoded > INPUTS / 4 && accepted > 1000 && accepted < decoded,
            "{decoded} decoded, {accepted} accepted"
        );
    }
}
