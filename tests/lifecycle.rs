//! The real daemon, end to end: as root, loading BPF, attaching to
//! tracepoints on this kernel.
#![allow(unsafe_code)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use barrierd_client::layout::{self, word, BootId};
use barrierd_client::{Barrierd, Liveness};
use common::{monotonic_ns, proc_status, BusyCpus, Daemon, TempDir};

/// A read-only view of the published file, as any client maps it.
struct View {
    map: memmap2::Mmap,
}

impl View {
    fn open(path: &std::path::Path) -> Self {
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: the daemon only ever changes the file with atomic stores
        // and we only read it through atomics.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        Self { map }
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!((index + 1) * 8 <= self.map.len());
        // SAFETY: in bounds (checked), 8-byte aligned (page-aligned mapping).
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().cast::<u64>().add(index).cast_mut()) }
    }

    /// Relaxed, then an acquire fence: Rust promises only relaxed atomic
    /// loads on read-only memory.
    fn load(&self, index: usize) -> u64 {
        let value = self.word(index).load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        value
    }

    /// Waits until the global minimum passes `t`; panics after `timeout`.
    fn wait_past(&self, t: u64, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.load(word::LAST_INTERRUPT_NS) <= t {
            assert!(
                start.elapsed() < timeout,
                "last_interrupt_ns stuck at {} <= {t}",
                self.load(word::LAST_INTERRUPT_NS)
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        start.elapsed()
    }
}

const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn header_and_records_are_published() {
    require_privileged!();
    let dir = TempDir::new("header");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(meta.len() % 4096, 0);
    let lock = std::fs::metadata(dir.join("pub.lock")).unwrap();
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);

    let view = View::open(&path);
    let ncpu = barrierd_privsep::cpus::possible_cpus().unwrap();
    assert_eq!(view.load(word::NCPU), ncpu as u64);
    assert_eq!(view.load(word::MAGIC), layout::MAGIC);
    assert_eq!(&view.map[32..40], b"barrierd");
    assert_eq!(view.load(word::FORMAT_VERSION), layout::FORMAT_VERSION);
    assert_eq!(view.load(word::STATE), layout::STATE_RUNNING);
    assert_eq!(view.load(word::GENERATION), 1);
    assert_eq!(view.load(word::DAEMON_PID), daemon.pid() as u64);
    assert!(meta.len() as usize >= layout::file_bytes(ncpu));

    // Timestamps are CLOCK_MONOTONIC, in the past, and the global word is
    // the minimum of the per-CPU ones (read after them: it can only lag).
    view.wait_past(monotonic_ns(), GENEROUS);
    let now = monotonic_ns();
    let per_cpu: Vec<u64> = (0..ncpu)
        .map(|c| view.load(layout::cpu_ns_word(c)))
        .collect();
    let global = view.load(word::LAST_INTERRUPT_NS);
    assert!(
        per_cpu.iter().all(|&ns| ns > 0 && ns <= now),
        "{per_cpu:?} now {now}"
    );
    assert!(global <= *per_cpu.iter().min().unwrap());
    assert!(view.load(word::VTIME) > 0);

    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(view.load(word::STATE), layout::STATE_STOPPED);
}

