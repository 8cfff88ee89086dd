//! A client that polls and never waits can still ask for promptness:
//! `Barrierd::begin_polled` (C: `barrierd_begin_polled`) blocks once, for
//! 20 µs, in a shared futex wait, which BPF counts as demand, and for the
//! next second the daemon publishes as promptly as for a waiter. Without
//! it, an undemanded daemon spaces its passes up to 200 ms apart.
//!
//! Each round lets demand lapse first (BPF's `demand_ns` a second old),
//! then polls a ticket every 200 µs and records how long it took. Control
//! rounds, which start with a plain `BarrierTicket::begin`, are logged and
//! show what the request buys. Alone in its binary, one test at a time:
//! another test's waits would be demand.
#![allow(unsafe_code)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barrierd_client::{BarrierTicket, Barrierd};
use common::{monotonic_ns, Daemon, TempDir};

const ROUNDS: usize = 6;
/// A vCPU preempted at the wrong moment may make one round late.
const PROMPT_ROUNDS_REQUIRED: usize = ROUNDS - 1;
/// "Within a few milliseconds": a demanded pass follows a CPU's signal by
/// a millisecond or less on an idle machine.
const PROMPT: Duration = Duration::from_millis(10);
const POLL_EVERY: Duration = Duration::from_micros(200);
/// DEMAND_NS (privsep::handover), and a margin.
const DEMAND_LAPSES: Duration = Duration::from_millis(1100);
/// One poller at a time: another's request would be this one's demand.
static ALONE: Mutex<()> = Mutex::new(());

struct Demand {
    /// Keeps the mapping `word` points into alive.
    _bss: memmap2::MmapRaw,
    word: &'static AtomicU64,
}

impl Demand {
    fn of_helper(helper: i32) -> Demand {
        let bss = common::map_helper_bss(helper);
        let at = common::helper_bss_offset(helper, "demand_ns");
        // SAFETY: the mapping holds the whole .bss and lives as long as
        // `Demand`, which never hands out the reference beyond itself; BPF
        // and the helper access the word atomically.
        let word = unsafe { AtomicU64::from_ptr(bss.as_mut_ptr().add(at).cast()) };
        Demand { _bss: bss, word }
    }

    fn last_ns(&self) -> u64 {
        self.word.load(Ordering::SeqCst)
    }

