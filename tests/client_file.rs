//! The client library, the C header and the C examples against files this
//! test writes itself, with the test standing in for the daemon (it holds the
//! liveness lock, or not). No root needed.

mod common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barrierd_client::layout::{self, word, BootId};
use barrierd_client::{
    Barrier, BarrierError, Barrierd, Fallback, Liveness, OpenError, Via, WaitError, Why,
};
use common::{compile_c, repo, TempDir};

/// "name value" lines into a map.
fn parse_pairs(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("name value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// A file in the daemon's format, with the test playing the daemon.
struct FakeDaemon {
    path: PathBuf,
    file: File,
    /// The liveness lock, held while `Some`.
    lock: Option<File>,
}

impl FakeDaemon {
    /// A running daemon's file with distinct, recognisable words, written
    /// during this boot.
    fn running(path: &Path, ncpu: u64) -> FakeDaemon {
        let mut words = vec![0u64; 4096 / 8];
        words[word::NCPU] = ncpu;
        words[word::VTIME] = 1_000;
        words[word::LAST_INTERRUPT_VTIME] = 990;
        words[word::MAGIC] = layout::MAGIC;
        words[word::FORMAT_VERSION] = layout::FORMAT_VERSION;
        words[word::STATE] = layout::STATE_RUNNING;
        words[word::GENERATION] = 7;
        words[word::DAEMON_PID] = 4242;
        [words[word::BOOT_ID_0], words[word::BOOT_ID_1]] = BootId::current().unwrap().words();
        for cpu in 0..ncpu as usize {
            words[layout::cpu_ns_word(cpu)] = 5_000_000_000 + 1_000 * cpu as u64;
            words[layout::cpu_vtime_word(cpu)] = 990 + cpu as u64;
        }
        words[word::LAST_INTERRUPT_NS] = 5_000_000_000;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        std::fs::write(path, bytes).unwrap();
        let file = File::options().read(true).write(true).open(path).unwrap();
        let mut fake = FakeDaemon {
            path: path.to_owned(),
            file,
            lock: None,
        };
        fake.lock();
        fake
    }

    /// What a crash during another boot leaves behind: still RUNNING, every
    /// time far ahead of this boot's clock, and `boot` in its boot id words.
    /// Its lock is held, so that only the boot id tells.
    fn previous_boot(path: &Path, boot: BootId) -> FakeDaemon {
        let fake = FakeDaemon::running(path, 2);
        fake.set(word::LAST_INTERRUPT_NS, u64::MAX - 10);
        fake.set(word::LAST_INTERRUPT_VTIME, u64::MAX - 10);
        for cpu in 0..2 {
            fake.set(layout::cpu_ns_word(cpu), u64::MAX - 10 + cpu as u64);
            fake.set(layout::cpu_vtime_word(cpu), u64::MAX - 10);
        }
        fake.set_boot(boot);
        fake
    }

    fn set_boot(&self, boot: BootId) {
        let [first, last] = boot.words();
        self.set(word::BOOT_ID_0, first);
        self.set(word::BOOT_ID_1, last);
    }

    fn set(&self, index: usize, value: u64) {
        self.file
            .write_all_at(&value.to_ne_bytes(), index as u64 * 8)
            .unwrap();
    }

    /// Takes the daemon's OFD write lock on a descriptor of its own.
    fn lock(&mut self) {
        let file = OpenOptions::new().write(true).open(&self.path).unwrap();
        let lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)).unwrap();
        self.lock = Some(file);
    }

    /// As SIGKILL would: the lock goes, the state word stays RUNNING.
    fn kill(&mut self) {
        self.lock = None;
    }

    /// As a clean stop would, but without the futex wake-up.
    fn stop(&mut self) {
        self.set(word::STATE, layout::STATE_STOPPED);
        self.lock = None;
    }
}

