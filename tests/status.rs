//! `barrierd status`: what an operator sees of a running, stopped, killed
//! or missing daemon, in each output form, and the exit status a script
//! tests.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use barrierd_client::Barrierd;
use common::{Daemon, TempDir};

struct Report {
    code: i32,
    stdout: String,
}

fn status(path: &Path, args: &[&str]) -> Report {
    let output = Command::new(common::barrierd_bin())
        .arg("status")
        .arg(path)
        .args(["--window-ms", "500"])
        .args(args)
        .output()
        .unwrap();
    Report {
        code: output.status.code().expect("status was killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
    }
}

fn json(path: &Path) -> (i32, serde_json::Value) {
    let report = status(path, &["--json"]);
    (report.code, serde_json::from_str(&report.stdout).unwrap())
}

/// `name{labels} value` lines, keyed by name and labels.
fn prometheus(path: &Path) -> (i32, HashMap<String, f64>) {
    let report = status(path, &["--prometheus"]);
    let samples = report
        .stdout
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect();
    (report.code, samples)
}

#[test]
fn a_missing_file_is_reported_with_what_to_do_and_exit_status_3() {
    let dir = TempDir::new("status-missing");
    let path = dir.join("barrierd");
    let text = status(&path, &[]);
    assert_eq!(text.code, 3, "{}", text.stdout);
    assert!(
        text.stdout.contains("unavailable") && text.stdout.contains("start `barrierd"),
        "{}",
        text.stdout
    );
    let (code, json) = json(&path);
    assert_eq!(code, 3);
    assert_eq!(json["running"], false);
    assert_eq!(json["state"], "unavailable");
    assert!(json["pid"].is_null());
    let (code, samples) = prometheus(&path);
    assert_eq!(code, 3);
    let path = path.display();
    assert_eq!(samples[&format!("barrierd_up{{path=\"{path}\"}}")], 0.0);
    assert_eq!(
        samples[&format!("barrierd_state{{path=\"{path}\",state=\"unavailable\"}}")],
        1.0
    );
}

#[test]
fn a_bad_command_line_is_exit_status_2() {
    let output = Command::new(common::barrierd_bin())
        .args(["status", "--window-ms", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_running_daemon_is_reported_and_a_stopped_or_killed_one_is_not() {
    require_privileged!();
    let dir = TempDir::new("status");
    let path = dir.join("barrierd");
    let mut daemon = Daemon::start(&path, &[]);
    let barrierd = Barrierd::open(&path).unwrap();
    // A waiting client, so that passes happen while status counts them.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                barrierd.heavy_barrier(Duration::from_secs(30)).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let text = status(&path, &[]);
        let (code, json) = json(&path);
        let (prometheus_code, samples) = prometheus(&path);
        stop.store(true, Ordering::Relaxed);

        assert_eq!(text.code, 0, "{}", text.stdout);
        eprintln!("{}", text.stdout);
        assert!(text.stdout.contains(": running\n"), "{}", text.stdout);
        assert!(text.stdout.contains("(this boot)"), "{}", text.stdout);

        assert_eq!(code, 0);
        assert_eq!(json["running"], true);
        assert_eq!(json["state"], "running");
        assert!(json["why"].is_null());
        assert_eq!(json["pid"], daemon.publisher_pid() as u64);
        assert_eq!(json["generation"], barrierd.generation());
        assert_eq!(json["this_boot"], true);
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(json["boot_id"], boot.trim_end());
        assert_eq!(json["cpus"], barrierd.ncpu() as u64);
        let per_cpu = json["per_cpu"].as_array().unwrap();
        assert_eq!(per_cpu.len(), barrierd.ncpu());
        for (cpu, entry) in per_cpu.iter().enumerate() {
            assert_eq!(entry["cpu"], cpu as u64);
        }
        let passes = json["passes_per_second"].as_f64().unwrap();
        assert!(
            passes >= 10.0,
            "{passes} passes/s with a client waiting every millisecond"
        );
        let age = json["minimum_age_ns"].as_u64().unwrap();
        assert!(
            age < 5_000_000_000,
            "the minimum is {age} ns old while a client waits"
        );

        assert_eq!(prometheus_code, 0);
        let shown = path.display();
        assert_eq!(samples[&format!("barrierd_up{{path=\"{shown}\"}}")], 1.0);
        assert_eq!(
            samples[&format!("barrierd_state{{path=\"{shown}\",state=\"running\"}}")],
            1.0
        );
        assert_eq!(
            samples[&format!("barrierd_state{{path=\"{shown}\",state=\"stopped\"}}")],
            0.0
        );
        assert_eq!(
            samples[&format!("barrierd_cpus{{path=\"{shown}\"}}")],
            barrierd.ncpu() as f64
        );
        for cpu in 0..barrierd.ncpu() {
            let key = format!("barrierd_cpu_age_seconds{{path=\"{shown}\",cpu=\"{cpu}\"}}");
            assert!(samples.contains_key(&key), "no {key}");
        }
    });

    let killed = Daemon::start(&dir.join("killed"), &[]);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait(Duration::from_secs(10));
    let (code, stopped) = json(&path);
    assert_eq!(code, 1);
    assert_eq!(stopped["state"], "stopped");
    assert!(stopped["why"].is_string());

    killed.signal(nix::sys::signal::Signal::SIGKILL);
    let killed_path = killed.path.clone();
    drop(killed);
    // Until the kernel has closed the killed process's descriptors the
    // lock may still be seen held.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (code, dead) = loop {
        let (code, dead) = json(&killed_path);
        if dead["state"] != "starting" || std::time::Instant::now() > deadline {
            break (code, dead);
        }
    };
    assert_eq!(code, 1);
    assert_eq!(dead["state"], "dead");
    let text = status(&killed_path, &[]);
    assert!(text.stdout.contains("killed or crashed"), "{}", text.stdout);
}
