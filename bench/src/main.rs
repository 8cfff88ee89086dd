//! barrierd-bench: barrier latency through barrierd against membarrier and
//! the mprotect IPI trick, on an idle, a busy and a half-busy machine, with
//! the daemon's own CPU use.
//!
//! ```text
//! sudo target/release/barrierd-bench [--daemon PATH] [--file PATH] [--iterations N] [--out DIR]
//! ```
//!
//! By default it starts `barrierd` (next to its own executable) on a
//! temporary file, runs every scenario and method, stops the daemon with
//! SIGTERM and checks that it exits 0. It prints a table on stdout and
//! writes `bench.json` and `cdf-{idle,busy,mixed}.svg` into `--out`.

#![deny(unsafe_code)]

mod daemon_process;
mod load;
mod methods;
mod plot;
mod procfs;
mod report;
mod stats;
mod sys;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use barrierd_client::Barrierd;
use clap::Parser;

use daemon_process::{DaemonProcesses, OwnDaemon};
use load::BusyLoad;
use methods::{Barriers, Method, MethodError, Rng};
use procfs::{Environment, Ipis};
use report::{CpuCounters, CpuWindow, MethodResult, Report, Scenario, ScenarioResult};
use stats::Summary;

#[derive(Parser)]
#[command(
    about = "Measures barrier latency through barrierd, membarrier and mprotect, idle, busy and mixed",
    long_about = "Measures barrier latency through barrierd (heavy_barrier on CLOCK_MONOTONIC, and on \
                  vtime), membarrier(GLOBAL), membarrier(PRIVATE_EXPEDITED) and the mprotect IPI \
                  trick, on an idle machine, with every CPU busy in user mode, and with half of them \
                  busy; and the daemon's CPU use over each scenario. By default starts its own \
                  barrierd (which needs root) and stops it at the end."
)]
struct Args {
    /// The barrierd binary to start [default: barrierd next to this executable].
    #[arg(long, value_name = "PATH_TO_BARRIERD", conflicts_with = "file")]
    daemon: Option<PathBuf>,
    /// Measure the daemon already publishing to PATH instead of starting one.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Timed barriers per scenario and method (membarrier GLOBAL, which takes
    /// tens of ms each, does a third as many).
    #[arg(long, value_name = "N", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    iterations: u64,
    /// Directory for bench.json and the cdf-*.svg plots (created if needed).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Untimed barriers before each method's timed ones.
    #[arg(long, value_name = "N", default_value_t = 10)]
    warmup: usize,
    /// Longest pseudo-random pause between two barriers, in microseconds
    /// [default: one scheduler tick, 1/HZ, or 4000 if HZ is unknown]. A
    /// barrier through barrierd on a loaded CPU ends just after a tick; a
    /// pause spread over a whole tick period starts the next one at a
    /// uniformly random phase of the tick, as an application's would be.
    #[arg(long, value_name = "US")]
    max_gap_us: Option<u64>,
    /// Shortest pause between two barriers, in microseconds: with a pause
    /// of tens of ms the waiter's CPU and the daemon's go idle between
    /// barriers, as with an application that barriers now and then.
    #[arg(long, value_name = "US", default_value_t = 0)]
    min_gap_us: u64,
    /// Seconds with nothing running, before the scenarios, over which the
    /// daemon's CPU use on a quiet machine is measured (0 skips it).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    quiet_secs: u64,
    /// Before measuring, wait up to this many seconds for the rest of the
    /// machine to go quiet (under 3 % of a core for a whole second), so
    /// that a concurrent build does not pass for the idle scenario. Measures
    /// anyway, with a warning, when it does not (0: do not wait).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    wait_quiet: u64,
    /// Scenarios to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,busy,mixed"
    )]
    scenarios: Vec<Scenario>,
    /// Methods to measure in each scenario, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Vec<Method>,
}

