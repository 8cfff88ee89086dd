//! The barrier methods compared, and the loop that times them.

use std::ops::RangeInclusive;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use barrierd_client::{Barrierd, WaitError, DEFAULT_TIMEOUT};
use serde::Serialize;

use crate::sys::{Membarrier, MprotectPage, SysError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `Barrierd::heavy_barrier`: fence, T = CLOCK_MONOTONIC, wait until
    /// `last_interrupt_ns > T`, fence.
    BarrierdNs,
    /// V = `Barrierd::begin_vtime` (fence, then vtime), wait until
    /// `last_interrupt_vtime > V`, fence.
    BarrierdVtime,
    MembarrierGlobal,
    MembarrierPrivateExpedited,
    Mprotect,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::BarrierdNs,
        Method::BarrierdVtime,
        Method::MembarrierGlobal,
        Method::MembarrierPrivateExpedited,
        Method::Mprotect,
    ];

    /// Short name, for the table and the plots' legends.
    pub fn name(self) -> &'static str {
        match self {
            Method::BarrierdNs => "barrierd (ns)",
            Method::BarrierdVtime => "barrierd (vtime)",
            Method::MembarrierGlobal => "membarrier GLOBAL",
            Method::MembarrierPrivateExpedited => "membarrier PRIV_EXP",
            Method::Mprotect => "mprotect IPI",
        }
    }

    /// What one barrier is, for the JSON file.
    pub fn description(self) -> &'static str {
        match self {
            Method::BarrierdNs => "Barrierd::heavy_barrier: SeqCst fence, T = CLOCK_MONOTONIC, futex-wait until last_interrupt_ns > T, acquire fence",
            Method::BarrierdVtime => "V = Barrierd::begin_vtime (SeqCst fence, vtime), Barrierd::wait_vtime until last_interrupt_vtime > V, acquire fence",
            Method::MembarrierGlobal => "membarrier(MEMBARRIER_CMD_GLOBAL)",
            Method::MembarrierPrivateExpedited => "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), registered once before",
            Method::Mprotect => "write a private anonymous page, mprotect it PROT_READ (TLB shootdown IPIs), then PROT_READ|PROT_WRITE",
        }
    }

    /// Whether it only reaches the CPUs running this process's threads
    /// (so that it needs other threads of ours on other CPUs to mean much).
    pub fn process_private(self) -> bool {
        matches!(self, Method::MembarrierPrivateExpedited | Method::Mprotect)
    }

    pub fn is_barrierd(self) -> bool {
        matches!(self, Method::BarrierdNs | Method::BarrierdVtime)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("{method}: {source}", method = method.name())]
    Wait {
        method: Method,
        #[source]
        source: WaitError,
    },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("not available here: {0}")]
    Unavailable(String),
}

/// Everything needed to issue each method's barriers, set up once.
pub struct Barriers<'a> {
    barrierd: &'a Barrierd,
    global: Result<Membarrier, SysError>,
    expedited: Result<Membarrier, SysError>,
    page: Result<MprotectPage, SysError>,
    timeout: Duration,
}

/// How one barrier attempt ended.
enum Outcome {
    Done,
    TimedOut,
}

impl<'a> Barriers<'a> {
    /// Registers for and checks what the comparison methods need; a method
    /// this fails for is [`Barriers::unavailable`].
    pub fn new(barrierd: &'a Barrierd) -> Barriers<'a> {
        Barriers {
            barrierd,
            global: Membarrier::global(),
            expedited: Membarrier::private_expedited(),
            page: MprotectPage::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Why `method` cannot be measured here, if it cannot.
    pub fn unavailable(&self, method: Method) -> Option<&SysError> {
        match method {
            Method::BarrierdNs | Method::BarrierdVtime => None,
            Method::MembarrierGlobal => self.global.as_ref().err(),
            Method::MembarrierPrivateExpedited => self.expedited.as_ref().err(),
            Method::Mprotect => self.page.as_ref().err(),
        }
    }

    fn issue(&self, method: Method) -> Result<Outcome, MethodError> {
        let waited = match method {
            Method::BarrierdNs => self.barrierd.heavy_barrier(self.timeout),
            Method::BarrierdVtime => {
                let v = self.barrierd.begin_vtime();
                let result = self.barrierd.wait_vtime(v, self.timeout).map(drop);
                fence(Ordering::Acquire);
                result
            }
            Method::MembarrierGlobal => return Self::sys(&self.global, Membarrier::barrier),
            Method::MembarrierPrivateExpedited => {
                return Self::sys(&self.expedited, Membarrier::barrier)
            }
            Method::Mprotect => return Self::sys(&self.page, MprotectPage::barrier),
        };
        match waited {
            Ok(()) => Ok(Outcome::Done),
            Err(WaitError::TimedOut { .. }) => Ok(Outcome::TimedOut),
            Err(source) => Err(MethodError::Wait { method, source }),
        }
    }

    fn sys<T>(
        set_up: &Result<T, SysError>,
        barrier: fn(&T) -> Result<(), SysError>,
    ) -> Result<Outcome, MethodError> {
        match set_up {
            Ok(t) => barrier(t).map(|()| Outcome::Done).map_err(MethodError::Sys),
            Err(error) => Err(MethodError::Unavailable(error.to_string())),
        }
    }

    /// Issues `warmup` untimed then `iterations` timed barriers of `method`
    /// back to back, each after a pseudo-random pause in `gaps`
    /// (so that barriers do not start in step with the scheduler tick).
    /// Returns each completed barrier's latency in ns and the number that
    /// timed out (those have no latency).
    pub fn measure(
        &self,
        method: Method,
        warmup: usize,
        iterations: usize,
        gaps: &RangeInclusive<Duration>,
        rng: &mut Rng,
    ) -> Result<(Vec<u64>, usize), MethodError> {
        let ns = |d: &Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let (min_gap_ns, max_gap_ns) = (ns(gaps.start()), ns(gaps.end()));
        let mut samples = Vec::with_capacity(iterations);
        let mut timeouts = 0;
        for i in 0..warmup + iterations {
            let gap = min_gap_ns + rng.below((max_gap_ns - min_gap_ns).saturating_add(1));
            if gap > 0 {
                std::thread::sleep(Duration::from_nanos(gap));
            }
            let start = Instant::now();
            let outcome = self.issue(method)?;
            let latency = start.elapsed();
            if i < warmup {
                continue;
            }
            match outcome {
                Outcome::Done => {
                    samples.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX))
                }
                Outcome::TimedOut => timeouts += 1,
            }
        }
        Ok((samples, timeouts))
    }
}

/// splitmix64: a tiny deterministic generator, so that runs pause alike.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            // Multiply-shift: no modulo bias worth speaking of.
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..1000).map(|_| a.below(1_000_001)).collect();
        let ys: Vec<u64> = (0..1000).map(|_| b.below(1_000_001)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x <= 1_000_000));
        // Spread over the range, not stuck in a corner.
        assert!(xs.iter().any(|&x| x < 100_000));
        assert!(xs.iter().any(|&x| x > 900_000));
        assert_eq!(Rng::new(1).below(0), 0);
        assert_eq!(Rng::new(1).below(1), 0);
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs for seed 0, as published with the algorithm.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn names_are_distinct() {
        for (i, a) in Method::ALL.iter().enumerate() {
            for b in &Method::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
