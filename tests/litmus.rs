//! The guarantee itself, not the daemon's words: a store-buffering litmus
//! test between a light side that is only a compiler fence and a heavy side
//! that is a barrier through the running daemon.
//!
//! Two threads on two CPUs, and every round fresh words `a` and `b`, both 0:
//!
//! ```text
//! light (one CPU):  a = 1; light(); r_light = b
//! heavy (another):  b = 1; heavy();         r_heavy = a
//! ```
//!
//! A round with `r_light == r_heavy == 0` is a violation: what x86-64's store
//! buffers produce when `heavy()` is nothing (each store waits in its CPU's
//! buffer while the load after it reads the other word from the cache), and
//! what `Barrierd::heavy_barrier` promises to rule out. Every run prints one
//! line, `litmus MODE: R rounds, V violations (heavy = ...)`; the controls
//! must show violations (so the test can fail), barrierd none.
//!
//! What a round can catch. A violation needs the light load of `b` to run
//! before the heavy store of `b` is visible, which the heavy side makes
//! visible before its barrier starts (a full fence, then T), and the light
//! store of `a` to be still invisible once the barrier has returned. So the
//! light store must outlive the whole barrier in its CPU's store buffer, and
//! stores drain by themselves within about a memory access. Each round is
//! arranged for that window to be as wide as it gets and to line up with
//! the heavy side's start:
//! - both sides start at one CLOCK_MONOTONIC instant (the TSC, common to
//!   all CPUs), the heavy side 0-100 ns later, at random;
//! - each side's load hits its own cache (it reset that word itself), each
//!   store has to fetch its line from the other CPU;
//! - the light side first stores to a line evicted to memory: x86-64 makes
//!   stores visible in program order, so `a` waits behind a memory access.
//!
//! Measured on this project's machine (debug build, 300,000 rounds each),
//! with `heavy()` a full fence and then a spin of N ns: violations in 80 %
//! of rounds for N = 0, 14 % for 50 ns, 0.9 % for 200 ns, a few per million
//! from 400 ns to 1.6 µs. The real `heavy_barrier` on a forged file that says
//! every CPU is up to date (a barrier that returns without waiting, as one
//! would through a minimum published ahead of the CPUs, a wrong word or a
//! wrong clock) shows them in 0.1-14 % of rounds (usually over 5 %): the
//! forged-file control. That is the reach of any litmus test of this
//! barrier: a correct wait lasts at least one pass of the helper and the
//! publisher (tens of microseconds), so a daemon that made it wait for the
//! wrong event, but wait, cannot show here; the other tests check what the
//! daemon publishes.
//!
//! `BARRIERD_LITMUS_SECS` sets how long each run through barrierd lasts
//! (default 3 s); bench/README.md has the long run.
#![allow(unsafe_code)]
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrierd_client::layout::{self, word};
use barrierd_client::Barrierd;
use common::{monotonic_ns, pin_current_thread, Daemon, TempDir};

/// From the heavy side's go to the round's start: long enough for the light
/// side to see the go first.
const LEAD_NS: u64 = 3_000;
/// How late the heavy side may start, at random: the best offset depends on
/// the machine's cache latencies. Measured here with the forged file, same
/// build, one after the other: violations in 10-15 % of rounds for 0-100 ns,
/// 5 % for 0-200 ns, 4 % for 0-400 ns.
const JITTER_NS: u64 = 100;
/// How long the heavy side waits for the light side to get ready before it
/// issues barriers meanwhile (see `Shared::heavy_side`).
const IDLE_AFTER: Duration = Duration::from_micros(100);
/// Correctness bounds, not latency targets.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// Rounds of the controls. Measured here: violations in 58-83 % of rounds
/// without a barrier, spinning or sleeping, and 0.1-14 % through the forged
/// file, so each count expects a hundred at least.
const SPINNING_CONTROL_ROUNDS: u64 = 100_000;
const SLEEPING_CONTROL_ROUNDS: u64 = 2_000;
/// A bound on a control's run, not a target (they take well under a second).
const CONTROL_TIME: Duration = Duration::from_secs(60);