/// How long the daemon may take to publish after being started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after starting or stopping a load, before measuring.
const SETTLE: Duration = Duration::from_millis(300);

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("barrierd-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The daemon under test: ours (stopped at the end) or someone else's.
enum Under {
    Own(OwnDaemon),
    External,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let usable = load::usable_cpus()?;
    let environment = Environment::read(usable.clone());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let (under, barrierd, binary) = daemon_under_test(args)?;
    let daemon_pid = match &under {
        Under::Own(daemon) => daemon.pid(),
        Under::External => u32::try_from(barrierd.daemon_pid()).unwrap_or(0),
    };
    // A daemon whose processes we cannot see (another pid namespace, no
    // permission) is still measured; only its CPU use goes unreported.
    let processes = match DaemonProcesses::of(daemon_pid) {
        Ok(processes) => Some(processes),
        Err(error) => {
            eprintln!("barrierd-bench: daemon CPU use will not be reported: {error}");
            None
        }
    };
    let meter = Meter {
        processes,
        measurer: nix::unistd::gettid().as_raw() as u32,
    };

    let iterations = args.iterations as usize;
    let gaps = pauses(args, &environment)?;
    let config = report::Config {
        iterations,
        global_iterations: iterations.div_ceil(3),
        warmup: args.warmup,
        min_gap_ns: u64::try_from(gaps.start().as_nanos()).unwrap_or(u64::MAX),
        max_gap_ns: u64::try_from(gaps.end().as_nanos()).unwrap_or(u64::MAX),
        daemon: match under {
            Under::Own(_) => "started",
            Under::External => "external",
        },
        daemon_binary: binary.map(|b| b.display().to_string()),
        file: barrierd.path().display().to_string(),
        daemon_pid: processes.map(|p| p.publisher),
        helper_pid: processes.map(|p| p.helper),
    };

    wait_for_quiet(&meter, Duration::from_secs(args.wait_quiet));
    let quiet = (args.quiet_secs > 0).then(|| {
        eprintln!(
            "quiet: {} s with nothing running, for the daemon's idle CPU use",
            args.quiet_secs
        );
        std::thread::sleep(SETTLE);
        let start = meter.read();
        std::thread::sleep(Duration::from_secs(args.quiet_secs));
        meter.since(start)
    });

    let barriers = Barriers::new(&barrierd);
    let mut scenarios = Vec::new();
    for &scenario in &args.scenarios {
        scenarios.push(run_scenario(
            scenario, args, &config, &barriers, &gaps, &usable, &meter,
        )?);
    }
    drop(barriers);

    let daemon_exit = match under {
        Under::Own(daemon) => {
            drop(barrierd);
            let (status, log) = daemon.stop(STOP_TIMEOUT)?;
            if !status.success() {
                eprintln!("barrierd's output:\n{log}");
            }
            Some(status)
        }
        Under::External => None,
    };

    let targets = report::check_targets(quiet.as_ref(), &scenarios);
    let report = Report {
        tool: "barrierd-bench",
        environment,
        config,
        quiet,
        scenarios,
        daemon_exit: daemon_exit.map(|s| s.to_string()),
        targets,
    };
    write_outputs(&report, &args.out)?;
    print_report(&report);
    if let Some(status) = daemon_exit {
        println!("barrierd stopped with SIGTERM: {status}");
        if !status.success() {
            bail!("barrierd did not exit 0 after SIGTERM: {status}");
        }
    }
    Ok(())
}

/// The daemon to measure: the one publishing to `--file`, or our own
/// started on a temporary file (root only), with its binary.
fn daemon_under_test(args: &Args) -> anyhow::Result<(Under, Barrierd, Option<PathBuf>)> {
    if let Some(path) = &args.file {
        return Ok((Under::External, Barrierd::open(path)?, None));
    }
    daemon_process::require_root()?;
    let binary = daemon_process::find_binary(args.daemon.as_deref())?;
    eprintln!("starting {} on a temporary file", binary.display());
    let (daemon, barrierd) = OwnDaemon::start(&binary, START_TIMEOUT)?;
    Ok((Under::Own(daemon), barrierd, Some(binary)))
}

/// The range of pseudo-random pauses between barriers: `--min-gap-us` up to
/// `--max-gap-us`, by default one tick.
fn pauses(args: &Args, environment: &Environment) -> anyhow::Result<RangeInclusive<Duration>> {
    let max_gap = Duration::from_micros(args.max_gap_us.unwrap_or_else(|| {
        environment
            .hz
            .filter(|&hz| hz > 0)
            .map_or(4000, |hz| 1_000_000 / u64::from(hz))
    }));
    let min_gap = Duration::from_micros(args.min_gap_us);
    if min_gap > max_gap {
        bail!(
            "--min-gap-us {} exceeds the longest pause, {} us",
            args.min_gap_us,
            max_gap.as_micros()
        );
    }
    Ok(min_gap..=max_gap)
}

/// One scenario: its CPUs busy, every chosen method timed in turn, and the
/// CPU use over all of them.
fn run_scenario(
    scenario: Scenario,
    args: &Args,
    config: &report::Config,
    barriers: &Barriers<'_>,
    gaps: &RangeInclusive<Duration>,
    usable: &[usize],
    meter: &Meter,
) -> anyhow::Result<ScenarioResult> {
    // Seeds depend on the scenario, not on its place in the list.
    let s = Scenario::ALL
        .iter()
        .position(|&a| a == scenario)
        .unwrap_or(0);
    let busy = scenario.busy_cpus(usable);
    let load = BusyLoad::start(&busy)?;
    std::thread::sleep(SETTLE);
    let start = meter.read();
    let mut results = Vec::new();
    let chosen = Method::ALL
        .into_iter()
        .enumerate()
        .filter(|(_, method)| args.methods.is_empty() || args.methods.contains(method));
    for (m, method) in chosen {
        let n = match method {
            Method::MembarrierGlobal => config.global_iterations,
            _ => config.iterations,
        };
        let mut rng = Rng::new(0x5eed_0000 + (s * 16 + m) as u64);
        let result = measure(barriers, method, n, args.warmup, gaps, &mut rng, meter)?;
        let result = MethodResult {
            note: note(method, load.cpus(), usable),
            ..result
        };
        eprintln!(
            "{:<5} {:<20} {}",
            scenario.name(),
            method.name(),
            match (&result.skipped, &result.summary) {
                (Some(why), _) => format!("skipped: {why}"),
                (None, Some(s)) => format!("{} barriers, p50 {:.3} ms", s.n, s.p50_ns as f64 / 1e6),
                (None, None) => "no barrier completed".into(),
            }
        );
        results.push(result);
    }
    let cpu = meter.since(start);
    drop(load);
    std::thread::sleep(SETTLE);
    Ok(ScenarioResult {
        scenario,
        busy_cpus: busy,
        cpu,
        methods: results,
    })
}

/// The text report on stdout (bench.json and the plots are written apart).
fn print_report(report: &Report) {
    println!(
        "barrier latency, {} on {} ({} CPUs, HZ {}), {}",
        report.environment.kernel,
        report
            .environment
            .cpu_model
            .as_deref()
            .unwrap_or("unknown CPU"),
        report.environment.online_cpus,
        report
            .environment
            .hz
            .map_or_else(|| "unknown".into(), |hz| hz.to_string()),
        report.environment.date,
    );
    println!(
        "{} timed barriers per row ({} for membarrier GLOBAL) after {} untimed, \
         each after a pseudo-random pause of {:.3}-{:.3} ms",
        report.config.iterations,
        report.config.global_iterations,
        report.config.warmup,
        report.config.min_gap_ns as f64 / 1e6,
        report.config.max_gap_ns as f64 / 1e6
    );
    print!("{}", report::table(report));
    println!();
    print!("{}", report::scheduling(report));
    println!();
    print!("{}", report::notes(report));
    print!("{}", report::targets_text(&report.targets));
    print!("{}", report::disturbances(report));
}

/// Waits until the rest of the machine used less than
/// [`report::DISTURBED_PERCENT`] of a core over a whole second, at most
/// `patience`.
fn wait_for_quiet(meter: &Meter, patience: Duration) {
    if patience.is_zero() {
        return;
    }
    let deadline = Instant::now() + patience;
    let mut said = false;
    loop {
        let start = meter.read();
        std::thread::sleep(Duration::from_secs(1));
        let others = meter.since(start).others_cpu_percent.unwrap_or(0.0);
        if others < report::DISTURBED_PERCENT {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "barrierd-bench: the machine is still busy ({others:.0} % of a core used by \
                 others) after {patience:?}; measuring anyway"
            );
            return;
        }
        if !said {
            eprintln!(
                "waiting up to {patience:?} for the machine to go quiet ({others:.0} % of a \
                 core used by others)"
            );
            said = true;
        }
    }
}