#[test]
fn header_layout_matches_the_rust_layout() {
    let dir = TempDir::new("client-layout");
    let source = dir.join("layout.c");
    std::fs::write(
        &source,
        r#"
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "barrierd.h"
#define HEADER(f) printf(#f " %zu\n", offsetof(struct barrierd_mapped_data, f))
#define PER_CPU(f) printf("per_cpu." #f " %zu\n", offsetof(struct barrierd_per_cpu, f))
int main(void)
{
	uint64_t magic;

	HEADER(ncpu); HEADER(vtime); HEADER(last_interrupt_ns);
	HEADER(last_interrupt_vtime); HEADER(magic); HEADER(format_version);
	HEADER(state); HEADER(generation); HEADER(daemon_pid); HEADER(prods);
	HEADER(boot_id); HEADER(reserved);
	HEADER(per_cpu);
	PER_CPU(last_interrupt_ns); PER_CPU(last_interrupt_vtime);
	printf("sizeof_header %zu\n", sizeof(struct barrierd_mapped_data));
	printf("sizeof_per_cpu %zu\n", sizeof(struct barrierd_per_cpu));
	printf("sizeof_boot_id %zu\n", sizeof(((struct barrierd_mapped_data *)0)->boot_id));
	printf("sizeof_reserved %zu\n", sizeof(((struct barrierd_mapped_data *)0)->reserved));
	memcpy(&magic, BARRIERD_MAGIC_BYTES, sizeof(magic));
	printf("magic_value %llu\n", (unsigned long long)magic);
	printf("format_version_value %d\n", BARRIERD_FORMAT_VERSION);
	printf("state_stopped %d\n", BARRIERD_STATE_STOPPED);
	printf("state_running %d\n", BARRIERD_STATE_RUNNING);
	printf("probe_ns %llu\n", BARRIERD_PROBE_NS);
	return 0;
}
"#,
    )
    .unwrap();
    let binary = dir.join("layout");
    compile_c(&source, &binary);
    let output = Command::new(&binary).output().unwrap();
    assert!(output.status.success());
    let c = parse_pairs(&String::from_utf8(output.stdout).unwrap());

    let per_cpu = layout::PER_CPU_WORDS * 8;
    let rust: BTreeMap<String, u64> = [
        ("ncpu", word::NCPU * 8),
        ("vtime", word::VTIME * 8),
        ("last_interrupt_ns", word::LAST_INTERRUPT_NS * 8),
        ("last_interrupt_vtime", word::LAST_INTERRUPT_VTIME * 8),
        ("magic", word::MAGIC * 8),
        ("format_version", word::FORMAT_VERSION * 8),
        ("state", word::STATE * 8),
        ("generation", word::GENERATION * 8),
        ("daemon_pid", word::DAEMON_PID * 8),
        ("prods", word::PRODS * 8),
        ("boot_id", word::BOOT_ID_0 * 8),
        (
            "sizeof_boot_id",
            (word::BOOT_ID_1 + 1 - word::BOOT_ID_0) * 8,
        ),
        ("reserved", (word::BOOT_ID_1 + 1) * 8),
        (
            "sizeof_reserved",
            layout::HEADER_BYTES - (word::BOOT_ID_1 + 1) * 8,
        ),
        ("per_cpu", layout::HEADER_BYTES),
        ("sizeof_header", layout::HEADER_BYTES),
        ("per_cpu.last_interrupt_ns", 0),
        (
            "per_cpu.last_interrupt_vtime",
            (layout::cpu_vtime_word(0) - layout::cpu_ns_word(0)) * 8,
        ),
        ("sizeof_per_cpu", per_cpu),
        (
            "probe_ns",
            barrierd_client::PROBE_INTERVAL.as_nanos() as usize,
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value as u64))
    .chain([
        ("magic_value".to_owned(), layout::MAGIC),
        ("format_version_value".to_owned(), layout::FORMAT_VERSION),
        ("state_stopped".to_owned(), layout::STATE_STOPPED),
        ("state_running".to_owned(), layout::STATE_RUNNING),
    ])
    .collect();
    assert_eq!(c, rust);
    assert_eq!(word::BOOT_ID_1, word::BOOT_ID_0 + 1);
    assert_eq!(
        layout::cpu_ns_word(1) - layout::cpu_ns_word(0),
        layout::PER_CPU_WORDS
    );
    assert_eq!(layout::file_bytes(3), layout::HEADER_BYTES + 3 * per_cpu);
}