/// The tests of this binary share two CPUs (and a daemon's passes would
/// disturb another's rounds): one test at a time.
static CPUS: Mutex<()> = Mutex::new(());

fn cpus() -> std::sync::MutexGuard<'static, ()> {
    CPUS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The first two CPUs this process may run on: the heavy side's and the
/// light side's.
fn cpu_pair() -> (usize, usize) {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let mut cpus = (0..nix::sched::CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap());
    (cpus.next().unwrap(), cpus.next().unwrap())
}

/// How long each run through barrierd lasts.
fn barrierd_time() -> Duration {
    let secs = match std::env::var("BARRIERD_LITMUS_SECS") {
        Ok(secs) => secs
            .parse()
            .unwrap_or_else(|_| panic!("BARRIERD_LITMUS_SECS={secs:?}: not a number of seconds")),
        Err(_) => 3,
    };
    Duration::from_secs(secs)
}

/// One word alone on its pair of cache lines (the adjacent-line prefetcher
/// fetches 128 bytes).
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

#[derive(Clone, Copy)]
enum Heavy<'a> {
    /// The control: a compiler fence, as on the light side.
    Nothing,
    /// `heavy_barrier` on a file, and what to call it.
    Barrier(&'a Barrierd, &'static str),
}

impl Heavy<'_> {
    fn name(self) -> &'static str {
        match self {
            Heavy::Nothing => "nothing",
            Heavy::Barrier(_, name) => name,
        }
    }

    fn barrier(self) {
        match self {
            Heavy::Nothing => barrierd_client::light(),
            Heavy::Barrier(barrierd, _) => {
                if let Err(e) = barrierd.heavy_barrier(BARRIER_TIMEOUT) {
                    panic!("heavy barrier: {e}");
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Light {
    /// Spins between rounds: its CPU enters the kernel only when interrupted
    /// or preempted.
    Spinning,
    /// Sleeps 1-20 ms after about one round in ten: its CPU goes idle and
    /// the daemon's processes run there, and the rounds after a wake-up find
    /// it just out of idle.
    Sleeping,
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    violations: u64,
}

/// xorshift64: jitter and sleeps need no quality, only no pattern in phase
/// with the rounds.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spin_until(t_ns: u64) {
    while monotonic_ns() < t_ns {
        std::hint::spin_loop();
    }
}

/// Evicts `line` from every cache: the next store to it waits for memory.
fn evict(line: &Line) {
    // SAFETY: clflush needs SSE2, which every x86-64 CPU has, and an address
    // it may access: `line` is borrowed for the call. It changes no value.
    unsafe { std::arch::x86_64::_mm_clflush(line.0.as_ptr().cast::<u8>()) }
}

/// Ends the other side however this one ends (a panic included), so that
/// the scope joining both does not wait for ever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Release);
    }
}

#[derive(Default)]
struct Shared {
    /// Stored by the light side, loaded and reset by the heavy side.
    a: Line,
    /// Stored by the heavy side, loaded and reset by the light side.
    b: Line,
    /// Evicted, then stored by the light side just before `a`.
    slow: Line,
    /// Heavy → light: get ready for this round.
    want: Line,
    /// Light → heavy: ready for this round (`b` reset, `slow` evicted).
    ready: Line,
    /// Heavy → light: this round starts at `start` (`a` reset).
    round: Line,
    start: Line,
    /// Light → heavy: the round << 1 | what the light side loaded from `b`.
    done: Line,
    stop: AtomicBool,
}

impl Shared {
    /// Rounds until `rounds` are done or `time` is up.
    ///
    /// Every word is reset by a side that has seen the other side finish
    /// with its previous value (release and acquire through `want`, `ready`
    /// and `round`), so that no value of an earlier round is ever read.
    fn run(&self, heavy: Heavy, light: Light, rounds: u64, time: Duration) -> Tally {
        std::thread::scope(|scope| {
            let (heavy_cpu, light_cpu) = cpu_pair();
            let light_side = scope.spawn(move || self.light_side(light_cpu, light));
            let heavy_side = scope.spawn(move || self.heavy_side(heavy_cpu, heavy, rounds, time));
            let tally = heavy_side.join();
            let light_result = light_side.join();
            if let Err(panic) = light_result {
                std::panic::resume_unwind(panic);
            }
            tally.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn light_side(&self, cpu: usize, light: Light) {
        let _stop = StopOnDrop(&self.stop);
        pin_current_thread(cpu);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 1.. {
            if !self.light_waits_for(&self.want, i) {
                return;
            }
            self.b.0.store(0, Relaxed);
            evict(&self.slow);
            self.ready.0.store(i, Release);
            if !self.light_waits_for(&self.round, i) {
                return;
            }
            spin_until(self.start.0.load(Relaxed));
            self.slow.0.store(i, Relaxed);
            self.a.0.store(1, Relaxed);
            barrierd_client::light();
            let seen = self.b.0.load(Relaxed);
            self.done.0.store(i << 1 | seen, Release);
            if light == Light::Sleeping && rng.below(10) == 0 {
                std::thread::sleep(Duration::from_micros(1_000 + rng.below(19_000)));
            }
        }
    }

    /// False once the heavy side has stopped.
    fn light_waits_for(&self, line: &Line, value: u64) -> bool {
        while line.0.load(Acquire) != value {
            if self.stop.load(Acquire) {
                return false;
            }
            std::hint::spin_loop();
        }
        true
    }

    fn heavy_side(&self, cpu: usize, heavy: Heavy, rounds: u64, time: Duration) -> Tally {
        let _stop = StopOnDrop(&self.stop);
        pin_current_thread(cpu);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut tally = Tally::default();
        let end = Instant::now() + time;
        for i in 1..=rounds {
            if Instant::now() >= end {
                break;
            }
            self.want.0.store(i, Release);
            // While the light side sleeps, barriers go on: the daemon's
            // processes then run on its idle CPU, and the round after its
            // wake-up meets whatever state that left behind.
            let asked = Instant::now();
            self.heavy_waits_for(
                &self.ready,
                |ready| ready == i,
                || {
                    if asked.elapsed() > IDLE_AFTER {
                        heavy.barrier();
                    }
                },
            );
            self.a.0.store(0, Relaxed);
            let start = monotonic_ns() + LEAD_NS;
            self.start.0.store(start, Relaxed);
            self.round.0.store(i, Release);
            spin_until(start + rng.below(JITTER_NS));
            self.b.0.store(1, Relaxed);
            heavy.barrier();
            let seen = self.a.0.load(Relaxed);
            let done = self.heavy_waits_for(&self.done, |done| done >> 1 == i, || {});
            tally.rounds += 1;
            if seen == 0 && done & 1 == 0 {
                tally.violations += 1;
            }
        }
        tally
    }

    fn heavy_waits_for(
        &self,
        line: &Line,
        wanted: impl Fn(u64) -> bool,
        mut meanwhile: impl FnMut(),
    ) -> u64 {
        let asked = Instant::now();
        loop {
            let value = line.0.load(Acquire);
            if wanted(value) {
                return value;
            }
            assert!(!self.stop.load(Acquire), "the light side stopped");
            assert!(
                asked.elapsed() < ANSWER_LIMIT,
                "the light side did not answer within {ANSWER_LIMIT:?}"
            );
            meanwhile();
            std::hint::spin_loop();
        }
    }
}

/// Runs and prints one litmus line.
fn litmus(mode: &str, heavy: Heavy, light: Light, rounds: u64, time: Duration) -> Tally {
    let tally = Shared::default().run(heavy, light, rounds, time);
    eprintln!(
        "litmus {mode}: {} rounds, {} violations (heavy = {})",
        tally.rounds,
        tally.violations,
        heavy.name()
    );
    tally
}

/// A run that must show violations, or the runs through barrierd prove
/// nothing on this machine.
fn control(mode: &str, heavy: Heavy, light: Light, rounds: u64) {
    let tally = litmus(mode, heavy, light, rounds, CONTROL_TIME);
    assert!(
        tally.violations > 0,
        "litmus {mode}, heavy = {}: no violation in {} rounds (of {rounds} wanted within \
         {CONTROL_TIME:?}): store buffering did not show, so this test cannot tell a \
         working barrier from a broken one here",
        heavy.name(),
        tally.rounds
    );
}

fn assert_no_violation(mode: &str, tally: &Tally) {
    assert_eq!(
        tally.violations, 0,
        "litmus {mode}: {} violations in {} rounds through barrierd: a heavy barrier let a \
         light side's store and load pass each other",
        tally.violations, tally.rounds
    );
    // A floor far below what any machine does (hundreds per second), so
    // that a run that did nothing does not pass for one that saw nothing.
    assert!(
        tally.rounds >= 100,
        "litmus {mode}: only {} rounds through barrierd",
        tally.rounds
    );
}

/// A file of this boot that says every CPU entered the kernel at the end of
/// time, with no daemon behind it: a heavy barrier on it returns at once, as
/// one through a daemon publishing a minimum ahead of the CPUs would.
fn forged(dir: &TempDir) -> Barrierd {
    let mut words = vec![0u64; 4096 / 8];
    words[word::NCPU] = 1;
    words[word::LAST_INTERRUPT_NS] = u64::MAX;
    words[layout::cpu_ns_word(0)] = u64::MAX;
    words[word::MAGIC] = layout::MAGIC;
    words[word::FORMAT_VERSION] = layout::FORMAT_VERSION;
    words[word::STATE] = layout::STATE_RUNNING;
    let boot = layout::BootId::current().unwrap().words();
    words[word::BOOT_ID_0] = boot[0];
    words[word::BOOT_ID_1] = boot[1];
    let path = dir.join("forged");
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    std::fs::write(&path, bytes).unwrap();
    Barrierd::open_even_if_stopped(&path).unwrap()
}

/// Without a barrier, store buffering shows, with the light side spinning
/// and sleeping alike; and it shows through the real `heavy_barrier` when
/// the file lies. Needs no daemon, so no privilege.
#[test]
fn controls_show_violations() {
    require_cpus!(2);
    let _cpus = cpus();
    control(
        "spinning",
        Heavy::Nothing,
        Light::Spinning,
        SPINNING_CONTROL_ROUNDS,
    );
    control(
        "sleeping",
        Heavy::Nothing,
        Light::Sleeping,
        SLEEPING_CONTROL_ROUNDS,
    );
    let dir = TempDir::new("litmus-forged");
    let file = forged(&dir);
    control(
        "spinning",
        Heavy::Barrier(&file, "heavy_barrier on a forged file"),
        Light::Spinning,
        SPINNING_CONTROL_ROUNDS,
    );
}

fn through_barrierd(mode: &str, path: &std::path::Path, light: Light) {
    let barrierd = Barrierd::open(path).unwrap();
    let tally = litmus(
        mode,
        Heavy::Barrier(&barrierd, "barrierd"),
        light,
        u64::MAX,
        barrierd_time(),
    );
    assert_no_violation(mode, &tally);
}

#[test]
fn spinning_light_side_sees_no_violation() {
    require_cpus!(2);
    require_privileged!();
    let _cpus = cpus();
    let dir = TempDir::new("litmus-spinning");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    through_barrierd("spinning", &path, Light::Spinning);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

#[test]
fn sleeping_light_side_sees_no_violation() {
    require_cpus!(2);
    require_privileged!();
    let _cpus = cpus();
    let dir = TempDir::new("litmus-sleeping");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    through_barrierd("sleeping", &path, Light::Sleeping);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

/// The daemon sees its own pids as its namespace's (the publisher is pid 1
/// there) while BPF sees the kernel's: telling its own processes apart from
/// clients must not depend on which. The light side sleeps, so that those
/// processes run on its CPU.
#[test]
fn daemon_in_a_pid_namespace_sees_no_violation() {
    require_cpus!(2);
    require_privileged!();
    let _cpus = cpus();
    let dir = TempDir::new("litmus-pidns");
    let path = dir.join("pub");
    let daemon = Daemon::start_in_pid_namespace(&path, &[]);
    let publisher = daemon.publisher_pid();
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(
        namespace(&publisher.to_string()),
        namespace("self"),
        "barrierd (pid {publisher}) runs in the test's pid namespace"
    );
    through_barrierd("pid-namespace", &path, Light::Sleeping);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}