#[test]
fn barrier_completes_on_idle_and_busy_machine() {
    require_privileged!();
    let dir = TempDir::new("progress");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let view = View::open(&path);
    for _ in 0..20 {
        view.wait_past(monotonic_ns(), GENEROUS);
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = BusyCpus::start(common::online_cpus());
    for _ in 0..20 {
        view.wait_past(monotonic_ns(), GENEROUS);
    }
    drop(busy);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

/// Two threads on one CPU bouncing a byte through two pipes: a context
/// switch every few microseconds, most of which the BPF program skips.
struct SwitchStorm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rounds: std::sync::Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SwitchStorm {
    fn start(cpu: usize) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;

        let pipe = || {
            let (rx, tx) = nix::unistd::pipe().unwrap();
            (std::fs::File::from(rx), std::fs::File::from(tx))
        };
        let (ping_rx, ping_tx) = pipe();
        let (pong_rx, pong_tx) = pipe();
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let pin = move || common::pin_current_thread(cpu);
        let echo = std::thread::spawn(move || {
            pin();
            let (mut rx, mut tx) = (ping_rx, pong_tx);
            let mut byte = [0u8];
            while rx.read_exact(&mut byte).is_ok() && tx.write_all(&byte).is_ok() {}
        });
        let (stop2, rounds2) = (stop.clone(), rounds.clone());
        let serve = std::thread::spawn(move || {
            pin();
            let (mut tx, mut rx) = (ping_tx, pong_rx);
            let mut byte = [0u8];
            while !stop2.load(Ordering::Relaxed) {
                tx.write_all(&byte).unwrap();
                rx.read_exact(&mut byte).unwrap();
                rounds2.fetch_add(1, Ordering::Relaxed);
            }
            // Dropping `tx` ends the echo thread.
        });
        Self {
            stop,
            rounds,
            threads: vec![echo, serve],
        }
    }
}

impl Drop for SwitchStorm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

#[test]
fn barrier_completes_during_a_switch_storm() {
    require_privileged!();
    let dir = TempDir::new("storm");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let view = View::open(&path);
    let storm = SwitchStorm::start(common::online_cpus() - 1);
    let started = Instant::now();
    for _ in 0..50 {
        view.wait_past(monotonic_ns(), GENEROUS);
    }
    let rounds = storm.rounds.load(Ordering::Relaxed);
    let switches_per_sec = 2.0 * rounds as f64 / started.elapsed().as_secs_f64();
    drop(storm);
    // Otherwise the storm was not one, and this test would show nothing.
    assert!(
        switches_per_sec > 20_000.0,
        "only {switches_per_sec:.0} switches/s"
    );
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

#[test]
fn futex_waiter_is_woken() {
    require_privileged!();
    let dir = TempDir::new("futex");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let view = View::open(&path);
    let low_half = view.word(word::LAST_INTERRUPT_NS).as_ptr().cast::<u32>();
    let target = monotonic_ns();
    let mut woken = 0;
    let deadline = Instant::now() + GENEROUS;
    while view.load(word::LAST_INTERRUPT_NS) <= target {
        assert!(Instant::now() < deadline, "never passed {target}");
        let seen = view.load(word::LAST_INTERRUPT_NS) as u32;
        let timeout = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: FUTEX_WAIT (shared: the waker is another process) on a
        // mapped, aligned u32; the kernel only reads it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                low_half,
                libc::FUTEX_WAIT,
                seen,
                &timeout,
                0,
                0,
            )
        };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if rc == 0 {
            woken += 1;
        } else {
            assert!(
                matches!(errno, Some(libc::EAGAIN) | Some(libc::EINTR)),
                "futex: {errno:?}"
            );
        }
    }
    assert!(
        woken > 0,
        "the wait passed without a single FUTEX_WAKE reaching us"
    );
    drop(daemon);
}

/// Both processes end up unprivileged, each under an account of its own:
/// the helper gives up root once its program is attached.
#[test]
fn both_processes_are_confined() {
    require_privileged!();
    let dir = TempDir::new("confined");
    let daemon = Daemon::start(&dir.join("pub"), &[]);
    let account = |name: &str| {
        nix::unistd::User::from_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no account {name}: run scripts/setup"))
    };
    for (pid, who, user) in [
        (daemon.publisher_pid(), "publisher", account("barrierd")),
        (daemon.helper_pid(), "helper", account("barrierd-helper")),
    ] {
        let status = proc_status(pid);
        let ids = |key: &str| -> Vec<String> {
            status[key].split_whitespace().map(str::to_owned).collect()
        };
        assert_eq!(
            ids("Uid"),
            vec![user.uid.to_string(); 4],
            "{who}: {status:?}"
        );
        assert_eq!(ids("Gid"), vec![user.gid.to_string(); 4], "{who}");
        assert!(ids("Groups").is_empty(), "{who} groups {:?}", ids("Groups"));
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status[set], "0000000000000000", "{who} {set}");
        }
        assert_eq!(status["Seccomp"], "2", "{who}");
        assert_eq!(status["NoNewPrivs"], "1", "{who}");
    }
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

/// The seeds' command line: numeric tracefs ids.
#[test]
fn numeric_tracepoint_ids() {
    require_privileged!();
    let events = common::ensure_tracefs().join("events");
    let ids: Vec<String> = [
        "irq/softirq_entry",
        "irq_vectors/local_timer_entry",
        "sched/sched_switch",
    ]
    .iter()
    .map(|tp| {
        std::fs::read_to_string(events.join(tp).join("id"))
            .unwrap()
            .trim()
            .to_owned()
    })
    .collect();
    let dir = TempDir::new("numeric");
    let path = dir.join("pub");
    let args: Vec<&str> = ids.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&path, &args);
    for name in ["softirq_entry", "local_timer_entry", "sched_switch"] {
        assert!(daemon
            .stderr
            .text()
            .contains(&format!("raw tracepoint {name}.")));
    }
    View::open(&path).wait_past(monotonic_ns(), GENEROUS);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