#[test]
fn c_and_rust_read_the_same_words() {
    let dir = TempDir::new("client-same-words");
    let _fake = FakeDaemon::running(&dir.join("pub"), 3);
    let dump = dir.join("dump");
    compile_c(&repo().join("examples/dump.c"), &dump);
    let output = Command::new(&dump).arg(dir.join("pub")).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let c = parse_pairs(&String::from_utf8(output.stdout).unwrap());

    let bd = Barrierd::open(dir.join("pub")).unwrap();
    let mut rust = BTreeMap::from([
        ("ncpu".to_owned(), bd.ncpu() as u64),
        ("vtime".to_owned(), bd.vtime()),
        ("last_interrupt_ns".to_owned(), bd.last_interrupt_ns()),
        ("last_interrupt_vtime".to_owned(), bd.last_interrupt_vtime()),
        ("format_version".to_owned(), layout::FORMAT_VERSION),
        ("state".to_owned(), layout::STATE_RUNNING),
        ("generation".to_owned(), bd.generation()),
        ("daemon_pid".to_owned(), bd.daemon_pid()),
        ("boot_id[0]".to_owned(), bd.boot_id().words()[0]),
        ("boot_id[1]".to_owned(), bd.boot_id().words()[1]),
    ]);
    for cpu in 0..bd.ncpu() {
        let ns = bd.cpu_last_interrupt_ns(cpu).unwrap();
        let vtime = bd.cpu_last_interrupt_vtime(cpu).unwrap();
        rust.insert(format!("per_cpu[{cpu}].last_interrupt_ns"), ns);
        rust.insert(format!("per_cpu[{cpu}].last_interrupt_vtime"), vtime);
    }
    assert_eq!(c, rust);
    // And both read what was written, not the same wrong thing.
    assert_eq!(c["per_cpu[2].last_interrupt_ns"], 5_000_002_000);
    assert_eq!((bd.generation(), bd.daemon_pid()), (7, 4242));
    assert_eq!(bd.boot_id(), BootId::current().unwrap());
    assert_eq!(bd.cpu_last_interrupt_ns(3), None);
    assert_eq!(bd.cpu_last_interrupt_vtime(3), None);
}

#[test]
fn c_example_reports_a_daemon_that_is_not_running() {
    let dir = TempDir::new("client-c-stopped");
    let mut fake = FakeDaemon::running(&dir.join("pub"), 2);
    fake.stop();
    let client = dir.join("client");
    compile_c(&repo().join("examples/client.c"), &client);
    let output = Command::new(&client)
        .arg(dir.join("pub"))
        .arg("1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("daemon not running"), "{stderr}");
}

fn open_error(path: &Path) -> OpenError {
    Barrierd::open(path).expect_err("open should fail")
}

#[test]
fn open_says_what_is_wrong_with_the_file() {
    let dir = TempDir::new("client-open-errors");
    let path = dir.join("pub");
    assert!(matches!(open_error(&path), OpenError::NoFile { .. }));
    assert!(open_error(&path).to_string().contains("daemon not running"));
    let directory = open_error(&dir.0);
    assert!(matches!(directory, OpenError::Directory { .. }));
    assert!(
        directory.to_string().contains(
            "open the barrierd file in it (the daemon's default is /run/barrierd/public_file)"
        ),
        "{directory}"
    );
    nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(matches!(
        open_error(&dir.join("fifo")),
        OpenError::NotRegular { .. }
    ));

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(open_error(&path), OpenError::NotBarrierd { .. }));
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    assert!(matches!(open_error(&path), OpenError::NotBarrierd { .. }));

    let fake = FakeDaemon::running(&path, 2);
    fake.set(word::FORMAT_VERSION, 2);
    assert!(matches!(
        open_error(&path),
        OpenError::Version {
            found: 2,
            expected: layout::FORMAT_VERSION,
            ..
        }
    ));
    fake.set(word::FORMAT_VERSION, layout::FORMAT_VERSION);
    fake.set(word::NCPU, 0);
    assert!(matches!(open_error(&path), OpenError::NotBarrierd { .. }));
    // 4096 bytes hold (4096 - 128) / 16 = 248 records, not 249.
    fake.set(word::NCPU, 249);
    assert!(matches!(
        open_error(&path),
        OpenError::TooShort { ncpu: 249, .. }
    ));
    fake.set(word::NCPU, u64::MAX);
    assert!(matches!(open_error(&path), OpenError::TooShort { .. }));
    fake.set(word::NCPU, 248);
    assert_eq!(Barrierd::open(&path).unwrap().ncpu(), 248);
}