/// Reads the CPU time counters that [`CpuWindow`]s are made of.
struct Meter {
    processes: Option<DaemonProcesses>,
    /// The thread that issues the barriers (the main thread).
    measurer: u32,
}

impl Meter {
    fn read(&self) -> (Instant, CpuCounters) {
        let pid = std::process::id();
        let counters = CpuCounters {
            daemon: self.processes.and_then(|p| p.schedstat().ok()),
            bench_ns: procfs::process_schedstat(pid).ok().map(|s| s.cpu_ns),
            measurer: procfs::thread_schedstat(pid, self.measurer).ok(),
            machine_busy_ns: procfs::machine_busy_ns().ok(),
            machine_switches: procfs::machine_switches().ok(),
        };
        (Instant::now(), counters)
    }

    fn since(&self, (start, before): (Instant, CpuCounters)) -> CpuWindow {
        let (end, after) = self.read();
        let wall_ns = u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX);
        CpuWindow::between(wall_ns, before, after)
    }
}

/// Runs one method; a method the machine cannot do is reported as skipped.
fn measure(
    barriers: &Barriers,
    method: Method,
    iterations: usize,
    warmup: usize,
    gaps: &RangeInclusive<Duration>,
    rng: &mut Rng,
    meter: &Meter,
) -> anyhow::Result<MethodResult> {
    let mut result = MethodResult {
        method,
        name: method.name(),
        description: method.description(),
        skipped: None,
        summary: None,
        timeouts: 0,
        barriers_issued: 0,
        cpu: CpuWindow::default(),
        ipis: None,
        ipis_per_barrier: None,
        note: None,
        samples_ns: Vec::new(),
    };
    if let Some(why) = barriers.unavailable(method) {
        result.skipped = Some(why.to_string());
        return Ok(result);
    }
    let ipis0 = Ipis::read().ok();
    let start = meter.read();
    let (samples, timeouts) = match barriers.measure(method, warmup, iterations, gaps, rng) {
        Ok(measured) => measured,
        Err(MethodError::Unavailable(why)) => {
            result.skipped = Some(why);
            return Ok(result);
        }
        Err(error) => return Err(error.into()),
    };
    result.cpu = meter.since(start);
    let issued = warmup + iterations;
    result.ipis = ipis0
        .zip(Ipis::read().ok())
        .map(|(before, after)| after.since(before));
    result.ipis_per_barrier = result.ipis.map(|i| i.total() as f64 / issued as f64);
    result.barriers_issued = issued;
    result.summary = Summary::of(&samples);
    result.timeouts = timeouts;
    result.samples_ns = samples;
    Ok(result)
}

