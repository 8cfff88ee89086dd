//! Blocking waits on the file's words, written against [`Words`] so that the
//! logic is tested on an in-memory fake as well as run on the real mapping.
//!
//! A wait loads the word, returns if it is past the target, and otherwise
//! sleeps on the word's futex (its low 32-bit half) until the daemon wakes it
//! or a slice of at most [`PROBE_INTERVAL`] ends. Slices are bounded for two
//! reasons: the futex compares only 32 bits, so a change by a multiple of 2^32
//! between our load and our sleep is not seen and its wake-up is lost; and a
//! daemon killed with SIGKILL leaves the state word at RUNNING and wakes
//! nobody, so its death is only noticed by probing its lock, which is a
//! syscall and is done once per slice, never on the fast path.
//!
//! Every check also compares the file's boot id with the one read when the
//! file was opened (two loads, no syscall), before trusting any word: a file
//! of another boot holds times of another clock.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::layout::{self, word, BootId};

/// Longest sleep between two checks of the daemon's lock, hence the longest
/// a wait can miss a SIGKILLed daemon or a wake-up lost to wrap-around.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// What a wait needs from the file and the system.
pub(crate) trait Words {
    /// The file, for error messages.
    fn path(&self) -> &Path;
    /// Acquire load of word `index`.
    fn load(&self, index: usize) -> u64;
    /// Sleeps while the low half of word `index` is `expected`, at most
    /// `timeout_ns`; may return early for any reason.
    fn futex_wait(&self, index: usize, expected: u32, timeout_ns: u64);
    /// Whether a daemon holds the file's liveness lock (a syscall).
    fn lock_held(&self) -> bool;
    /// CLOCK_MONOTONIC ns.
    fn now_ns(&self) -> u64;
    /// The boot this process runs in, read once when the file was opened.
    fn boot(&self) -> BootId;
}

/// Whether the file was written during the boot `words` was opened in. A
/// daemon that adopts another boot's file resets its words before it stores
/// this boot's id, so a reader that sees this boot's id and then loads
/// another word (acquire loads) sees them reset or newer.
pub(crate) fn same_boot(words: &(impl Words + ?Sized)) -> bool {
    file_boot(words) == words.boot()
}

/// The boot recorded in the file's words.
pub(crate) fn file_boot(words: &(impl Words + ?Sized)) -> BootId {
    BootId::from_words([words.load(word::BOOT_ID_0), words.load(word::BOOT_ID_1)])
}

/// What the file says about its daemon, from its boot id, its `state` word
/// and the daemon's lock on the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// State RUNNING and the lock is held: timestamps are being published.
    Running,
    /// A daemon holds the lock but has not published yet (or is stopping).
    Starting,
    /// State STOPPED and nobody holds the lock: stopped cleanly, or never
    /// started on this file.
    Stopped,
    /// State RUNNING but nobody holds the lock: the daemon was killed or
    /// crashed without marking the file stopped.
    Dead,
    /// The file was written during another boot (or by a daemon that did
    /// not record boots), and no daemon has started on it since: whatever
    /// its other words say, its times are another clock's.
    OtherBoot,
}