#[test]
fn open_tells_a_running_daemon_from_a_stopped_starting_or_dead_one() {
    let dir = TempDir::new("client-open-liveness");
    let path = dir.join("pub");
    let mut fake = FakeDaemon::running(&path, 2);
    assert_eq!(Barrierd::open(&path).unwrap().liveness(), Liveness::Running);

    fake.set(word::STATE, layout::STATE_STOPPED);
    assert!(matches!(
        open_error(&path),
        OpenError::NotRunning {
            liveness: Liveness::Starting,
            ..
        }
    ));

    fake.stop();
    let error = open_error(&path);
    assert!(matches!(
        error,
        OpenError::NotRunning {
            liveness: Liveness::Stopped,
            ..
        }
    ));
    assert!(error.to_string().contains("daemon not running (stopped)"));
    let stopped = Barrierd::open_even_if_stopped(&path).unwrap();
    assert_eq!(stopped.liveness(), Liveness::Stopped);

    fake.set(word::STATE, layout::STATE_RUNNING);
    fake.kill();
    assert!(matches!(
        open_error(&path),
        OpenError::NotRunning {
            liveness: Liveness::Dead,
            ..
        }
    ));

    // A daemon coming back is seen through the mapping already open.
    fake.lock();
    assert_eq!(stopped.liveness(), Liveness::Running);
}

#[test]
fn fast_path_checks_compare_with_the_global_words() {
    let dir = TempDir::new("client-fast-path");
    let _fake = FakeDaemon::running(&dir.join("pub"), 2);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    assert!(bd.passed_ns(4_999_999_999));
    assert!(!bd.passed_ns(5_000_000_000));
    assert!(bd.passed_vtime(989));
    assert!(!bd.passed_vtime(990));
}

#[test]
fn waits_return_at_once_when_already_past() {
    let dir = TempDir::new("client-wait-past");
    let _fake = FakeDaemon::running(&dir.join("pub"), 2);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    assert_eq!(bd.wait_ns(1, Duration::ZERO), Ok(5_000_000_000));
    assert_eq!(bd.wait_vtime(989, Duration::ZERO), Ok(990));
}

#[test]
fn waits_time_out_when_nothing_is_published() {
    let dir = TempDir::new("client-wait-timeout");
    let _fake = FakeDaemon::running(&dir.join("pub"), 2);
    let bd = Barrierd::open(dir.join("pub")).unwrap();
    let timeout = Duration::from_millis(250);
    let start = Instant::now();
    assert!(matches!(
        bd.heavy_barrier(timeout),
        Err(WaitError::TimedOut { .. })
    ));
    assert!(start.elapsed() >= timeout);
    assert!(matches!(
        bd.wait_vtime(990, timeout),
        Err(WaitError::TimedOut { .. })
    ));
}

/// The waits run on the real mapping and futex; the test only checks that
/// they end with the right error well inside their own (long) timeout.
fn wait_while(fake: &mut FakeDaemon, change: fn(&mut FakeDaemon)) -> WaitError {
    let bd = Barrierd::open(&fake.path).unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| bd.wait_ns(u64::MAX - 1, Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(50));
        change(fake);
        waiter.join().unwrap().expect_err("nothing was published")
    })
}

