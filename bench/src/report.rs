//! The results: what goes into bench.json, the table printed on stdout, and
//! the check against the project's latency and CPU targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::methods::Method;
use crate::procfs::{Environment, Ipis, SchedStat};
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub environment: Environment,
    pub config: Config,
    /// The daemon's CPU use while nothing at all runs (no barriers, no load).
    pub quiet: Option<CpuWindow>,
    pub scenarios: Vec<ScenarioResult>,
    /// How the daemon we started exited, when we started one.
    pub daemon_exit: Option<String>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Serialize)]
pub struct Config {
    pub iterations: usize,
    pub global_iterations: usize,
    pub warmup: usize,
    pub min_gap_ns: u64,
    pub max_gap_ns: u64,
    /// "started" (by the benchmark, default tracepoints) or "external".
    pub daemon: &'static str,
    pub daemon_binary: Option<String>,
    pub file: String,
    pub daemon_pid: Option<u32>,
    pub helper_pid: Option<u32>,
}

/// CPU use over a stretch of wall time. Percentages are of one core.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuWindow {
    pub wall_ns: u64,
    /// Publisher plus helper, ns on CPU over the window.
    pub daemon_cpu_ns: Option<u64>,
    pub daemon_cpu_percent: Option<f64>,
    /// How many times the publisher or the helper was given a CPU.
    pub daemon_runs: Option<u64>,
    /// How long they waited, runnable, for a CPU, ns in all.
    pub daemon_wait_ns: Option<u64>,
    /// The measuring thread's wait, runnable, for a CPU, ns in all.
    pub measurer_wait_ns: Option<u64>,
    /// This benchmark (measuring and load threads).
    pub bench_cpu_percent: Option<f64>,
    /// The rest of the machine: all CPUs' busy time (/proc/stat, so
    /// tick-sampled) minus the daemon and this benchmark. Says how quiet
    /// "idle" really was.
    pub others_cpu_percent: Option<f64>,
    /// Context switches per second on all CPUs, anyone's: the daemon's
    /// workload, since every switch is an event it traces.
    pub machine_switches_per_s: Option<f64>,
}

/// CPU time counters read at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuCounters {
    pub daemon: Option<SchedStat>,
    pub bench_ns: Option<u64>,
    pub measurer: Option<SchedStat>,
    pub machine_busy_ns: Option<u64>,
    pub machine_switches: Option<u64>,
}