impl Liveness {
    pub(crate) fn of(words: &(impl Words + ?Sized)) -> Liveness {
        if !same_boot(words) {
            return Liveness::OtherBoot;
        }
        let running = words.load(word::STATE) == layout::STATE_RUNNING;
        match (running, words.lock_held()) {
            (true, true) => Liveness::Running,
            (false, true) => Liveness::Starting,
            (false, false) => Liveness::Stopped,
            (true, false) => Liveness::Dead,
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Running => "running",
            Liveness::Starting => "starting up or shutting down",
            Liveness::Stopped => "stopped",
            Liveness::Dead => {
                "killed or crashed: the file says running, but no daemon holds its lock"
            }
            Liveness::OtherBoot => {
                "the file was written during another boot, and no daemon has started on it since"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("{path}: daemon not running ({liveness}): start `barrierd {path}` as root, or use the membarrier fallback", path = path.display())]
    NotRunning { path: PathBuf, liveness: Liveness },
    #[error("{path}: timed out after {timeout:?} with the daemon running: a CPU did not enter the kernel in time, or the daemon is stuck; retry with a longer timeout or use the membarrier fallback", path = path.display())]
    TimedOut { path: PathBuf, timeout: Duration },
}

/// Waits until word `index` exceeds `target` and returns the value seen.
///
/// Never returns `Ok` before the condition holds. A value already past the
/// target is returned even if the daemon has since stopped: it is a fact
/// about the past that stays true, if the file is of this boot (checked
/// before every load of the word). Otherwise fails when the daemon is seen
/// not running (at once when it marked the file stopped or the file is of
/// another boot, within [`PROBE_INTERVAL`] when it died) or when `timeout`
/// has passed; no sleep extends past the deadline.
pub(crate) fn wait_above(
    words: &(impl Words + ?Sized),
    index: usize,
    target: u64,
    timeout: Duration,
) -> Result<u64, WaitError> {
    let interval = duration_ns(PROBE_INTERVAL);
    let start = words.now_ns();
    let deadline = start.saturating_add(duration_ns(timeout));
    let mut next_probe = start.saturating_add(interval);
    loop {
        if !same_boot(words) {
            return Err(not_running(words, Liveness::OtherBoot));
        }
        let value = words.load(index);
        if value > target {
            return Ok(value);
        }
        if words.load(word::STATE) != layout::STATE_RUNNING {
            return Err(not_running(words, Liveness::of(words)));
        }
        let now = words.now_ns();
        if now >= next_probe {
            if !words.lock_held() {
                return Err(not_running(words, Liveness::Dead));
            }
            next_probe = now.saturating_add(interval);
        }
        if now >= deadline {
            return Err(WaitError::TimedOut {
                path: words.path().to_owned(),
                timeout,
            });
        }
        // Truncation is the point: the futex word is the low half.
        words.futex_wait(index, value as u32, deadline.min(next_probe) - now);
    }
}

fn not_running(words: &(impl Words + ?Sized), liveness: Liveness) -> WaitError {
    // The state word may read STOPPED while the exiting daemon still holds
    // its lock; it is not coming back, so do not call that "starting".
    let liveness = match liveness {
        Liveness::Running | Liveness::Starting => Liveness::Stopped,
        other => other,
    };
    WaitError::NotRunning {
        path: words.path().to_owned(),
        liveness,
    }
}

pub(crate) fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use super::*;

    const INTERVAL: u64 = PROBE_INTERVAL.as_nanos() as u64;
    const WRAP: u64 = 1 << 32;
    const WORDS: usize = 16;
    /// The boot the fake runs in; any other id in the file is another boot.
    const BOOT: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    /// A change the fake daemon makes at time `at`.
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Store {
            index: usize,
            value: u64,
        },
        /// Marks the file stopped.
        Stop,
        /// SIGKILL: the lock goes, the state word stays, nobody is woken.
        Kill,
    }

    #[derive(Debug, Clone, Copy)]
    struct Event {
        at: u64,
        change: Change,
        /// Whether the daemon wakes the word's waiters after the change (a
        /// real daemon always does; `false` stands for a lost wake-up).
        wake: bool,
    }

    /// A file and daemon in memory, on a simulated clock that only moves
    /// while the waiter sleeps. Events become visible when the waiter next
    /// calls `futex_wait`: those due by then land between its loads and its
    /// sleep (the racy window, so their wake-ups are lost), later ones during
    /// its sleep.
    struct Fake {
        words: RefCell<[u64; WORDS]>,
        lock: Cell<bool>,
        now: Cell<u64>,
        events: RefCell<VecDeque<Event>>,
        /// (time of the call, timeout) of each futex wait.
        sleeps: RefCell<Vec<(u64, u64)>>,
        probes: Cell<usize>,
    }

    impl Fake {
        fn new(start: u64, value: u64, mut events: Vec<Event>) -> Self {
            events.sort_by_key(|e| e.at);
            let mut words = [0; WORDS];
            words[word::STATE] = layout::STATE_RUNNING;
            words[word::LAST_INTERRUPT_NS] = value;
            [words[word::BOOT_ID_0], words[word::BOOT_ID_1]] = BOOT;
            Self {
                words: RefCell::new(words),
                lock: Cell::new(true),
                now: Cell::new(start),
                events: RefCell::new(events.into()),
                sleeps: RefCell::new(Vec::new()),
                probes: Cell::new(0),
            }
        }