#[test]
fn a_wait_notices_a_killed_daemon() {
    let dir = TempDir::new("client-wait-killed");
    let mut fake = FakeDaemon::running(&dir.join("pub"), 2);
    let error = wait_while(&mut fake, FakeDaemon::kill);
    assert!(
        matches!(
            error,
            WaitError::NotRunning {
                liveness: Liveness::Dead,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_wait_notices_a_stop_even_without_a_wake_up() {
    let dir = TempDir::new("client-wait-stopped");
    let mut fake = FakeDaemon::running(&dir.join("pub"), 2);
    let error = wait_while(&mut fake, FakeDaemon::stop);
    assert!(
        matches!(
            error,
            WaitError::NotRunning {
                liveness: Liveness::Stopped,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn barrier_without_fallback_fails_with_the_reason() {
    let dir = TempDir::new("client-barrier-none");
    assert!(matches!(
        Barrier::open(dir.join("pub"), Fallback::None),
        Err(BarrierError::Open(OpenError::NoFile { .. }))
    ));
    let mut fake = FakeDaemon::running(&dir.join("pub"), 2);
    let barrier = Barrier::open(dir.join("pub"), Fallback::None)
        .unwrap()
        .with_timeout(Duration::from_secs(600));
    fake.kill();
    let error = barrier.heavy().unwrap_err();
    assert!(
        matches!(
            error,
            BarrierError::Wait(WaitError::NotRunning {
                liveness: Liveness::Dead,
                ..
            })
        ),
        "{error}"
    );
    // Known dead now: the next call says so without waiting a probe slice.
    assert!(matches!(barrier.heavy(), Err(BarrierError::Wait(_))));
}

#[test]
fn barrier_falls_back_to_membarrier() {
    let dir = TempDir::new("client-barrier-membarrier");
    let missing = Barrier::open(dir.join("pub"), Fallback::Membarrier).unwrap();
    assert!(matches!(
        missing.unavailable().as_deref(),
        Some(OpenError::NoFile { .. })
    ));
    assert_eq!(missing.heavy().unwrap(), Via::Membarrier(Why::Unavailable));

    let mut fake = FakeDaemon::running(&dir.join("pub"), 2);
    fake.stop();
    let barrier = Barrier::open(dir.join("pub"), Fallback::Membarrier)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    assert!(barrier.daemon().is_some());
    assert_eq!(
        barrier.heavy().unwrap(),
        Via::Membarrier(Why::NotRunning(Liveness::Stopped))
    );
    fake.set(word::STATE, layout::STATE_RUNNING);
    assert_eq!(
        barrier.heavy().unwrap(),
        Via::Membarrier(Why::NotRunning(Liveness::Dead))
    );
    // Running again, but this fake never publishes: the wait times out.
    fake.lock();
    assert_eq!(barrier.heavy().unwrap(), Via::Membarrier(Why::TimedOut));
}

/// `open-default`: barrierd_open_default, then the status and its
/// explanation.
const C_OPEN_DEFAULT: &str = r#"
#include <stdio.h>
#include "barrierd.h"
int main(void)
{
	struct barrierd_client c;
	int status = barrierd_open_default(&c);

	printf("%s %d %s\n", barrierd_default_path(), status, barrierd_explain(&c, status));
	return 0;
}
"#;

#[test]
fn c_open_default_reads_barrierd_file_and_names_a_directory() {
    let dir = TempDir::new("client-c-default");
    let path = dir.join("pub");
    let _fake = FakeDaemon::running(&path, 2);
    std::fs::write(dir.join("open_default.c"), C_OPEN_DEFAULT).unwrap();
    let program = dir.join("open_default");
    compile_c(&dir.join("open_default.c"), &program);
    let run = |file: Option<&Path>| {
        let mut command = Command::new(&program);
        match file {
            Some(file) => command.env("BARRIERD_FILE", file),
            None => command.env_remove("BARRIERD_FILE"),
        };
        let output = command.output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(run(Some(&path)), format!("{} 0 success", path.display()));
    assert_eq!(
        run(Some(&dir.0)),
        format!(
            "{} -2 a directory: open the barrierd file in it (the daemon's default is /run/barrierd/public_file)",
            dir.0.display()
        )
    );
    assert!(run(None).starts_with("/run/barrierd/public_file "));
    assert_eq!(barrierd_client::DEFAULT_PATH, "/run/barrierd/public_file");
}

/// `fallback PATH`: opens PATH (ignoring failure) and prints what
/// barrierd_heavy_barrier_or_membarrier returns.
const C_FALLBACK: &str = r#"
#include <stdio.h>
#include "barrierd.h"
int main(int argc, char **argv)
{
	struct barrierd_client c;

	if (argc != 2)
		return 2;
	barrierd_open(&c, argv[1]);
	printf("%d\n", barrierd_heavy_barrier_or_membarrier(&c, 200000000ULL));
	return 0;
}
"#;

#[test]
fn c_helpers_fall_back_to_membarrier() {
    let dir = TempDir::new("client-c-fallback");
    let path = dir.join("pub");
    std::fs::write(dir.join("fallback.c"), C_FALLBACK).unwrap();
    let program = dir.join("fallback");
    compile_c(&dir.join("fallback.c"), &program);
    let run = || {
        let output = Command::new(&program).arg(&path).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(run(), "1", "no file: membarrier");
    let mut fake = FakeDaemon::running(&path, 2);
    assert_eq!(run(), "1", "running, but nothing published: times out");
    fake.set(word::LAST_INTERRUPT_NS, u64::MAX / 2);
    assert_eq!(run(), "0", "through the daemon");
    fake.set(word::LAST_INTERRUPT_NS, 0);
    fake.stop();
    assert_eq!(run(), "1", "stopped: membarrier");
}

/// A daemon that starts after the Barrier was opened, or that restarts on a
/// new file at the path, is used once the Barrier opens the path again (at
/// most once per REOPEN_INTERVAL), not membarrier for ever.
#[test]
fn a_barrier_finds_a_daemon_that_starts_later_or_on_a_new_file() {
    let dir = TempDir::new("client-barrier-reopen");
    let path = dir.join("pub");
    let barrier = Barrier::open(&path, Fallback::Membarrier)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    assert_eq!(barrier.heavy().unwrap(), Via::Membarrier(Why::Unavailable));

    let publish = |fake: &FakeDaemon| fake.set(word::LAST_INTERRUPT_NS, u64::MAX / 2);
    let mut first = FakeDaemon::running(&path, 2);
    publish(&first);
    std::thread::sleep(barrierd_client::REOPEN_INTERVAL);
    assert_eq!(barrier.heavy().unwrap(), Via::Daemon);
    let first_file = barrier.daemon().unwrap();

    // Stopped before it published past the next T.
    first.set(word::LAST_INTERRUPT_NS, 0);
    first.stop();
    std::fs::remove_file(&path).unwrap();
    let second = FakeDaemon::running(&path, 2);
    publish(&second);
    assert_eq!(
        barrier.heavy().unwrap(),
        Via::Membarrier(Why::NotRunning(Liveness::Stopped)),
        "the old file says stopped"
    );
    // Until REOPEN_INTERVAL after the last open, which found the first.
    std::thread::sleep(barrierd_client::REOPEN_INTERVAL);
    assert_eq!(barrier.heavy().unwrap(), Via::Daemon);
    assert!(!std::sync::Arc::ptr_eq(
        &first_file,
        &barrier.daemon().unwrap()
    ));
}

/// This boot's id with one byte flipped, and the all-zero id of a file
/// written by a daemon that did not record boots.
fn other_boots() -> [BootId; 2] {
    let [first, last] = BootId::current().unwrap().words();
    [BootId::from_words([first ^ 0xff, last]), BootId::UNKNOWN]
}

#[test]
fn a_file_of_another_boot_is_not_running_whatever_it_says() {
    for boot in other_boots() {
        let dir = TempDir::new("client-other-boot");
        let path = dir.join("pub");
        let _fake = FakeDaemon::previous_boot(&path, boot);
        let error = open_error(&path);
        assert!(
            matches!(
                error,
                OpenError::NotRunning {
                    liveness: Liveness::OtherBoot,
                    ..
                }
            ),
            "{boot:?}: {error}"
        );
        assert!(
            error.to_string().contains(
                "daemon not running (the file was written during another boot, and no daemon has started on it since)"
            ),
            "{error}"
        );

        let stale = Barrierd::open_even_if_stopped(&path).unwrap();
        assert_eq!(stale.liveness(), Liveness::OtherBoot);
        assert_eq!(stale.boot_id(), boot);
        let started = Instant::now();
        for result in [
            stale.heavy_barrier(Duration::from_secs(600)),
            stale.wait_ns(0, Duration::from_secs(600)).map(drop),
            stale
                .wait_vtime(stale.begin_vtime(), Duration::from_secs(600))
                .map(drop),
        ] {
            assert_eq!(
                result,
                Err(WaitError::NotRunning {
                    path: path.clone(),
                    liveness: Liveness::OtherBoot
                }),
                "{boot:?}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(1));

        assert!(matches!(
            Barrier::open(&path, Fallback::None),
            Err(BarrierError::Open(OpenError::NotRunning {
                liveness: Liveness::OtherBoot,
                ..
            }))
        ));
        let barrier = Barrier::open(&path, Fallback::Membarrier).unwrap();
        assert_eq!(
            barrier.heavy().unwrap(),
            Via::Membarrier(Why::NotRunning(Liveness::OtherBoot))
        );
    }
}

#[test]
fn a_mapped_file_whose_boot_changes_completes_no_more_barriers() {
    for boot in other_boots() {
        let dir = TempDir::new("client-boot-changes");
        let fake = FakeDaemon::running(&dir.join("pub"), 2);
        fake.set(word::LAST_INTERRUPT_NS, u64::MAX - 10);
        let bd = Barrierd::open(dir.join("pub")).unwrap();
        assert_eq!(bd.heavy_barrier(Duration::ZERO), Ok(()));
        fake.set_boot(boot);
        assert_eq!(bd.liveness(), Liveness::OtherBoot);
        assert!(matches!(
            bd.heavy_barrier(Duration::from_secs(600)),
            Err(WaitError::NotRunning {
                liveness: Liveness::OtherBoot,
                ..
            })
        ));
    }
}

/// Opens PATH with the C helpers and prints each step's status; between
/// the first barrier and the rest it waits for a line on stdin, so that the
/// test can change the file under its mapping.
const C_BOOT_CHECK: &str = r#"
#include <stdio.h>
#include "barrierd.h"
int main(int argc, char **argv)
{
	struct barrierd_client c;
	char line[8];
	int status;

	(void)argc;
	status = barrierd_open(&c, argv[1]);
	printf("open %d\n", status);
	fflush(stdout);
	if (status != BARRIERD_OK)
		return 0;
	printf("begin_vtime %llu\n", (unsigned long long)barrierd_begin_vtime(&c));
	printf("heavy %d\n", barrierd_heavy_barrier(&c, 0));
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return 1;
	printf("running %d\n", barrierd_running(&c));
	printf("heavy %d\n", barrierd_heavy_barrier(&c, 600000000000ULL));
	printf("vtime %d\n", barrierd_wait(&c, &c.data->last_interrupt_vtime, 0, 600000000000ULL));
	barrierd_close(&c);
	return 0;
}
"#;

#[test]
fn c_helpers_treat_a_file_of_another_boot_as_not_running() {
    let dir = TempDir::new("client-c-other-boot");
    let source = dir.join("boot_check.c");
    std::fs::write(&source, C_BOOT_CHECK).unwrap();
    let boot_check = dir.join("boot_check");
    compile_c(&source, &boot_check);
    let client = dir.join("client");
    compile_c(&repo().join("examples/client.c"), &client);

    for boot in other_boots() {
        let path = dir.join("pub");
        let fake = FakeDaemon::previous_boot(&path, boot);
        let output = Command::new(&boot_check).arg(&path).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "open -4",
            "{boot:?}"
        );
        let output = Command::new(&client).arg(&path).arg("1").output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("daemon not running"), "{stderr}");

        // Opened during this boot, with every word past any target: a
        // barrier completes at once, until the boot id says another boot.
        fake.set_boot(BootId::current().unwrap());
        let mut child = Command::new(&boot_check)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read_line = || {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().to_owned()
        };
        assert_eq!(read_line(), "open 0");
        assert_eq!(read_line(), "begin_vtime 1000");
        assert_eq!(read_line(), "heavy 0");
        fake.set_boot(boot);
        let started = Instant::now();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert_eq!(
            [read_line(), read_line(), read_line()],
            ["running 0", "heavy -4", "vtime -4"],
            "{boot:?}"
        );
        assert!(child.wait().unwrap().success());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn handles_are_shareable_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Barrierd>();
    shareable::<Barrier>();
}

/// `open PATH [UID]`: opens PATH with barrierd_open_trusting (trusting UID
/// too, if given) and prints the status and its explanation.
const C_OPEN_TRUSTING: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "barrierd.h"
int main(int argc, char **argv)
{
	struct barrierd_client c;
	uid_t trusted[1] = { 0 };
	int status;

	if (argc < 2 || argc > 3)
		return 2;
	if (argc == 3)
		trusted[0] = (uid_t)strtoul(argv[2], NULL, 10);
	status = barrierd_open_trusting(&c, argv[1], trusted, (size_t)argc - 2);
	printf("%d %s\n", status, barrierd_explain(&c, status));
	return 0;
}
"#;

/// A file another user made (the forgery of a user who created PATH before
/// the daemon), or one that others may write, or one in a directory others
/// may write, is refused by both clients before a word of it is read.
#[test]
fn a_file_others_could_forge_is_refused() {
    require_privileged!();
    let dir = TempDir::new("client-forged");
    let path = dir.join("pub");
    let _fake = FakeDaemon::running(&path, 2);
    let c_open = dir.join("open");
    std::fs::write(dir.join("open.c"), C_OPEN_TRUSTING).unwrap();
    compile_c(&dir.join("open.c"), &c_open);
    let c_open_status = |trusted: &[&str]| {
        let output = Command::new(&c_open)
            .arg(&path)
            .args(trusted)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let refused = |needle: &str| {
        let why = match Barrierd::open_even_if_stopped(&path) {
            Err(OpenError::Untrusted { why, .. }) => why.0,
            other => panic!("{other:?}"),
        };
        assert!(why.contains(needle), "{why}");
        let c = c_open_status(&[]);
        assert!(c.starts_with("-7 ") && c.contains(needle), "{c}");
    };
    let accepted = || {
        assert!(Barrierd::open(&path).is_ok());
        assert_eq!(c_open_status(&[]), "0 success");
    };
    accepted();

    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    refused(&format!("it {} is owned by uid 65534", path.display()));
    assert!(Barrierd::open_trusting(&path, &[65534]).is_ok());
    assert_eq!(c_open_status(&["65534"]), "0 success");
    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused("has mode 666: others may write it");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    nix::unistd::chown(&dir.0, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    refused(&format!(
        "directory {} is owned by uid 65534",
        dir.0.display()
    ));
    assert_eq!(c_open_status(&["65534"]), "0 success");
    nix::unistd::chown(&dir.0, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("has mode 777: others may write it");
    assert!(c_open_status(&["65534"]).starts_with("-7 directory"));
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A sticky directory is safe for root's file: others cannot replace it.
    accepted();
}

/// The header in strict C modes: with the default feature set asked for it
/// compiles warning-free under -pedantic; without, the first error is the
/// header's own, saying what to define.
#[test]
fn the_header_compiles_in_strict_modes_or_says_what_to_define() {
    let dir = TempDir::new("client-c-strict");
    let cc = |flags: &[&str]| {
        Command::new("cc")
            .args(flags)
            .args([
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O2",
                "-c",
                "-I",
            ])
            .arg(repo().join("include"))
            .arg(repo().join("examples/client.c"))
            .arg("-o")
            .arg(dir.join("client.o"))
            .output()
            .expect("running cc (install gcc: scripts/setup)")
    };
    for std in ["-std=c99", "-std=c11", "-std=c17"] {
        let output = cc(&[std, "-D_DEFAULT_SOURCE"]);
        assert!(output.status.success(), "{std}: {output:?}");
        let output = cc(&[std]);
        assert!(!output.status.success(), "{std} without _DEFAULT_SOURCE");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_error = stderr.lines().find(|l| l.contains("error")).unwrap_or("");
        assert!(
            first_error.contains("compile with -D_DEFAULT_SOURCE"),
            "{std}: {stderr}"
        );
    }
}