#[test]
fn sigint_stops_cleanly_and_restart_continues() {
    require_privileged!();
    let dir = TempDir::new("restart");
    let path = dir.join("pub");
    let mut daemon = Daemon::start(&path, &[]);
    let view = View::open(&path);
    view.wait_past(monotonic_ns(), GENEROUS);
    daemon.signal(nix::sys::signal::Signal::SIGINT);
    assert!(daemon.wait(GENEROUS).success(), "{}", daemon.stderr.text());
    let ns = view.load(word::LAST_INTERRUPT_NS);
    let vtime = view.load(word::VTIME);
    assert_eq!(view.load(word::STATE), layout::STATE_STOPPED);

    let daemon = Daemon::start(&path, &[]);
    assert_eq!(view.load(word::GENERATION), 2);
    assert!(view.load(word::LAST_INTERRUPT_NS) >= ns);
    assert!(view.load(word::VTIME) >= vtime);
    view.wait_past(monotonic_ns(), GENEROUS);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}

/// The vtime of a file that a daemon published to for a long time.
const OLD_VTIME: u64 = 1 << 40;

/// A file that a daemon published to during `boot` and left RUNNING when it
/// crashed: vtime [`OLD_VTIME`], generation 41, every time below this boot's
/// clock (so that "later than now" alone would keep them).
fn crashed_file(path: &std::path::Path, boot: BootId) {
    let ncpu = barrierd_privsep::cpus::possible_cpus().unwrap();
    let mut words = vec![0u64; 4096 / 8];
    words[word::NCPU] = ncpu as u64;
    words[word::VTIME] = OLD_VTIME;
    words[word::LAST_INTERRUPT_NS] = monotonic_ns() / 2;
    words[word::LAST_INTERRUPT_VTIME] = OLD_VTIME - 10;
    words[word::MAGIC] = layout::MAGIC;
    words[word::FORMAT_VERSION] = layout::FORMAT_VERSION;
    words[word::STATE] = layout::STATE_RUNNING;
    words[word::GENERATION] = 41;
    words[word::DAEMON_PID] = 4242;
    [words[word::BOOT_ID_0], words[word::BOOT_ID_1]] = boot.words();
    for cpu in 0..ncpu {
        words[layout::cpu_ns_word(cpu)] = words[word::LAST_INTERRUPT_NS] + cpu as u64;
        words[layout::cpu_vtime_word(cpu)] = OLD_VTIME - 10;
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Whether anyone holds a write lock on `file`: the daemon's liveness lock.
fn lock_held(file: &std::fs::File) -> bool {
    use std::os::fd::AsFd;
    let mut lock = libc::flock {
        l_type: libc::F_RDLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock)).unwrap();
    lock.l_type != libc::F_UNLCK as libc::c_short
}

#[test]
fn a_file_of_another_boot_is_reset_and_one_of_this_boot_continued() {
    require_privileged!();
    let current = BootId::current().unwrap();
    let [first, last] = current.words();
    let flipped = BootId::from_words([first, last ^ 0xff00]);
    for boot in [flipped, BootId::UNKNOWN, current] {
        let dir = TempDir::new("other-boot");
        let path = dir.join("pub");
        crashed_file(&path, boot);
        let view = View::open(&path);
        let client = Barrierd::open_even_if_stopped(&path).unwrap();
        let expected = if boot == current {
            Liveness::Dead
        } else {
            Liveness::OtherBoot
        };
        assert_eq!(client.liveness(), expected);

        // While the daemon starts, a client that sees its lock must see
        // this boot's id and the words it may trust, never the old ones.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (daemon, locked_samples) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                let mut locked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !lock_held(&file) {
                        continue;
                    }
                    let seen = BootId::from_words([
                        view.load(word::BOOT_ID_0),
                        view.load(word::BOOT_ID_1),
                    ]);
                    let vtime = view.load(word::VTIME);
                    assert_eq!(seen, current, "locked, but the boot id is {seen:?}");
                    if boot != current {
                        assert!(vtime < OLD_VTIME, "locked, but vtime is still {vtime}");
                    }
                    locked += 1;
                }
                locked
            });
            let daemon = Daemon::start(&path, &[]);
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
            (
                daemon,
                sampler.join().expect("a client saw a stale locked file"),
            )
        });
        assert!(locked_samples > 0, "never saw the daemon's lock");

        let ncpu = view.load(word::NCPU) as usize;
        let vtimes: Vec<u64> = [word::VTIME, word::LAST_INTERRUPT_VTIME]
            .into_iter()
            .chain((0..ncpu).map(layout::cpu_vtime_word))
            .map(|index| view.load(index))
            .collect();
        if boot == current {
            assert!(vtimes.iter().all(|&v| v >= OLD_VTIME - 10), "{vtimes:?}");
        } else {
            assert!(vtimes.iter().all(|&v| v < 1 << 20), "{boot:?}: {vtimes:?}");
        }
        assert_eq!(view.load(word::GENERATION), 42);
        assert_eq!(
            [view.load(word::BOOT_ID_0), view.load(word::BOOT_ID_1)],
            current.words()
        );
        assert_eq!(view.load(word::DAEMON_PID), daemon.pid() as u64);
        // The client that mapped the stale file uses the daemon now.
        assert_eq!(client.liveness(), Liveness::Running);
        client.heavy_barrier(GENEROUS).unwrap();
        let (status, stderr) = daemon.stop();
        assert!(status.success(), "{status}\n{stderr}");
    }
}