        /// Applies the next event if due by `until`; returns whether it
        /// woke waiters of `index`.
        fn apply_next(&self, until: u64, index: usize) -> Option<(u64, bool)> {
            let event = {
                let mut events = self.events.borrow_mut();
                if events.front()?.at > until {
                    return None;
                }
                events.pop_front()?
            };
            let mut words = self.words.borrow_mut();
            let woken = match event.change {
                Change::Store { index: i, value } => {
                    words[i] = value;
                    event.wake && i == index
                }
                Change::Stop => {
                    words[word::STATE] = layout::STATE_STOPPED;
                    self.lock.set(false);
                    event.wake
                }
                Change::Kill => {
                    self.lock.set(false);
                    false
                }
            };
            Some((event.at, woken))
        }
    }

    impl Words for Fake {
        fn path(&self) -> &Path {
            Path::new("/fake")
        }

        fn load(&self, index: usize) -> u64 {
            self.words.borrow()[index]
        }

        fn futex_wait(&self, index: usize, expected: u32, timeout_ns: u64) {
            let now = self.now.get();
            self.sleeps.borrow_mut().push((now, timeout_ns));
            assert!(self.sleeps.borrow().len() < 1_000_000, "wait does not end");
            while self.apply_next(now, index).is_some() {}
            if self.words.borrow()[index] as u32 != expected {
                return;
            }
            let until = now + timeout_ns;
            while let Some((at, woken)) = self.apply_next(until, index) {
                if woken {
                    self.now.set(at.max(now));
                    return;
                }
            }
            self.now.set(until);
        }

        fn lock_held(&self) -> bool {
            self.probes.set(self.probes.get() + 1);
            self.lock.get()
        }

        fn now_ns(&self) -> u64 {
            self.now.get()
        }

        fn boot(&self) -> BootId {
            BootId::from_words(BOOT)
        }
    }

    fn store(at: u64, value: u64) -> Event {
        Event {
            at,
            change: Change::Store {
                index: word::LAST_INTERRUPT_NS,
                value,
            },
            wake: true,
        }
    }

