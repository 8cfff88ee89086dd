//! Runs the real daemon for integration tests.
//!
//! Tests that need root and BPF call `require_privileged!()`: run
//! unprivileged they skip with a printed reason, but with
//! BARRIERD_REQUIRE_PRIVILEGED=1 (set by .ci/run) a skip is a failure.
#![allow(unsafe_code)]
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: a correctness bound, not a latency target.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles a C program against include/barrierd.h as the README says
/// users do, with warnings as errors.
pub fn compile_c(source: &Path, output: &Path) {
    let status = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(repo().join("include"))
        .arg(source)
        .arg("-o")
        .arg(output)
        .status()
        .expect("running cc (install gcc: scripts/setup)");
    assert!(status.success(), "cc {} failed", source.display());
}

/// Why privileged tests cannot run here, if they cannot.
pub fn unprivileged_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    if !helper_bin().exists() {
        return Some(format!(
            "{} is not built (run `cargo build --workspace --bins --examples` first, as scripts/test does)",
            helper_bin().display()
        ));
    }
    None
}

/// False (after printing why) when the test should skip; panics instead when
/// BARRIERD_REQUIRE_PRIVILEGED=1.
pub fn privileged(test: &str) -> bool {
    match unprivileged_reason() {
        None => true,
        Some(reason) => skip(test, &reason),
    }
}

/// Prints why `test` skips and returns false; panics instead when
/// BARRIERD_REQUIRE_PRIVILEGED=1.
pub fn skip(test: &str, reason: &str) -> bool {
    if std::env::var("BARRIERD_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: privileged test cannot run ({reason}) and BARRIERD_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// `systemd-analyze verify UNIT` (which also checks that ExecStart names a
/// program) reports nothing. False, after [`skip`], where systemd-analyze
/// is not installed.
pub fn systemd_analyze_verify(test: &str, unit: &Path) -> bool {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip(test, "systemd-analyze is not installed");
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && report.trim().is_empty(),
        "{}: {report}",
        unit.display()
    );
    true
}

#[macro_export]
macro_rules! require_privileged {
    () => {
        if !common::privileged(module_path!()) {
            return;
        }
    };
}

pub fn barrierd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_barrierd"))
}

pub fn helper_bin() -> PathBuf {
    barrierd_bin().with_file_name("barrierd-helper")
}

/// A fresh directory for one test, world-readable so that unprivileged
/// clients can reach the file; removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("barrierd-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collected stderr of a process, with a way to wait for a line.
#[derive(Clone, Default)]
pub struct Output(Arc<(Mutex<(String, bool)>, Condvar)>);

impl Output {
    fn collect(&self, stream: impl std::io::Read + Send + 'static) {
        let output = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                eprintln!("  | {line}");
                let (lock, cv) = &*output.0;
                let mut text = lock.lock().unwrap();
                text.0.push_str(&line);
                text.0.push('\n');
                cv.notify_all();
            }
            let (lock, cv) = &*output.0;
            lock.lock().unwrap().1 = true;
            cv.notify_all();
        });
    }

    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().0.clone()
    }

    /// Waits until `needle` appears; false on timeout or end of stream.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.0;
        let mut text = lock.lock().unwrap();
        loop {
            if text.0.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if text.1 || now >= deadline {
                return false;
            }
            text = cv.wait_timeout(text, deadline - now).unwrap().0;
        }
    }
}

/// A running daemon; killed (SIGKILL) on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub path: PathBuf,
    pub stderr: Output,
    /// The publisher, when it is pid 1 of its own pid namespace: it
    /// outlives unshare (dropping privileges clears the parent-death signal
    /// that --kill-child sets), and killing it ends the namespace.
    namespace_init: Option<i32>,
}

impl Daemon {
    /// Starts `barrierd PATH ARGS...` and waits for "Setup complete.".
    pub fn start(path: &Path, args: &[&str]) -> Daemon {
        Self::start_command(Command::new(barrierd_bin()), path, args)
    }

    /// Starts the daemon without waiting for anything.
    pub fn spawn(path: &Path, args: &[&str]) -> Daemon {
        Self::spawn_with_env(path, args, &[])
    }

    /// Starts the daemon with extra environment variables.
    pub fn spawn_with_env(path: &Path, args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        Self::spawn_command(Command::new(barrierd_bin()), path, args, env)
    }

    /// Starts `barrierd PATH ARGS...` as pid 1 of a new pid namespace, under
    /// `unshare --pid --fork --kill-child`, and waits for "Setup complete.".
    /// [`Daemon::pid`] is then unshare's: see [`Daemon::publisher_pid`].
    pub fn start_in_pid_namespace(path: &Path, args: &[&str]) -> Daemon {
        let mut unshare = Command::new("unshare");
        unshare
            .args(["--pid", "--fork", "--kill-child"])
            .arg(barrierd_bin());
        let mut daemon = Self::start_command(unshare, path, args);
        daemon.namespace_init = Some(only_child(daemon.pid()));
        daemon
    }

