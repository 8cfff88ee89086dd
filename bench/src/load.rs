//! Busy load: one thread per chosen CPU, pinned there, spinning on pure
//! user-mode arithmetic. No system call while it spins (the stop flag is a
//! relaxed load of shared memory), so the only kernel entries on a loaded CPU
//! are interrupts (the scheduler tick) and preemption.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading this process's CPU affinity: {0}")]
    Affinity(#[source] nix::Error),
    #[error("pinning a load thread to CPU {cpu}: {source}")]
    Pin {
        cpu: usize,
        #[source]
        source: nix::Error,
    },
    #[error("starting a load thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("load threads did not all start spinning within {0:?}")]
    Start(Duration),
}

/// The CPUs this process may run on (normally every online CPU), ascending.
pub fn usable_cpus() -> Result<Vec<usize>, LoadError> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(LoadError::Affinity)?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Spinning threads; they stop and are joined on drop.
pub struct BusyLoad {
    cpus: Vec<usize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl BusyLoad {
    /// Starts one spinner pinned to each of `cpus` and returns once all of
    /// them are spinning on their CPU.
    pub fn start(cpus: &[usize]) -> Result<BusyLoad, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = Arc::new(AtomicUsize::new(0));
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        let mut load = BusyLoad {
            cpus: cpus.to_vec(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for &cpu in cpus {
            let stop = stop.clone();
            let spinning = spinning.clone();
            let pinned_tx = pinned_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("busy-cpu{cpu}"))
                .spawn(move || {
                    let mut set = CpuSet::new();
                    let pinned = set
                        .set(cpu)
                        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
                    let failed = pinned.is_err();
                    let _ = pinned_tx.send(pinned.map_err(|source| LoadError::Pin { cpu, source }));
                    drop(pinned_tx);
                    if failed {
                        return 0;
                    }
                    spinning.fetch_add(1, Ordering::SeqCst);
                    spin(&stop)
                })
                .map_err(LoadError::Spawn)?;
            load.threads.push(thread);
        }
        drop(pinned_tx);
        // Dropping `load` on an error path stops the threads already started.
        for result in pinned_rx {
            result?;
        }
        let timeout = Duration::from_secs(10);
        let deadline = Instant::now() + timeout;
        while spinning.load(Ordering::SeqCst) < cpus.len() {
            if Instant::now() > deadline {
                return Err(LoadError::Start(timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(load)
    }

    /// The CPUs that have a spinner.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }
}

/// Pure user-mode arithmetic until `stop` is set; returns the result so that
/// the work cannot be optimized away.
fn spin(stop: &AtomicBool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1024 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    x
}

impl Drop for BusyLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_cpus_are_not_empty() {
        let cpus = usable_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn starts_and_stops_on_a_cpu() {
        let cpus = usable_cpus().unwrap();
        let load = BusyLoad::start(&cpus[..1]).unwrap();
        assert_eq!(load.cpus(), &cpus[..1]);
        drop(load);
    }

    #[test]
    fn a_cpu_that_does_not_exist_is_an_error() {
        assert!(matches!(
            BusyLoad::start(&[CpuSet::count() + 1]),
            Err(LoadError::Pin { .. })
        ));
    }
}
