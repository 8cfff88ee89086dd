//! Are barrierd's two clocks ordered across CPUs? BPF stamps kernel entries
//! with `bpf_ktime_get_ns()` (the kernel's NMI-safe CLOCK_MONOTONIC
//! accessor); clients take their start time T from the vDSO's
//! CLOCK_MONOTONIC; a barrier is complete when a stamp is above T. That is
//! sound only if a reading of one clock that causally follows a reading of
//! the other, on another CPU, is never smaller.
//!
//! For every ordered pair of online CPUs, two pinned threads take turns: one
//! reads the vDSO clock and hands the value over through memory; the other,
//! once it sees it, reads the BPF clock (a `SEC("syscall")` program run with
//! BPF_PROG_RUN), then hands that back, and the first reads the vDSO clock
//! again. Each gap (later reading minus earlier) must be >= 0; the smallest
//! gap in each direction bounds how far apart the two clocks can be. Prints
//! one line per pair and exits 1 on any inversion. Needs root (BPF).
#![allow(unsafe_code)] // only in the generated skeleton and its .bss read

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/ktime.skel.rs"));
}

/// The smallest gaps seen between causally ordered readings, in ns.
#[derive(Debug)]
struct Gaps {
    vdso_then_bpf: i64,
    bpf_then_vdso: i64,
    inversions: u64,
}

fn main() -> anyhow::Result<()> {
    let rounds = match std::env::args().nth(1) {
        Some(n) => n.parse().context("usage: clock-order [ROUNDS]")?,
        None => 200_000,
    };
    let results = measure(rounds)?;
    let mut inversions = 0;
    for ((vdso_cpu, bpf_cpu), gaps) in &results {
        println!(
            "vDSO on CPU {vdso_cpu}, BPF on CPU {bpf_cpu}, {rounds} rounds: smallest gap vDSO->BPF {} ns, BPF->vDSO {} ns, {} inversions",
            gaps.vdso_then_bpf, gaps.bpf_then_vdso, gaps.inversions
        );
        inversions += gaps.inversions;
    }
    if inversions > 0 {
        bail!("{inversions} inversions: the clocks are not ordered across CPUs here");
    }
    Ok(())
}

/// Every ordered pair of online CPUs (none on a single CPU).
fn measure(rounds: u64) -> anyhow::Result<Vec<((usize, usize), Gaps)>> {
    let online = barrierd_privsep::cpus::online_cpus().context("reading the online CPUs")?;
    let mut storage = MaybeUninit::uninit();
    let open = skel::KtimeSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    let mut skel = open
        .load()
        .context("loading the clock-reading program (needs root)")?;
    let bss = skel
        .maps
        .bss_data
        .take()
        .context("the BPF program's .bss is not mapped")?;
    let ktime_ns: *const u64 = &bss.ktime_ns;
    let program = &skel.progs.read_ktime;
    let bpf_clock = || -> anyhow::Result<u64> {
        program
            .test_run(libbpf_rs::ProgramInput::default())
            .context("running the clock-reading program")?;
        // SAFETY: points into the .bss mapping, alive as long as `skel`;
        // the program stored it, on this thread, during the call above.
        Ok(unsafe { ktime_ns.read_volatile() })
    };
    let mut results = Vec::new();
    for &vdso_cpu in &online {
        for &bpf_cpu in online.iter().filter(|&&c| c != vdso_cpu) {
            let gaps = pair(vdso_cpu, bpf_cpu, rounds, &bpf_clock)?;
            results.push(((vdso_cpu, bpf_cpu), gaps));
        }
    }
    Ok(results)
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to CPU {cpu}"))
}

/// The calling thread reads the BPF clock on `bpf_cpu`; a thread it starts
/// reads the vDSO clock on `vdso_cpu`. `turn` says whose move it is (odd:
/// the BPF side's), `value` carries the reading across.
fn pair(
    vdso_cpu: usize,
    bpf_cpu: usize,
    rounds: u64,
    bpf_clock: &dyn Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<Gaps> {
    pin(bpf_cpu)?;
    let turn = Arc::new(AtomicU64::new(0));
    let value = Arc::new(AtomicU64::new(0));
    let vdso_side = {
        let (turn, value) = (turn.clone(), value.clone());
        std::thread::spawn(move || -> anyhow::Result<(i64, u64)> {
            pin(vdso_cpu)?;
            let (mut smallest, mut inversions) = (i64::MAX, 0);
            for round in 0..rounds {
                value.store(barrierd_client::monotonic_ns(), Ordering::SeqCst);
                turn.store(2 * round + 1, Ordering::SeqCst);
                while turn.load(Ordering::SeqCst) != 2 * round + 2 {
                    std::hint::spin_loop();
                }
                let bpf = value.load(Ordering::SeqCst);
                let gap = barrierd_client::monotonic_ns() as i64 - bpf as i64;
                smallest = smallest.min(gap);
                inversions += u64::from(gap < 0);
            }
            Ok((smallest, inversions))
        })
    };
    let (mut smallest, mut inversions) = (i64::MAX, 0);
    for round in 0..rounds {
        while turn.load(Ordering::SeqCst) != 2 * round + 1 {
            std::hint::spin_loop();
        }
        let vdso = value.load(Ordering::SeqCst);
        let bpf = bpf_clock()?;
        let gap = bpf as i64 - vdso as i64;
        smallest = smallest.min(gap);
        inversions += u64::from(gap < 0);
        value.store(bpf_clock()?, Ordering::SeqCst);
        turn.store(2 * round + 2, Ordering::SeqCst);
    }
    let (back, back_inversions) = vdso_side
        .join()
        .map_err(|_| anyhow::anyhow!("the vDSO side panicked"))??;
    Ok(Gaps {
        vdso_then_bpf: smallest,
        bpf_then_vdso: back,
        inversions: inversions + back_inversions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Privileged like the daemon's tests: skips with a reason when it cannot
    /// run, fails instead under BARRIERD_REQUIRE_PRIVILEGED=1.
    #[test]
    fn the_bpf_and_vdso_clocks_are_ordered_across_cpus() {
        let reason = if !nix::unistd::geteuid().is_root() {
            Some("not running as root")
        } else if barrierd_privsep::cpus::online_cpus().unwrap().len() < 2 {
            Some("fewer than 2 online CPUs")
        } else {
            None
        };
        if let Some(reason) = reason {
            if std::env::var("BARRIERD_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
                panic!("privileged test cannot run ({reason}) and BARRIERD_REQUIRE_PRIVILEGED=1");
            }
            eprintln!("SKIPPED clock order: {reason}");
            return;
        }
        for ((vdso_cpu, bpf_cpu), gaps) in measure(20_000).unwrap() {
            eprintln!("vDSO CPU {vdso_cpu}, BPF CPU {bpf_cpu}: {gaps:?}");
            assert_eq!(gaps.inversions, 0, "{gaps:?}");
        }
    }
}