    /// Waits until nothing has asked for promptness for a second.
    fn lapse(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while monotonic_ns().saturating_sub(self.last_ns()) < DEMAND_LAPSES.as_nanos() as u64 {
            assert!(
                Instant::now() < deadline,
                "something keeps blocking in shared futex waits, which BPF counts as demand"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn poll(barrierd: &Barrierd, ticket: BarrierTicket) -> Duration {
    let start = Instant::now();
    while !barrierd.try_complete(ticket) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a polled ticket did not complete in 30 s"
        );
        std::thread::sleep(POLL_EVERY);
    }
    start.elapsed()
}

fn assert_prompt(what: &str, prompt: &[Duration], control: &[Duration]) {
    eprintln!("{what}: with a request {prompt:?}; without {control:?}");
    let served = prompt.iter().filter(|&&took| took <= PROMPT).count();
    assert!(
        served >= PROMPT_ROUNDS_REQUIRED,
        "{what}: only {served} of {} polled barriers that asked for promptness completed within {PROMPT:?}: {prompt:?}",
        prompt.len()
    );
}

/// The requested rounds, then the control rounds, each once demand has
/// lapsed: `round(asked)` polls one barrier, asking for promptness or not,
/// and says how long it took.
fn measure(what: &str, demand: &Demand, mut round: impl FnMut(bool) -> Duration) {
    let mut prompt = Vec::new();
    let mut control = Vec::new();
    let mut seen = 0;
    for n in 0..ROUNDS + ROUNDS / 2 {
        demand.lapse();
        let asked = n < ROUNDS;
        let before = demand.last_ns();
        let took = round(asked);
        if asked {
            // A request's 20 µs timer can fire before its task gets to sleep
            // (a preempted vCPU): then no switch is traced and BPF sees no
            // demand; the next request, half a second later, is seen. Seen
            // once in CI (the C poller, round unknown), never here in 3 runs.
            if demand.last_ns() != before {
                seen += 1;
            } else {
                eprintln!("{what}: round {n}: BPF did not see the request as demand");
            }
            prompt.push(took);
        } else {
            control.push(took);
        }
    }
    assert!(
        seen >= PROMPT_ROUNDS_REQUIRED,
        "{what}: BPF saw {seen} of {ROUNDS} requests' futex waits as demand"
    );
    assert_prompt(what, &prompt, &control);
}

#[test]
fn a_polled_ticket_that_asks_for_promptness_completes_within_milliseconds() {
    require_privileged!();
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = TempDir::new("prompt-polling");
    let path = dir.join("barrierd");
    let daemon = Daemon::start(&path, &[]);
    let barrierd = Barrierd::open(&path).unwrap();
    let demand = Demand::of_helper(daemon.helper_pid());
    measure("Rust", &demand, |asked| {
        let ticket = if asked {
            barrierd.begin_polled()
        } else {
            BarrierTicket::begin()
        };
        poll(&barrierd, ticket)
    });
}

const C_POLLER: &str = r#"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <barrierd.h>

/* One round per line on stdin ("prompt" or "control"): polls a barrier
 * every 200 us and prints how many microseconds it took. */
int main(int argc, char **argv)
{
	struct barrierd_client c;
	struct timespec every = { 0, 200000 };
	char line[32];
	int err = barrierd_open(&c, argv[1]);

	if (argc != 2 || err) {
		fprintf(stderr, "barrierd_open: %s\n", barrierd_strerror(err));
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		uint64_t start = barrierd_now_ns(), t;

		if (strncmp(line, "prompt", 6) == 0) {
			t = barrierd_begin_polled(&c);
		} else {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			t = barrierd_now_ns();
		}
		while (!barrierd_passed_ns(&c, t))
			nanosleep(&every, NULL);
		printf("%llu\n", (unsigned long long)((barrierd_now_ns() - start) / 1000));
		fflush(stdout);
	}
	barrierd_close(&c);
	return 0;
}
"#;

#[test]
fn a_c_poller_that_asks_for_promptness_completes_within_milliseconds() {
    require_privileged!();
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = TempDir::new("prompt-polling-c");
    let path = dir.join("barrierd");
    let source = dir.join("poller.c");
    std::fs::write(&source, C_POLLER).unwrap();
    let binary = dir.join("poller");
    common::compile_c(&source, &binary);
    let daemon = Daemon::start(&path, &[]);
    let demand = Demand::of_helper(daemon.helper_pid());
    let mut poller = Command::new(&binary)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rounds = poller.stdin.take().unwrap();
    let mut took = BufReader::new(poller.stdout.take().unwrap()).lines();

    measure("C", &demand, |asked| {
        writeln!(rounds, "{}", if asked { "prompt" } else { "control" }).unwrap();
        let us: u64 = took
            .next()
            .expect("the C poller exited")
            .unwrap()
            .parse()
            .unwrap();
        Duration::from_micros(us)
    });
    drop(rounds);
    assert!(poller.wait().unwrap().success(), "the C poller failed");
}

/// The clients' promptness window (which the publisher's prods use too) is
/// BPF's, written three times until one definition can serve all three.
#[test]
fn the_promptness_window_is_bpfs_demand_window() {
    let defined = |file: &str, name: &str| -> u64 {
        let text = std::fs::read_to_string(common::repo().join(file)).unwrap();
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{file} does not define {name}"));
        line.trim().trim_end_matches("ULL").parse().unwrap()
    };
    // BPF's window: the helper writes it into the program's .rodata.
    let bpf = barrierd_privsep::handover::DEMAND_NS;
    assert_eq!(barrierd_client::PROMPTNESS.as_nanos() as u64, bpf);
    assert_eq!(defined("include/barrierd.h", "BARRIERD_PROMPTNESS_NS"), bpf);
}
