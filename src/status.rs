//! `barrierd status [PATH]`: what the file says, read as a client reads it
//! (no privilege, nothing written), for operators and their scripts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use barrierd_client::layout::BootId;
use barrierd_client::{monotonic_ns, Barrierd, Liveness};
use clap::Parser;
use serde::Serialize;

const EXIT_CODES: &str = "\
Reads the file as a client does: it needs no privilege and changes nothing.
The daemon's pid is as seen in its own pid namespace. Passes are counted by
the file's vtime over --window-ms; while no client waits the daemon spaces
its passes out (up to 200 ms apart), so an idle daemon's minimum may be that
old.

Exit status:
  0  a daemon is publishing to PATH
  1  PATH is a barrierd file that no daemon publishes to (stopped, killed,
     starting, or left by another boot)
  2  bad command line
  3  no usable barrierd file at PATH (missing, untrusted, not a barrierd file)";

/// Report on the daemon that publishes PATH.
#[derive(Parser, Debug)]
#[command(name = "barrierd status", version, after_help = EXIT_CODES)]
struct StatusArgs {
    /// The published file [default: $BARRIERD_FILE, or
    /// /run/barrierd/public_file, where clients look].
    path: Option<PathBuf>,
    /// One JSON object, for scripts.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text exposition format (for node_exporter's textfile
    /// collector, or a scrape wrapper).
    #[arg(long)]
    prometheus: bool,
    /// How long to count passes for.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    window_ms: u64,
}

const STATES: [&str; 6] = [
    "running",
    "starting",
    "stopped",
    "dead",
    "other_boot",
    "unavailable",
];

#[derive(Serialize)]
struct Status {
    path: String,
    running: bool,
    /// One of [`STATES`].
    state: &'static str,
    /// Why not running, as a client would report it.
    why: Option<String>,
    #[serde(flatten)]
    file: Option<FileStatus>,
}

#[derive(Serialize)]
struct FileStatus {
    pid: u64,
    generation: u64,
    boot_id: String,
    this_boot: bool,
    cpus: usize,
    vtime: u64,
    /// How old the published minimum over CPUs was when read.
    minimum_age_ns: u64,
    minimum_vtime: u64,
    window_ns: u64,
    passes_per_second: f64,
    prods: u64,
    per_cpu: Vec<CpuStatus>,
}

#[derive(Serialize)]
struct CpuStatus {
    cpu: usize,
    age_ns: u64,
    vtime: u64,
}

/// `args` starts with the subcommand's name, `status`.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = StatusArgs::parse_from(args);
    let path = args.path.unwrap_or_else(barrierd_client::default_path);
    let status = read(path, Duration::from_millis(args.window_ms));
    let report = if args.json {
        serde_json::to_string_pretty(&status).expect("a status serialises") + "\n"
    } else if args.prometheus {
        prometheus(&status)
    } else {
        text(&status)
    };
    print!("{report}");
    ExitCode::from(match (status.running, &status.file) {
        (true, _) => 0,
        (false, Some(_)) => 1,
        (false, None) => 3,
    })
}

fn read(path: PathBuf, window: Duration) -> Status {
    let shown = path.display().to_string();
    let barrierd = match Barrierd::open_even_if_stopped(&path) {
        Ok(barrierd) => barrierd,
        Err(error) => {
            return Status {
                path: shown,
                running: false,
                state: "unavailable",
                why: Some(error.to_string()),
                file: None,
            }
        }
    };
    let start = Instant::now();
    let vtime_before = barrierd.vtime();
    std::thread::sleep(window);
    let vtime = barrierd.vtime();
    let window = start.elapsed();
    let liveness = barrierd.liveness();
    let now = monotonic_ns();
    let boot = barrierd.boot_id();
    let per_cpu = (0..barrierd.ncpu())
        .map(|cpu| CpuStatus {
            cpu,
            age_ns: now.saturating_sub(barrierd.cpu_last_interrupt_ns(cpu).unwrap_or(0)),
            vtime: barrierd.cpu_last_interrupt_vtime(cpu).unwrap_or(0),
        })
        .collect();
    Status {
        path: shown,
        running: liveness == Liveness::Running,
        state: match liveness {
            Liveness::Running => "running",
            Liveness::Starting => "starting",
            Liveness::Stopped => "stopped",
            Liveness::Dead => "dead",
            Liveness::OtherBoot => "other_boot",
        },
        why: (liveness != Liveness::Running).then(|| liveness.to_string()),
        file: Some(FileStatus {
            pid: barrierd.daemon_pid(),
            generation: barrierd.generation(),
            boot_id: boot.to_string(),
            this_boot: BootId::current().is_ok_and(|current| current == boot),
            cpus: barrierd.ncpu(),
            vtime,
            minimum_age_ns: now.saturating_sub(barrierd.last_interrupt_ns()),
            minimum_vtime: barrierd.last_interrupt_vtime(),
            window_ns: window.as_nanos() as u64,
            passes_per_second: vtime.wrapping_sub(vtime_before) as f64 / window.as_secs_f64(),
            prods: barrierd.prods(),
            per_cpu,
        }),
    }
}