fn assert_fails(args: &[&str], code: i32, needle: &str) -> String {
    let (status, stderr) = common::run_barrierd(args, GENEROUS);
    assert_eq!(status.code(), Some(code), "{args:?}: {status}\n{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in:\n{stderr}"
    );
    stderr
}

#[test]
fn bad_tracepoints_are_refused() {
    require_privileged!();
    let dir = TempDir::new("badtp");
    let path = dir.join("pub");
    let path = path.to_str().unwrap();
    assert_fails(&[path, "sched_switch"], 1, "expected group/name");
    assert_fails(
        &[path, "nosuch/no_such_tracepoint"],
        1,
        "no_such_tracepoint",
    );
    common::ensure_tracefs();
    assert_fails(&[path, "4294967"], 1, "no tracepoint has id 4294967");
}

#[test]
fn numeric_id_without_tracefs_says_how_to_mount_it() {
    require_privileged!();
    let dir = TempDir::new("notracefs");
    let path = dir.join("pub");
    // A private mount namespace in which tracefs is not mounted anywhere.
    // debugfs goes too: where it is mounted, a lookup of its tracing
    // directory mounts tracefs there again.
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(common::barrierd_bin())
        .arg(&path)
        .arg("316")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mount -t tracefs nodev /sys/kernel/tracing"),
        "{stderr}"
    );
    assert!(!path.exists());
}

#[test]
fn start_without_the_boot_id_is_refused_before_touching_path() {
    require_privileged!();
    let dir = TempDir::new("noboot");
    let path = dir.join("pub");
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs none /proc/sys/kernel/random && exec \"$0\" \"$@\"")
        .arg(common::barrierd_bin())
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read this boot's id from /proc/sys/kernel/random/boot_id"),
        "{stderr}"
    );
    assert!(!path.exists());
    assert!(!dir.join("pub.lock").exists());
}

#[test]
fn missing_helper_is_refused() {
    require_privileged!();
    let dir = TempDir::new("nohelper");
    let path = dir.join("pub");
    assert_fails(
        &[
            path.to_str().unwrap(),
            "--helper",
            "/nonexistent/barrierd-helper",
        ],
        1,
        "helper /nonexistent/barrierd-helper not found",
    );
    assert!(!path.exists(), "a refused start must not create the file");
}