impl CpuWindow {
    /// The window between two readings `wall_ns` apart.
    pub fn between(wall_ns: u64, before: CpuCounters, after: CpuCounters) -> CpuWindow {
        let delta = |f: &dyn Fn(&CpuCounters) -> Option<u64>| {
            f(&before).zip(f(&after)).map(|(a, b)| b.saturating_sub(a))
        };
        let daemon = delta(&|c| c.daemon.map(|d| d.cpu_ns));
        let bench = delta(&|c| c.bench_ns);
        let machine = delta(&|c| c.machine_busy_ns);
        let percent = |ns: u64| 100.0 * ns as f64 / wall_ns.max(1) as f64;
        CpuWindow {
            wall_ns,
            daemon_cpu_ns: daemon,
            daemon_cpu_percent: daemon.map(percent),
            daemon_runs: delta(&|c| c.daemon.map(|d| d.runs)),
            daemon_wait_ns: delta(&|c| c.daemon.map(|d| d.wait_ns)),
            measurer_wait_ns: delta(&|c| c.measurer.map(|m| m.wait_ns)),
            bench_cpu_percent: bench.map(percent),
            others_cpu_percent: machine
                .zip(bench)
                .map(|(m, b)| percent(m.saturating_sub(b).saturating_sub(daemon.unwrap_or(0)))),
            machine_switches_per_s: delta(&|c| c.machine_switches)
                .map(|n| n as f64 / (wall_ns.max(1) as f64 / 1e9)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Idle,
    Busy,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Idle, Scenario::Busy, Scenario::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Busy => "busy",
            Scenario::Mixed => "mixed",
        }
    }

    /// The CPUs that get a spinning thread: none; all; the upper half
    /// (at least one).
    pub fn busy_cpus(self, usable: &[usize]) -> Vec<usize> {
        match self {
            Scenario::Idle => Vec::new(),
            Scenario::Busy => usable.to_vec(),
            Scenario::Mixed => {
                let busy = (usable.len() / 2).max(1).min(usable.len());
                usable[usable.len() - busy..].to_vec()
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub busy_cpus: Vec<usize>,
    #[serde(flatten)]
    pub cpu: CpuWindow,
    pub methods: Vec<MethodResult>,
}

#[derive(Debug, Serialize)]
pub struct MethodResult {
    pub method: Method,
    pub name: &'static str,
    pub description: &'static str,
    /// Why it was not measured, if it was not.
    pub skipped: Option<String>,
    /// Latency of the timed barriers, ns; `None` if none completed.
    pub summary: Option<Summary>,
    /// Barriers that did not complete within the wait timeout.
    pub timeouts: usize,
    /// Timed plus warm-up barriers: what the IPI counts are over.
    pub barriers_issued: usize,
    #[serde(flatten)]
    pub cpu: CpuWindow,
    /// IPIs counted on all CPUs during the method's run (anyone's).
    pub ipis: Option<Ipis>,
    pub ipis_per_barrier: Option<f64>,
    pub note: Option<String>,
    pub samples_ns: Vec<u64>,
}

/// One of the project's targets, checked against a measurement.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".into(), |p| format!("{p:.3}"))
}

fn percent_short(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".into(), |p| format!("{p:.1}"))
}

/// The table: one row per (scenario, method), latencies in ms, then each
/// scenario's daemon CPU use.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<20} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "scenario",
        "method",
        "n",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "mean ms",
        "IPIs/op",
        "daemon %"
    );
    for scenario in &report.scenarios {
        for m in &scenario.methods {
            let name = scenario.scenario.name();
            match (&m.skipped, &m.summary) {
                (Some(why), _) => {
                    let _ = writeln!(out, "{name:<8} {:<20} skipped: {why}", m.name);
                }
                (None, None) => {
                    let _ = writeln!(
                        out,
                        "{name:<8} {:<20} {:>5} (every barrier timed out)",
                        m.name, 0
                    );
                }
                (None, Some(s)) => {
                    let _ = writeln!(
                        out,
                        "{name:<8} {:<20} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}{}",
                        m.name,
                        s.n,
                        ms(s.p50_ns),
                        ms(s.p90_ns),
                        ms(s.p99_ns),
                        ms(s.max_ns),
                        format!("{:.3}", s.mean_ns / 1e6),
                        m.ipis_per_barrier
                            .map_or_else(|| "n/a".into(), |i| format!("{i:.2}")),
                        percent(m.cpu.daemon_cpu_percent),
                        if m.timeouts > 0 {
                            format!("  ({} timed out)", m.timeouts)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
    }
    let _ = writeln!(out);
    let line = |what: &str, w: &CpuWindow| {
        let runs = match (w.daemon_runs, w.daemon_cpu_ns) {
            (Some(runs), Some(cpu)) if runs > 0 => format!(
                ", {:.0} runs/s of {:.1} µs",
                runs as f64 / (w.wall_ns.max(1) as f64 / 1e9),
                cpu as f64 / runs as f64 / 1e3
            ),
            _ => String::new(),
        };
        format!(
            "daemon CPU, {what}: {} % of one core over {:.1} s{runs} (this benchmark {} %, rest of the machine {} %; {} context switches/s)\n",
            percent(w.daemon_cpu_percent),
            w.wall_ns as f64 / 1e9,
            percent_short(w.bench_cpu_percent),
            percent_short(w.others_cpu_percent),
            w.machine_switches_per_s
                .map_or_else(|| "n/a".into(), |n| format!("{n:.0}")),
        )
    };
    if let Some(quiet) = &report.quiet {
        out += &line("quiet (no barriers, no load)", quiet);
    }
    for scenario in &report.scenarios {
        let what = format!(
            "{:<5} (busy CPUs {:?})",
            scenario.scenario.name(),
            scenario.busy_cpus
        );
        out += &line(&what, &scenario.cpu);
    }
    out
}

/// For the barrierd rows: how often the daemon ran per barrier, what that
/// cost, and how long the daemon and the measuring thread sat runnable on a
/// run queue: on loaded CPUs that, not the tick, is what can stretch a
/// barrier.
pub fn scheduling(report: &Report) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:>14} {:>16} {:>19} {:>20}\n",
        "scenario",
        "method",
        "daemon runs/op",
        "daemon CPU µs/op",
        "daemon wait µs/run",
        "measurer wait µs/op"
    );
    let per = |value: Option<u64>, count: u64, scale: f64| {
        value.filter(|_| count > 0).map_or_else(
            || "n/a".into(),
            |v| format!("{:.1}", v as f64 / count as f64 / scale),
        )
    };
    for scenario in &report.scenarios {
        for m in scenario.methods.iter().filter(|m| m.method.is_barrierd()) {
            let issued = m.barriers_issued as u64;
            let runs = m.cpu.daemon_runs.unwrap_or(0);
            let _ = writeln!(
                out,
                "{:<8} {:<20} {:>14} {:>16} {:>19} {:>20}",
                scenario.scenario.name(),
                m.name,
                per(m.cpu.daemon_runs, issued, 1.0),
                per(m.cpu.daemon_cpu_ns, issued, 1e3),
                per(m.cpu.daemon_wait_ns, runs, 1e3),
                per(m.cpu.measurer_wait_ns, issued, 1e3),
            );
        }
    }
    out
}

/// Above this much of one core used by the rest of the machine, a window
/// is flagged as disturbed.
pub const DISTURBED_PERCENT: f64 = 3.0;

/// Warnings for windows during which something else kept the machine busy
/// (another build, another benchmark): their numbers are not those of the
/// scenario they are labelled with.
pub fn disturbances(report: &Report) -> String {
    let mut out = String::new();
    let windows = report
        .quiet
        .iter()
        .map(|q| ("quiet window", q))
        .chain(report.scenarios.iter().map(|s| (s.scenario.name(), &s.cpu)));
    for (what, window) in windows {
        if let Some(others) = window.others_cpu_percent.filter(|&p| p > DISTURBED_PERCENT) {
            let _ = writeln!(
                out,
                "WARNING: {what}: the rest of the machine used {others:.0} % of a core \
                 (> {DISTURBED_PERCENT} %): not the scenario it is labelled; run again on a quiet machine"
            );
        }
    }
    out
}

/// The notes attached to rows, each once, with the rows it concerns.
pub fn notes(report: &Report) -> String {
    let mut out = String::new();
    for scenario in &report.scenarios {
        for m in &scenario.methods {
            if let Some(note) = &m.note {
                let _ = writeln!(
                    out,
                    "note: {} / {}: {note}",
                    scenario.scenario.name(),
                    m.name
                );
            }
        }
    }
    out
}

/// Latency limits in ms: (p50, p99, max).
fn latency_targets(scenario: Scenario) -> Option<(f64, f64, Option<f64>)> {
    match scenario {
        Scenario::Idle => Some((0.2, 0.5, None)),
        Scenario::Busy => Some((2.5, 4.5, Some(8.0))),
        Scenario::Mixed => None,
    }
}

/// The project's targets for barrierd, against this run: idle p50 <= 0.2
/// ms and p99 <= 0.5 ms; busy p50 <= 2.5 ms, p99 <= 4.5 ms, max <= 8 ms;
/// daemon CPU on an idle machine <= 0.1 % of one core.
pub fn check_targets(quiet: Option<&CpuWindow>, scenarios: &[ScenarioResult]) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let mut check = |what: String, limit: f64, unit: &str, value: f64| {
        checks.push(TargetCheck {
            what,
            target: format!("<= {limit} {unit}"),
            measured: format!("{value:.3} {unit}"),
            met: value <= limit,
        });
    };
    for scenario in scenarios {
        let Some((p50, p99, max)) = latency_targets(scenario.scenario) else {
            continue;
        };
        for m in scenario.methods.iter().filter(|m| m.method.is_barrierd()) {
            let Some(s) = &m.summary else { continue };
            let what = |stat| format!("{} {} {stat}", scenario.scenario.name(), m.name);
            check(what("p50"), p50, "ms", s.p50_ns as f64 / 1e6);
            check(what("p99"), p99, "ms", s.p99_ns as f64 / 1e6);
            if let Some(max) = max {
                check(what("max"), max, "ms", s.max_ns as f64 / 1e6);
            }
            if m.timeouts > 0 {
                check(what("timeouts"), 0.0, "barriers", m.timeouts as f64);
            }
        }
    }
    if let Some(p) = quiet.and_then(|q| q.daemon_cpu_percent) {
        check("daemon CPU, quiet machine".into(), 0.1, "%", p);
    }
    for scenario in scenarios.iter().filter(|s| s.scenario == Scenario::Idle) {
        if let Some(p) = scenario.cpu.daemon_cpu_percent {
            check(
                "daemon CPU, idle scenario (barriers running)".into(),
                0.1,
                "%",
                p,
            );
        }
    }
    checks
}

pub fn targets_text(checks: &[TargetCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = writeln!(
            out,
            "target {:<40} {:<10} measured {:<14} {}",
            c.what,
            c.target,
            c.measured,
            if c.met { "met" } else { "MISSED" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_cpus() {
        let cpus = [0, 1, 2, 3];
        assert!(Scenario::Idle.busy_cpus(&cpus).is_empty());
        assert_eq!(Scenario::Busy.busy_cpus(&cpus), vec![0, 1, 2, 3]);
        assert_eq!(Scenario::Mixed.busy_cpus(&cpus), vec![2, 3]);
        assert_eq!(Scenario::Mixed.busy_cpus(&[0, 1]), vec![1]);
        assert_eq!(Scenario::Mixed.busy_cpus(&[5]), vec![5]);
        assert_eq!(Scenario::Mixed.busy_cpus(&[0, 1, 2]), vec![2]);
    }

    fn counters(daemon: u64, bench: u64, machine: u64) -> CpuCounters {
        CpuCounters {
            daemon: Some(SchedStat {
                cpu_ns: daemon,
                wait_ns: daemon / 10,
                runs: daemon / 1000,
            }),
            bench_ns: Some(bench),
            measurer: None,
            machine_busy_ns: Some(machine),
            machine_switches: Some(machine / 1000),
        }
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let w = CpuWindow::between(
            2_000_000_000,
            counters(5, 1_000, 10_000),
            counters(1_000_005, 201_000, 1_010_000),
        );
        assert_eq!(w.daemon_cpu_ns, Some(1_000_000));
        assert_eq!(w.daemon_wait_ns, Some(100_000));
        assert_eq!(w.daemon_runs, Some(1_000));
        assert_eq!(w.measurer_wait_ns, None);
        assert_eq!(w.daemon_cpu_percent, Some(0.05));
        assert_eq!(w.bench_cpu_percent, Some(0.01));
        // 1 ms of the machine's busy time, minus the daemon's and ours.
        assert_eq!(w.others_cpu_percent, Some(0.0));
        let unknown = CpuWindow::between(1, CpuCounters::default(), counters(1, 1, 1));
        assert_eq!(unknown.daemon_cpu_percent, None);
        assert_eq!(unknown.others_cpu_percent, None);
    }

    fn result(scenario: Scenario, p50_ms: f64, max_ms: f64, cpu: f64) -> ScenarioResult {
        let ns = |ms: f64| (ms * 1e6) as u64;
        ScenarioResult {
            scenario,
            busy_cpus: vec![],
            cpu: CpuWindow::between(
                100_000_000_000,
                counters(0, 0, 0),
                counters((cpu * 1e9) as u64, 0, 0),
            ),
            methods: vec![MethodResult {
                method: Method::BarrierdNs,
                name: Method::BarrierdNs.name(),
                description: "",
                skipped: None,
                summary: Some(Summary {
                    n: 3,
                    min_ns: ns(p50_ms),
                    p50_ns: ns(p50_ms),
                    p90_ns: ns(p50_ms),
                    p99_ns: ns(p50_ms),
                    max_ns: ns(max_ms),
                    mean_ns: ns(p50_ms) as f64,
                }),
                timeouts: 0,
                barriers_issued: 3,
                cpu: CpuWindow::default(),
                ipis: None,
                ipis_per_barrier: None,
                note: None,
                samples_ns: vec![],
            }],
        }
    }

    #[test]
    fn targets_are_checked_per_scenario() {
        let checks = check_targets(
            None,
            &[
                result(Scenario::Idle, 0.1, 0.3, 0.05),
                result(Scenario::Busy, 2.0, 9.0, 0.05),
                result(Scenario::Mixed, 50.0, 50.0, 0.05),
            ],
        );
        let verdicts: Vec<(&str, bool)> = checks.iter().map(|c| (&c.what[..], c.met)).collect();
        assert_eq!(
            verdicts,
            vec![
                ("idle barrierd (ns) p50", true),
                ("idle barrierd (ns) p99", true),
                ("busy barrierd (ns) p50", true),
                ("busy barrierd (ns) p99", true),
                ("busy barrierd (ns) max", false),
                ("daemon CPU, idle scenario (barriers running)", true),
            ]
        );
    }

    #[test]
    fn disturbed_windows_are_flagged() {
        let quiet = CpuWindow {
            others_cpu_percent: Some(1.0),
            ..CpuWindow::default()
        };
        let mut idle = result(Scenario::Idle, 0.1, 0.3, 0.05);
        idle.cpu.others_cpu_percent = Some(150.0);
        let report = Report {
            tool: "test",
            environment: Environment::read(vec![0]),
            config: Config {
                iterations: 1,
                global_iterations: 1,
                warmup: 0,
                min_gap_ns: 0,
                max_gap_ns: 0,
                daemon: "external",
                daemon_binary: None,
                file: String::new(),
                daemon_pid: None,
                helper_pid: None,
            },
            quiet: Some(quiet),
            scenarios: vec![idle, result(Scenario::Busy, 2.0, 3.0, 0.05)],
            daemon_exit: None,
            targets: vec![],
        };
        let text = disturbances(&report);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("WARNING: idle: the rest of the machine used 150 %"));
    }
}