fn age(ns: u64) -> String {
    if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} s", ns as f64 / 1e9)
    }
}

fn text(status: &Status) -> String {
    let mut out = format!("{}: {}", status.path, status.state);
    if let Some(why) = &status.why {
        write!(out, " ({why})").unwrap();
    }
    out.push('\n');
    let Some(file) = &status.file else {
        return out;
    };
    let boot = if file.this_boot {
        "this boot"
    } else {
        "another boot: its times are not this boot's"
    };
    writeln!(
        out,
        "  daemon pid  {} (generation {})",
        file.pid, file.generation
    )
    .unwrap();
    writeln!(out, "  boot        {} ({boot})", file.boot_id).unwrap();
    writeln!(out, "  CPUs        {}", file.cpus).unwrap();
    writeln!(
        out,
        "  minimum     {} old, vtime {} of {}",
        age(file.minimum_age_ns),
        file.minimum_vtime,
        file.vtime
    )
    .unwrap();
    writeln!(
        out,
        "  passes      {:.1}/s over {:.2} s",
        file.passes_per_second,
        file.window_ns as f64 / 1e9
    )
    .unwrap();
    writeln!(out, "  prods       {}", file.prods).unwrap();
    writeln!(out, "  CPU  {:>12}  vtime", "age").unwrap();
    for cpu in &file.per_cpu {
        writeln!(
            out,
            "  {:>3}  {:>12}  {}",
            cpu.cpu,
            age(cpu.age_ns),
            cpu.vtime
        )
        .unwrap();
    }
    out
}

/// Label values escape backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus(status: &Status) -> String {
    let path = label(&status.path);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        writeln!(out, "# HELP barrierd_{name} {help}").unwrap();
        writeln!(out, "# TYPE barrierd_{name} {kind}").unwrap();
        for (labels, value) in samples {
            writeln!(out, "barrierd_{name}{{path=\"{path}\"{labels}}} {value}").unwrap();
        }
    };
    metric(
        "up",
        "gauge",
        "1 if a daemon is publishing to the file.",
        &[(String::new(), u8::from(status.running).to_string())],
    );
    metric(
        "state",
        "gauge",
        "The file's state: 1 for the current one.",
        &STATES
            .iter()
            .map(|&state| {
                let value = u8::from(state == status.state).to_string();
                (format!(",state=\"{state}\""), value)
            })
            .collect::<Vec<_>>(),
    );
    let Some(file) = &status.file else {
        return out;
    };
    let seconds = |ns: u64| format!("{}", ns as f64 / 1e9);
    metric(
        "info",
        "gauge",
        "The daemon's pid (in its pid namespace), generation and boot.",
        &[(
            format!(
                ",pid=\"{}\",generation=\"{}\",boot_id=\"{}\",this_boot=\"{}\"",
                file.pid, file.generation, file.boot_id, file.this_boot
            ),
            "1".into(),
        )],
    );
    metric(
        "cpus",
        "gauge",
        "Per-CPU records in the file (possible CPUs).",
        &[(String::new(), file.cpus.to_string())],
    );
    metric(
        "passes_total",
        "counter",
        "Update passes since the file was created (its vtime).",
        &[(String::new(), file.vtime.to_string())],
    );
    metric(
        "passes_per_second",
        "gauge",
        "Update passes per second over the status window.",
        &[(String::new(), file.passes_per_second.to_string())],
    );
    metric(
        "minimum_age_seconds",
        "gauge",
        "Age of the published minimum over CPUs of their last kernel entry.",
        &[(String::new(), seconds(file.minimum_age_ns))],
    );
    metric(
        "prods_total",
        "counter",
        "CPUs the daemon moved onto to make them enter the kernel.",
        &[(String::new(), file.prods.to_string())],
    );
    let per_cpu: Vec<_> = file
        .per_cpu
        .iter()
        .map(|cpu| (format!(",cpu=\"{}\"", cpu.cpu), seconds(cpu.age_ns)))
        .collect();
    metric(
        "cpu_age_seconds",
        "gauge",
        "Age of each CPU's published last kernel entry.",
        &per_cpu,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn a_missing_file_is_unavailable_and_says_why() {
        let status = read(
            PathBuf::from("/nonexistent/barrierd"),
            Duration::from_millis(1),
        );
        assert!(!status.running);
        assert_eq!(status.state, "unavailable");
        assert!(status.why.unwrap().contains("no such file"));
        assert!(status.file.is_none());
    }
}
