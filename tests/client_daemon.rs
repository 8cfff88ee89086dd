//! The client library, the C and Rust examples against the real daemon:
//! barriers complete and leave the file in the promised state, a stopped or
//! killed daemon is reported instead of waited on, and clients need no
//! privilege. Run as root (the daemon needs it); clients drop to nobody
//! where that matters.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use barrierd_client::{
    Barrier, BarrierTicket, Barrierd, Fallback, Liveness, OpenError, Via, WaitError, Why,
};
use common::{compile_c, repo, BusyCpus, Daemon, TempDir};
use nix::sys::signal::Signal;

/// A correctness bound for one barrier, not a latency target.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

/// The `wait` example, which `cargo test` builds next to the binaries.
fn wait_example() -> PathBuf {
    let path = common::barrierd_bin()
        .with_file_name("examples")
        .join("wait");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins --examples` first, as scripts/test does",
        path.display()
    );
    path
}

/// Builds a C example as its header comment says users do, warnings fatal,
/// into `dir` (world-readable, so that nobody can run it too).
fn compile_c_example(name: &str, dir: &TempDir) -> PathBuf {
    let output = dir.join(name);
    compile_c(&repo().join("examples").join(format!("{name}.c")), &output);
    output
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("running a client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{command:?}: {}\n{stdout}{stderr}", output.status);
    (output, stdout, stderr)
}

fn kill(mut daemon: Daemon) {
    daemon.signal(Signal::SIGKILL);
    daemon.wait(Duration::from_secs(10));
}

#[test]
fn after_a_barrier_every_cpu_is_past_it() {
    require_privileged!();
    let dir = TempDir::new("client-invariant");
    let _daemon = Daemon::start(&dir.join("pub"), &[]);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    // Idle CPUs and CPUs busy in user mode reach the kernel differently.
    for busy in [false, true] {
        let _busy = busy.then(|| BusyCpus::start(common::online_cpus()));
        for _ in 0..50 {
            let ticket = BarrierTicket::begin();
            bd.complete(ticket, BARRIER_TIMEOUT).unwrap();
            let t = ticket.time_ns();
            // The global word first: the per-CPU words it was computed from
            // were stored before it, and only grow.
            let global = bd.last_interrupt_ns();
            let per_cpu: Vec<u64> = (0..bd.ncpu())
                .map(|cpu| bd.cpu_last_interrupt_ns(cpu).unwrap())
                .collect();
            assert!(global > t, "global {global} <= T {t}");
            assert!(per_cpu.iter().all(|&ns| ns > t), "{per_cpu:?} vs T {t}");
            assert!(global <= *per_cpu.iter().min().unwrap());
            assert!(bd.try_complete(ticket));
        }
    }
}

#[test]
fn vtime_waits_complete_from_begin_vtime() {
    require_privileged!();
    let dir = TempDir::new("client-vtime");
    let _daemon = Daemon::start(&dir.join("pub"), &[]);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    let mut previous = 0;
    for _ in 0..10 {
        let v = bd.begin_vtime();
        assert!(v >= previous, "vtime went back from {previous} to {v}");
        let seen = bd.wait_vtime(v, BARRIER_TIMEOUT).unwrap();
        assert!(seen > v && bd.passed_vtime(v));
        assert!(bd.vtime() > v);
        previous = v;
        for cpu in 0..bd.ncpu() {
            assert!(bd.cpu_last_interrupt_vtime(cpu).unwrap() > v);
        }
    }
}

/// Starts a wait that only the daemon's end can finish, then ends it.
fn wait_through(end: impl FnOnce(Daemon), name: &str) -> (WaitError, OpenError) {
    let dir = TempDir::new(name);
    let daemon = Daemon::start(&dir.join("pub"), &[]);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    let error = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| bd.wait_ns(u64::MAX - 1, Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(200));
        end(daemon);
        waiter
            .join()
            .unwrap()
            .expect_err("nothing passes u64::MAX - 1")
    });
    (error, Barrierd::open(dir.join("pub")).unwrap_err())
}

#[test]
fn a_stopped_daemon_is_reported_not_waited_on() {
    require_privileged!();
    let (wait, open) = wait_through(
        |daemon| assert!(daemon.stop().0.success()),
        "client-stopped",
    );
    assert!(
        matches!(
            wait,
            WaitError::NotRunning {
                liveness: Liveness::Stopped,
                ..
            }
        ),
        "{wait}"
    );
    assert!(
        matches!(
            open,
            OpenError::NotRunning {
                liveness: Liveness::Stopped,
                ..
            }
        ),
        "{open}"
    );
}

#[test]
fn a_killed_daemon_is_reported_not_waited_on() {
    require_privileged!();
    let (wait, open) = wait_through(kill, "client-killed");
    assert!(
        matches!(
            wait,
            WaitError::NotRunning {
                liveness: Liveness::Dead,
                ..
            }
        ),
        "{wait}"
    );
    assert!(
        matches!(
            open,
            OpenError::NotRunning {
                liveness: Liveness::Dead,
                ..
            }
        ),
        "{open}"
    );
}

#[test]
fn barrier_falls_back_while_the_daemon_is_down_and_returns_to_it() {
    require_privileged!();
    let dir = TempDir::new("client-restart");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let barrier = Barrier::open(&path, Fallback::Membarrier)
        .unwrap()
        .with_timeout(BARRIER_TIMEOUT);
    assert_eq!(barrier.heavy().unwrap(), Via::Daemon);
    kill(daemon);
    assert_eq!(
        barrier.heavy().unwrap(),
        Via::Membarrier(Why::NotRunning(Liveness::Dead))
    );
    let daemon = Daemon::start(&path, &[]);
    assert_eq!(barrier.heavy().unwrap(), Via::Daemon);
    assert!(daemon.stop().0.success());
    assert_eq!(
        barrier.heavy().unwrap(),
        Via::Membarrier(Why::NotRunning(Liveness::Stopped))
    );
}

#[test]
fn c_client_example_waits_barriers_and_reports_a_stopped_daemon() {
    require_privileged!();
    let dir = TempDir::new("client-c-example");
    let client = compile_c_example("client", &dir);
    let daemon = Daemon::start(&dir.join("pub"), &[]);
    let (output, stdout, _) = run(Command::new(&client).arg(dir.join("pub")).arg("3"));
    assert!(output.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines
        .iter()
        .all(|l| l.starts_with("Wait on ns finished after ") && l.ends_with(" ms.")));

    assert!(daemon.stop().0.success());
    let (output, _, stderr) = run(Command::new(&client).arg(dir.join("pub")).arg("1"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("daemon not running"), "{stderr}");
}

#[test]
fn c_reads_what_rust_reads_from_the_live_daemon() {
    require_privileged!();
    let dir = TempDir::new("client-c-dump");
    let dump = compile_c_example("dump", &dir);
    let daemon = Daemon::start(&dir.join("pub"), &[]);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    let read_rust = || {
        let mut words = BTreeMap::from([
            ("vtime".to_owned(), bd.vtime()),
            ("last_interrupt_ns".to_owned(), bd.last_interrupt_ns()),
            ("last_interrupt_vtime".to_owned(), bd.last_interrupt_vtime()),
        ]);
        for cpu in 0..bd.ncpu() {
            let ns = bd.cpu_last_interrupt_ns(cpu).unwrap();
            let vtime = bd.cpu_last_interrupt_vtime(cpu).unwrap();
            words.insert(format!("per_cpu[{cpu}].last_interrupt_ns"), ns);
            words.insert(format!("per_cpu[{cpu}].last_interrupt_vtime"), vtime);
        }
        words
    };
    let before = read_rust();
    let (output, stdout, _) = run(Command::new(&dump).arg(dir.join("pub")));
    let after = read_rust();
    assert!(output.status.success());
    let mut c: BTreeMap<String, u64> = stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect();

    // Words that do not move while the daemon runs are equal...
    for (name, rust) in [
        ("ncpu", bd.ncpu() as u64),
        ("format_version", barrierd_client::layout::FORMAT_VERSION),
        ("state", barrierd_client::layout::STATE_RUNNING),
        ("generation", bd.generation()),
        ("daemon_pid", bd.daemon_pid()),
        ("boot_id[0]", bd.boot_id().words()[0]),
        ("boot_id[1]", bd.boot_id().words()[1]),
    ] {
        assert_eq!(c.remove(name), Some(rust), "{name}");
    }
    assert_eq!(bd.daemon_pid(), u64::from(daemon.child.id()));
    assert_eq!(
        bd.boot_id(),
        barrierd_client::layout::BootId::current().unwrap()
    );
    // ...and the others, which only grow, are between two Rust reads.
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (name, value) in &c {
        assert!(
            before[name] <= *value && *value <= after[name],
            "{name}: {} <= {value} <= {}",
            before[name],
            after[name]
        );
    }
}

#[test]
fn rust_wait_example_succeeds_fails_or_falls_back() {
    require_privileged!();
    let dir = TempDir::new("client-wait-example");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let (output, stdout, _) = run(Command::new(wait_example())
        .arg(&path)
        .args(["--iterations", "3"]));
    assert!(output.status.success());
    assert_eq!(stdout.matches("(barrierd)").count(), 3, "{stdout}");
    assert!(stdout.contains("3 barriers, 3 through barrierd, 0 through membarrier"));

    assert!(daemon.stop().0.success());
    let (output, _, stderr) = run(Command::new(wait_example()).arg(&path));
    assert!(!output.status.success());
    assert!(stderr.contains("daemon not running (stopped)"), "{stderr}");

    let (output, stdout, stderr) = run(Command::new(wait_example()).arg(&path).args([
        "--iterations",
        "2",
        "--fallback",
        "membarrier",
    ]));
    assert!(output.status.success());
    assert!(stdout.contains("2 barriers, 0 through barrierd, 2 through membarrier"));
    assert!(
        stderr.contains("daemon not running (stopped); falling back to membarrier"),
        "{stderr}"
    );
}

/// `program ARGS...` in a mount namespace where this boot's id cannot be
/// read: an empty tmpfs hides /proc/sys/kernel/random.
fn without_boot_id(program: &Path) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs none /proc/sys/kernel/random && exec \"$0\" \"$@\"")
        .arg(program);
    command
}

#[test]
fn clients_that_cannot_read_the_boot_id_say_so() {
    require_privileged!();
    let dir = TempDir::new("client-no-boot-id");
    let client = compile_c_example("client", &dir);
    let path = dir.join("pub");
    let _daemon = Daemon::start(&path, &[]);
    let needle = "cannot read this boot's id from /proc/sys/kernel/random/boot_id";

    let (output, _, stderr) = run(without_boot_id(&client).arg(&path).arg("1"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains(needle), "{stderr}");
    let (output, _, stderr) = run(without_boot_id(&wait_example()).arg(&path));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains(needle), "{stderr}");
    let (output, stdout, stderr) = run(without_boot_id(&wait_example()).arg(&path).args([
        "--iterations",
        "1",
        "--fallback",
        "membarrier",
    ]));
    assert!(output.status.success());
    assert!(stderr.contains(needle), "{stderr}");
    assert!(stdout.contains("1 through membarrier"), "{stdout}");
}

#[test]
fn clients_that_are_not_root_open_and_wait() {
    require_privileged!();
    let dir = TempDir::new("client-nobody");
    let client = compile_c_example("client", &dir);
    // Our build tree may not be reachable by nobody; the test directory is.
    let wait = dir.join("wait");
    std::fs::copy(wait_example(), &wait).unwrap();
    let _daemon = Daemon::start(&dir.join("pub"), &[]);
    let as_nobody = |program: &Path| {
        let mut command = Command::new(program);
        command.uid(NOBODY).gid(NOBODY).arg(dir.join("pub"));
        command
    };

    let (output, stdout, _) = run(as_nobody(&client).arg("2"));
    assert!(output.status.success());
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (output, stdout, _) = run(as_nobody(&wait).args(["--iterations", "2"]));
    assert!(output.status.success());
    assert!(
        stdout.contains("2 barriers, 2 through barrierd"),
        "{stdout}"
    );
}
