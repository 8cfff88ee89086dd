//! The results: what goes into bench.json, the table printed on stdout, and
//! the check against the project's latency and CPU targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::methods::Method;
use crate::procfs::{Environment, Ipis};
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
    pub max_gap_ns: u64,
    /// "started" (by the benchmark, default tracepoints) or "external".
    pub daemon: &'static str,
    pub daemon_binary: Option<String>,
    pub file: String,
    pub daemon_pid: Option<u32>,
    pub helper_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuWindow {
    pub wall_ns: u64,
    /// Publisher plus helper, ns on CPU over the window.
    pub daemon_cpu_ns: Option<u64>,
    /// `daemon_cpu_ns` as a percentage of one core over `wall_ns`.
    pub daemon_cpu_percent: Option<f64>,
}

impl CpuWindow {
    pub fn new(wall_ns: u64, daemon_cpu_ns: Option<u64>) -> CpuWindow {
        CpuWindow {
            wall_ns,
            daemon_cpu_ns,
            daemon_cpu_percent: daemon_cpu_ns.map(|cpu| 100.0 * cpu as f64 / wall_ns.max(1) as f64),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    if let Some(quiet) = &report.quiet {
        let _ = writeln!(
            out,
            "daemon CPU, quiet (no barriers, no load): {} % of one core over {:.1} s",
            percent(quiet.daemon_cpu_percent),
            quiet.wall_ns as f64 / 1e9
        );
    }
    for scenario in &report.scenarios {
        let _ = writeln!(
            out,
            "daemon CPU, {:<5} (busy CPUs {:?}): {} % of one core over {:.1} s",
            scenario.scenario.name(),
            scenario.busy_cpus,
            percent(scenario.cpu.daemon_cpu_percent),
            scenario.cpu.wall_ns as f64 / 1e9
        );
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

    #[test]
    fn cpu_percent_of_one_core() {
        let w = CpuWindow::new(2_000_000_000, Some(1_000_000));
        assert_eq!(w.daemon_cpu_percent, Some(0.05));
        assert_eq!(CpuWindow::new(1, None).daemon_cpu_percent, None);
    }

    fn result(scenario: Scenario, p50_ms: f64, max_ms: f64, cpu: f64) -> ScenarioResult {
        let ns = |ms: f64| (ms * 1e6) as u64;
        ScenarioResult {
            scenario,
            busy_cpus: vec![],
            cpu: CpuWindow::new(100_000_000_000, Some((cpu * 1e9) as u64)),
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
                cpu: CpuWindow::new(1, None),
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
}
