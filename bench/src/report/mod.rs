//! The results: what goes into bench.json (here), the text printed on stdout
//! (text.rs), and the check against the project's targets (targets.rs).

use serde::Serialize;

use crate::methods::Method;
use crate::procfs::{Environment, Ipis, SchedStat};
use crate::stats::Summary;

mod targets;
mod text;

pub use targets::{check_targets, targets_text};
pub use text::{disturbances, notes, scheduling, table, DISTURBED_PERCENT};

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