#[test]
fn a_helper_others_could_have_written_is_refused() {
    require_privileged!();
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = TempDir::new("untrustedhelper");
    let path = dir.join("pub");
    let helper = dir.join("barrierd-helper");
    std::fs::copy(common::helper_bin(), &helper).unwrap();
    let set_mode = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let start = |expected: &str| {
        assert_fails(
            &[path.to_str().unwrap(), "--helper", helper.to_str().unwrap()],
            1,
            expected,
        );
        assert!(!path.exists(), "a refused start must not create the file");
    };
    set_mode(&helper, 0o777);
    start("has mode 777: others may write it; refusing to run it as root");
    set_mode(&helper, 0o755);
    chown(&helper, Some(65534), None).unwrap();
    start("is owned by uid 65534");
    chown(&helper, Some(0), None).unwrap();
    set_mode(&dir.0, 0o777);
    start(&format!("directory {} has mode 777", dir.0.display()));
    set_mode(&dir.0, 0o755);
    // As installed: root's, 0755, in root's 0755 directory (under sticky /tmp).
    let daemon = Daemon::start(&path, &["--helper", helper.to_str().unwrap()]);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn non_root_start_is_refused() {
    require_privileged!();
    let dir = TempDir::new("nonroot");
    let path = dir.join("pub");
    let output = std::process::Command::new(common::barrierd_bin())
        .arg(&path)
        .env_clear()
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("must be started as root"), "{stderr}");
    assert!(!path.exists());
}

#[test]
fn bad_command_line_exits_2() {
    // No PATH is fine (the default); an unknown option is not.
    let (status, stderr) = common::run_barrierd(&["--no-such-option"], GENEROUS);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Usage"), "{stderr}");
    for bound in ["0", "60001", "soon"] {
        let (status, stderr) =
            common::run_barrierd(&["/tmp/unused", "--prod-after", bound], GENEROUS);
        assert_eq!(status.code(), Some(2), "{bound}: {stderr}");
        assert!(stderr.contains("--prod-after"), "{bound}: {stderr}");
    }
}

/// Type=notify: READY=1 once the file is live, STOPPING=1 on SIGTERM, both
/// from the main process (the publisher), as NotifyAccess=main requires.
#[test]
fn tells_the_service_manager_when_ready_and_stopping() {
    require_privileged!();
    let dir = TempDir::new("notify");
    let socket_path = dir.join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    manager.set_read_timeout(Some(GENEROUS)).unwrap();
    let path = dir.join("pub");
    let daemon = Daemon::spawn_with_env(&path, &[], &[("NOTIFY_SOCKET", &socket_path)]);
    let mut buf = [0u8; 256];
    let n = manager
        .recv(&mut buf)
        .expect("no READY=1 within the timeout");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1"), "{ready:?}");
    assert_eq!(View::open(&path).load(word::STATE), layout::STATE_RUNNING);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
    let n = manager.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// A cpuset cgroup limited to some CPUs, removed on drop (cgroup v1's
/// cpuset hierarchy, or v2's with the controller enabled for children).
struct Cpuset(std::path::PathBuf);

impl Cpuset {
    fn new(name: &str, cpus: &str) -> Self {
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpuset");
        let dir = if v1.join("cpuset.cpus").exists() {
            v1.join(name)
        } else {
            let root = std::path::Path::new("/sys/fs/cgroup");
            std::fs::write(root.join("cgroup.subtree_control"), "+cpuset")
                .expect("enabling the cpuset controller");
            root.join(name)
        };
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let cgroup = Self(dir);
        std::fs::write(cgroup.0.join("cpuset.cpus"), cpus).unwrap();
        std::fs::write(cgroup.0.join("cpuset.mems"), "0").unwrap();
        cgroup
    }

    /// `sh -c` that moves itself into the cgroup, then runs its arguments.
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$@\"",
                self.0.display()
            ))
            .arg("sh")
            .arg(common::barrierd_bin());
        command
    }
}

impl Drop for Cpuset {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Started in a cpuset without CPU 1, the daemon cannot run there to make
/// it switch: it says so and starts, and CPU 1 records its state at its
/// next event, so barriers still complete.
#[test]
fn a_cpu_outside_the_cpuset_is_skipped_and_named() {
    require_privileged!();
    require_cpus!(2);
    let dir = TempDir::new("cpuset");
    let path = dir.join("pub");
    let cpuset = Cpuset::new(&format!("barrierd-test-{}", std::process::id()), "0");
    let daemon = Daemon::start_command(cpuset.command(), &path, &[]);
    assert_eq!(
        proc_status(daemon.helper_pid())["Cpus_allowed_list"],
        "0",
        "the helper runs in the cpuset"
    );
    let log = daemon.stderr.text();
    assert!(
        log.contains("CPU 1 went offline or is outside our cpuset"),
        "{log}"
    );
    Barrierd::open(&path)
        .unwrap()
        .heavy_barrier(Duration::from_secs(30))
        .unwrap();
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}