/// What a reader of a process-private method's numbers must know: whether
/// this process had threads running on other CPUs for it to interrupt.
fn note(method: Method, busy: &[usize], usable: &[usize]) -> Option<String> {
    if !method.process_private() {
        return None;
    }
    if busy.is_empty() {
        Some(
            "no other thread of this process was running, so it interrupted no other CPU: \
             this is its local cost only"
                .into(),
        )
    } else if busy.len() < usable.len() {
        Some(format!(
            "this process's other threads ran on CPU(s) {busy:?} only: it interrupts those, \
             not the others"
        ))
    } else {
        None
    }
}

fn write_outputs(report: &Report, out: &Path) -> anyhow::Result<()> {
    let json = out.join("bench.json");
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    for scenario in &report.scenarios {
        let path = out.join(format!("cdf-{}.svg", scenario.scenario.name()));
        let series: Vec<(&str, &[u64])> = scenario
            .methods
            .iter()
            .filter(|m| !m.samples_ns.is_empty())
            .map(|m| (m.name, &m.samples_ns[..]))
            .collect();
        let title = format!(
            "barrier latency CDF, {} ({} of {} CPUs busy), kernel {}",
            scenario.scenario.name(),
            scenario.busy_cpus.len(),
            report.environment.usable_cpus.len(),
            report.environment.kernel
        );
        plot::cdf_svg(&path, &title, &series)?;
    }
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.scenario.name()).collect();
    eprintln!(
        "wrote {} and cdf-{{{}}}.svg in {}",
        json.display(),
        names.join(","),
        out.display()
    );
    Ok(())
}
