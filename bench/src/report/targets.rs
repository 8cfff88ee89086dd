//! The project's latency and CPU targets, checked against a run.

use std::fmt::Write as _;

use super::{CpuWindow, Scenario, ScenarioResult, TargetCheck};

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