    fn wait(fake: &Fake, target: u64, timeout: Duration) -> Result<u64, WaitError> {
        wait_above(fake, word::LAST_INTERRUPT_NS, target, timeout)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn already_past_returns_without_sleeping_or_probing() {
        let fake = Fake::new(1_000, 500, vec![]);
        assert_eq!(wait(&fake, 499, SECOND), Ok(500));
        assert!(fake.sleeps.borrow().is_empty());
        assert_eq!(fake.probes.get(), 0);
    }

    #[test]
    fn equal_is_not_past() {
        let fake = Fake::new(1_000, 500, vec![store(2_000, 500), store(3_000, 501)]);
        assert_eq!(wait(&fake, 500, SECOND), Ok(501));
        assert_eq!(fake.now.get(), 3_000);
    }

    #[test]
    fn wakes_on_the_change_that_passes_the_target() {
        let fake = Fake::new(0, 10, vec![store(50, 20), store(70, 30), store(90, 40)]);
        assert_eq!(wait(&fake, 25, SECOND), Ok(30));
        assert_eq!(fake.now.get(), 70);
    }

    #[test]
    fn survives_a_change_by_a_multiple_of_two_to_the_32_with_its_wake_up_lost() {
        // The change lands between the load and the sleep: the futex word
        // (low half) still matches, so the sleep is not cut short and the
        // wake-up went to nobody. The slice ends, the value is re-read.
        let fake = Fake::new(0, 7, vec![store(0, 7 + 3 * WRAP)]);
        assert_eq!(wait(&fake, 7, Duration::from_secs(3600)), Ok(7 + 3 * WRAP));
        assert_eq!(fake.now.get(), INTERVAL);
    }

    #[test]
    fn times_out_at_the_deadline_and_not_later() {
        let timeout = Duration::from_millis(250);
        let fake = Fake::new(5, 10, vec![store(1_000, 11)]);
        assert_eq!(
            wait(&fake, 20, timeout),
            Err(WaitError::TimedOut {
                path: "/fake".into(),
                timeout
            })
        );
        assert_eq!(fake.now.get(), 5 + duration_ns(timeout));
        for &(at, sleep) in fake.sleeps.borrow().iter() {
            assert!(sleep <= INTERVAL && at + sleep <= 5 + duration_ns(timeout));
        }
    }

    #[test]
    fn zero_timeout_is_a_non_blocking_check() {
        let fake = Fake::new(0, 10, vec![]);
        assert!(matches!(
            wait(&fake, 10, Duration::ZERO),
            Err(WaitError::TimedOut { .. })
        ));
        assert!(fake.sleeps.borrow().is_empty());
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let fake = Fake::new(u64::MAX - 10, 10, vec![store(u64::MAX - 5, 11)]);
        assert_eq!(wait(&fake, 10, Duration::MAX), Ok(11));
    }

    #[test]
    fn reports_a_stopped_daemon_when_woken() {
        let stop = Event {
            at: 30_000_000,
            change: Change::Stop,
            wake: true,
        };
        let fake = Fake::new(0, 10, vec![stop]);
        assert_eq!(
            wait(&fake, 10, Duration::from_secs(3600)),
            Err(WaitError::NotRunning {
                path: "/fake".into(),
                liveness: Liveness::Stopped
            })
        );
        assert_eq!(fake.now.get(), 30_000_000);
    }

    #[test]
    fn reports_a_stopped_daemon_at_once_when_already_stopped() {
        let fake = Fake::new(0, 10, vec![]);
        fake.words.borrow_mut()[word::STATE] = layout::STATE_STOPPED;
        fake.lock.set(false);
        assert!(matches!(
            wait(&fake, 10, SECOND),
            Err(WaitError::NotRunning {
                liveness: Liveness::Stopped,
                ..
            })
        ));
        assert!(fake.sleeps.borrow().is_empty());
    }

    #[test]
    fn stopping_daemon_still_holding_its_lock_is_reported_stopped() {
        let fake = Fake::new(0, 10, vec![]);
        fake.words.borrow_mut()[word::STATE] = layout::STATE_STOPPED;
        assert!(matches!(
            wait(&fake, 10, SECOND),
            Err(WaitError::NotRunning {
                liveness: Liveness::Stopped,
                ..
            })
        ));
    }

    #[test]
    fn reports_a_killed_daemon_within_one_probe_interval() {
        let kill = Event {
            at: 1_000,
            change: Change::Kill,
            wake: false,
        };
        let fake = Fake::new(0, 10, vec![kill]);
        assert_eq!(
            wait(&fake, 10, Duration::from_secs(3600)),
            Err(WaitError::NotRunning {
                path: "/fake".into(),
                liveness: Liveness::Dead
            })
        );
        assert!(fake.now.get() <= 1_000 + INTERVAL);
    }

    #[test]
    fn probes_even_when_woken_often() {
        // A lagging CPU keeps the minimum below the target while it moves:
        // every sleep is cut short, yet the lock is still probed on time.
        let events = (1..10_000u64)
            .map(|i| store(i * 1_000_000, 10 + i))
            .chain([Event {
                at: 5_000_000,
                change: Change::Kill,
                wake: false,
            }])
            .collect();
        let fake = Fake::new(0, 10, events);
        assert!(matches!(
            wait(&fake, 1 << 40, Duration::from_secs(3600)),
            Err(WaitError::NotRunning {
                liveness: Liveness::Dead,
                ..
            })
        ));
        assert!(fake.now.get() <= 5_000_000 + INTERVAL);
        assert!(fake.probes.get() <= 2);
    }

    #[test]
    fn liveness_combines_state_and_lock() {
        let fake = Fake::new(0, 0, vec![]);
        let set = |state, lock| {
            fake.words.borrow_mut()[word::STATE] = state;
            fake.lock.set(lock);
            Liveness::of(&fake)
        };
        assert_eq!(set(layout::STATE_RUNNING, true), Liveness::Running);
        assert_eq!(set(layout::STATE_STOPPED, true), Liveness::Starting);
        assert_eq!(set(layout::STATE_STOPPED, false), Liveness::Stopped);
        assert_eq!(set(layout::STATE_RUNNING, false), Liveness::Dead);
        assert_eq!(set(42, false), Liveness::Stopped);
        fake.words.borrow_mut()[word::BOOT_ID_1] = 0;
        for (state, lock) in [
            (layout::STATE_RUNNING, true),
            (layout::STATE_STOPPED, true),
            (layout::STATE_STOPPED, false),
            (layout::STATE_RUNNING, false),
        ] {
            assert_eq!(set(state, lock), Liveness::OtherBoot);
        }
    }

    #[test]
    fn a_file_of_another_boot_is_not_running_whatever_its_words_say() {
        for boot in [[BOOT[0] ^ 0xff, BOOT[1]], [BOOT[0], BOOT[1] ^ 1], [0, 0]] {
            let fake = Fake::new(0, u64::MAX, vec![]);
            {
                let mut words = fake.words.borrow_mut();
                [words[word::BOOT_ID_0], words[word::BOOT_ID_1]] = boot;
            }
            assert_eq!(Liveness::of(&fake), Liveness::OtherBoot, "{boot:x?}");
            assert_eq!(
                wait(&fake, 10, SECOND),
                Err(WaitError::NotRunning {
                    path: "/fake".into(),
                    liveness: Liveness::OtherBoot
                }),
                "{boot:x?}"
            );
            assert!(fake.sleeps.borrow().is_empty());
        }
    }

    #[test]
    fn a_value_stored_after_the_boot_id_changed_is_not_accepted() {
        let other_boot = Event {
            at: 1_000,
            change: Change::Store {
                index: word::BOOT_ID_0,
                value: !BOOT[0],
            },
            wake: false,
        };
        let fake = Fake::new(0, 10, vec![other_boot, store(2_000, u64::MAX)]);
        assert!(matches!(
            wait(&fake, 10, Duration::from_secs(3600)),
            Err(WaitError::NotRunning {
                liveness: Liveness::OtherBoot,
                ..
            })
        ));
        assert_eq!(fake.now.get(), 2_000);
    }

    /// xorshift64*: deterministic, so a failing seed reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random daemons: monotonic values moving by small steps or by
    /// multiples of 2^32, wake-ups sometimes lost, stops, kills, deadlines.
    /// Whatever happens, the wait must be right and prompt.
    #[test]
    fn random_histories() {
        for seed in 1..=3_000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let start = rng.below(1 << 40);
            let initial = rng.below(1 << 36);
            let target = initial + rng.below(1 << 34);
            let timeout = Duration::from_nanos(rng.below(3 * INTERVAL));
            let deadline = start + duration_ns(timeout);

            let mut events = Vec::new();
            let (mut at, mut value) = (start, initial);
            for _ in 0..rng.below(40) {
                at += rng.below(INTERVAL / 4);
                value += match rng.below(4) {
                    0 => WRAP * (1 + rng.below(3)),
                    1 => rng.below(1 << 33),
                    _ => rng.below(1 << 20),
                };
                events.push(Event {
                    at,
                    change: Change::Store {
                        index: word::LAST_INTERRUPT_NS,
                        value,
                    },
                    wake: rng.below(4) != 0,
                });
            }
            let mut stopped_at = None;
            let mut killed_at = None;
            match rng.below(4) {
                0 => {
                    let at = start + rng.below(2 * INTERVAL);
                    stopped_at = Some(at);
                    events.push(Event {
                        at,
                        change: Change::Stop,
                        wake: rng.below(2) == 0,
                    });
                }
                1 => {
                    let at = start + rng.below(2 * INTERVAL);
                    killed_at = Some(at);
                    events.push(Event {
                        at,
                        change: Change::Kill,
                        wake: false,
                    });
                }
                _ => {}
            }
            // When the wait could first have ended, whatever the wake-ups.
            let passed_at = events
                .iter()
                .find(|e| matches!(e.change, Change::Store { value, .. } if value > target))
                .map(|e| e.at);
            let resolved_at = [passed_at, stopped_at, killed_at, Some(deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap();

            let fake = Fake::new(start, initial, events);
            let result = wait(&fake, target, timeout);
            let now = fake.now.get();
            let context = format!("seed {seed}: {result:?} at {now}");
            match result {
                Ok(seen) => {
                    assert!(seen > target, "{context}");
                    assert_eq!(seen, fake.load(word::LAST_INTERRUPT_NS), "{context}");
                }
                Err(WaitError::TimedOut { .. }) => {
                    assert_eq!(now, deadline, "{context}");
                    assert!(fake.load(word::LAST_INTERRUPT_NS) <= target, "{context}");
                }
                Err(WaitError::NotRunning { liveness, .. }) => {
                    assert!(fake.load(word::LAST_INTERRUPT_NS) <= target, "{context}");
                    match liveness {
                        Liveness::Stopped => assert!(stopped_at.is_some_and(|at| at <= now)),
                        Liveness::Dead => assert!(killed_at.is_some_and(|at| at <= now)),
                        _ => panic!("{context}"),
                    }
                }
            }
            assert!(now <= deadline, "{context}: slept past the deadline");
            assert!(now <= resolved_at + INTERVAL, "{context}: late");
            for &(at, sleep) in fake.sleeps.borrow().iter() {
                assert!(sleep > 0 && sleep <= INTERVAL, "{context}");
                assert!(at + sleep <= deadline, "{context}");
            }
        }
    }
}
