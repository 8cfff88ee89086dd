//! The report as text: the latency table, scheduling, notes and the
//! windows disturbed by the rest of the machine.

use std::fmt::Write as _;

use super::{ms, percent, percent_short, CpuWindow, Report};

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