    /// Starts `COMMAND PATH ARGS...` (barrierd, set up by the caller) and
    /// waits for "Setup complete.".
    pub fn start_command(command: Command, path: &Path, args: &[&str]) -> Daemon {
        let daemon = Self::spawn_command(command, path, args, &[]);
        if !daemon.stderr.wait_for("Setup complete.", STARTUP_TIMEOUT) {
            panic!("daemon did not complete setup:\n{}", daemon.stderr.text());
        }
        daemon
    }

    fn spawn_command(
        mut command: Command,
        path: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Daemon {
        let mut child = command
            .arg(path)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting barrierd");
        let stderr = Output::default();
        stderr.collect(child.stderr.take().unwrap());
        Daemon {
            child,
            path: path.to_owned(),
            stderr,
            namespace_init: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The helper: the publisher's only child.
    pub fn helper_pid(&self) -> i32 {
        only_child(self.publisher_pid())
    }

    /// The publisher: the process started, or pid 1 of its namespace.
    pub fn publisher_pid(&self) -> i32 {
        self.namespace_init.unwrap_or_else(|| self.pid())
    }

    /// Signals the publisher (unshare, for a daemon in its own pid
    /// namespace, would not pass it on).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.publisher_pid()), signal).unwrap();
    }

    /// Waits for exit with a generous timeout; panics if it does not exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                self.stderr
                    .wait_for("\u{0}never", Duration::from_millis(200));
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "daemon did not exit within {timeout:?}:\n{}",
                    self.stderr.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait(Duration::from_secs(10));
        (status, self.stderr.text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(init) = self.namespace_init {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs barrierd to completion (for commands expected to fail fast).
pub fn run_barrierd(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let mut daemon = Daemon {
        child: Command::new(barrierd_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting barrierd"),
        path: PathBuf::new(),
        stderr: Output::default(),
        namespace_init: None,
    };
    daemon.stderr.collect(daemon.child.stderr.take().unwrap());
    let status = daemon.wait(timeout);
    (status, daemon.stderr.text())
}

fn only_child(pid: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let pids: Vec<i32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "children of {pid}: {pids:?}");
    pids[0]
}

pub use barrierd_client::monotonic_ns;

/// /proc/PID/status fields by name.
pub fn proc_status(pid: i32) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// Keeps CPUs busy in user mode until dropped.
pub struct BusyCpus {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCpus {
    /// `count` spinning threads, wherever the scheduler puts them.
    pub fn start(count: usize) -> Self {
        Self::spawn(vec![None; count])
    }

    /// One spinning thread, on `cpu`.
    pub fn pinned_to(cpu: usize) -> Self {
        Self::spawn(vec![Some(cpu)])
    }

    /// Returns once every thread runs (where it is pinned).
    fn spawn(cpus: Vec<Option<usize>>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (running, started) = std::sync::mpsc::channel();
        let threads: Vec<_> = cpus
            .into_iter()
            .map(|cpu| {
                let (stop, running) = (stop.clone(), running.clone());
                std::thread::spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_current_thread(cpu);
                    }
                    running.send(()).unwrap();
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        for _ in &threads {
            started.recv().unwrap();
        }
        Self { stop, threads }
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Restricts the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for any
    // cpu below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "cannot pin to CPU {cpu}"
        );
    }
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Mounts tracefs at /sys/kernel/tracing unless it is there (tests may race
/// to do so: a concurrent mount is fine).
pub fn ensure_tracefs() -> &'static Path {
    let root = Path::new("/sys/kernel/tracing");
    if !root.join("events").is_dir() {
        let status = Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(root)
            .status()
            .unwrap();
        assert!(
            status.success() || root.join("events").is_dir(),
            "could not mount tracefs"
        );
    }
    root
}

fn bpftool(args: &[&str]) -> serde_json::Value {
    let output = Command::new("bpftool")
        .args(args)
        .arg("-j")
        .output()
        .expect("running bpftool (scripts/setup installs it)");
    assert!(output.status.success(), "bpftool {args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The id of the helper's BPF map whose name ends with `suffix`, found
/// through the helper's own descriptors, so that other daemons' programs
/// are not mistaken for it.
pub fn helper_map_id(helper_pid: i32, suffix: &str) -> String {
    let fdinfo = std::fs::read_dir(format!("/proc/{helper_pid}/fdinfo")).unwrap();
    for entry in fdinfo {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .map(str::trim)
        else {
            continue;
        };
        if bpftool(&["map", "show", "id", id])["name"]
            .as_str()
            .is_some_and(|name| name.ends_with(suffix))
        {
            return id.to_owned();
        }
    }
    panic!("helper {helper_pid} holds no map named *{suffix}");
}

/// The id of the helper's BPF `.bss` map.
pub fn helper_bss_id(helper_pid: i32) -> String {
    helper_map_id(helper_pid, ".bss")
}

/// The helper's BPF `.bss` as bpftool formats it with BTF (field names of
/// bpf/barrierd.bpf.c and bpf/barrierd_shared.h): what BPF itself holds, not
/// what the daemon publishes.
pub fn helper_bss(helper_pid: i32) -> serde_json::Value {
    let dump = bpftool(&["map", "dump", "id", &helper_bss_id(helper_pid)]);
    let sections = dump[0]["formatted"]["value"][".bss"]
        .as_array()
        .cloned()
        .or_else(|| dump[0]["value"][".bss"].as_array().cloned())
        .expect("bpftool's dump of .bss has its BTF layout");
    let mut bss = serde_json::Map::new();
    for section in sections {
        bss.extend(section.as_object().unwrap().clone());
    }
    serde_json::Value::Object(bss)
}

/// The byte offset of variable `name` in the helper's `.bss` (the compiler
/// orders variables as it likes; BTF says where each went).
pub fn helper_bss_offset(helper_pid: i32, name: &str) -> usize {
    let id = helper_bss_id(helper_pid);
    let btf = bpftool(&["map", "show", "id", &id])["btf_id"].to_string();
    let output = Command::new("bpftool")
        .args(["btf", "dump", "id", &btf])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let needle = format!("(VAR '{name}')");
    let line = text
        .lines()
        .find(|l| l.contains(&needle) && l.contains("offset="))
        .unwrap_or_else(|| panic!("no {needle} in the .bss BTF"));
    line.split("offset=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A descriptor of the helper's map `id` (as root).
fn map_fd(id: u32) -> std::fs::File {
    // union bpf_attr for BPF_MAP_GET_FD_BY_ID: map_id, next_id, open_flags.
    let attr = [id, 0, 0, 0];
    // SAFETY: BPF_MAP_GET_FD_BY_ID (14) reads `attr`, valid for its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            14,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_GET_FD_BY_ID {id}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just gave us this descriptor.
    unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) }
}

/// The helper's `.bss`, mapped writable: for tests that put BPF memory into
/// a state that only an event the kernel does not trace would leave.
pub fn map_helper_bss(helper_pid: i32) -> memmap2::MmapRaw {
    let id: u32 = helper_bss_id(helper_pid).parse().unwrap();
    let value_size = bpftool(&["map", "show", "id", &id.to_string()])["bytes_value"]
        .as_u64()
        .unwrap();
    memmap2::MmapOptions::new()
        .len(value_size as usize)
        .map_raw(&map_fd(id))
        .unwrap()
}

/// The producer position of the helper's wake-up ring buffer (its second
/// page, which the kernel lets anyone holding the map map read-only): it
/// grows with every record BPF writes, so it counts signals.
pub struct RingProducer(memmap2::Mmap);

impl RingProducer {
    pub fn of_helper(helper_pid: i32) -> Self {
        let id: u32 = helper_map_id(helper_pid, "wakeups").parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        // SAFETY: a read-only shared mapping of the kernel's page; we read
        // it only through an atomic load.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(page)
                .len(page as usize)
                .map(&map_fd(id))
                .unwrap()
        };
        Self(map)
    }

    pub fn position(&self) -> u64 {
        // SAFETY: the page starts with the kernel's 8-byte aligned producer
        // position, which it stores atomically; read-only, so a relaxed
        // load, then an acquire fence.
        let position = unsafe { AtomicU64::from_ptr(self.0.as_ptr() as *mut u64) }
            .load(std::sync::atomic::Ordering::Relaxed);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        position
    }
}

/// A process's pids, outermost pid namespace first (/proc/PID/status NSpid).
pub fn ns_pids(pid: i32) -> Vec<i64> {
    proc_status(pid)["NSpid"]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// False (after printing why) when fewer than `count` CPUs are usable, so
/// that a test needing them skips; panics instead when
/// BARRIERD_REQUIRE_PRIVILEGED=1, exactly as [`privileged`] does.
pub fn enough_cpus(test: &str, count: usize) -> bool {
    let online = online_cpus();
    online >= count || skip(test, &format!("needs {count} usable CPUs, has {online}"))
}

#[macro_export]
macro_rules! require_cpus {
    ($count:expr) => {
        if !common::enough_cpus(module_path!(), $count) {
            return;
        }
    };
}
