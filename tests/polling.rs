//! A client that polls `passed_ns` and never waits is served when the
//! spacing of undemanded signals ends, even if no CPU signals then. While
//! nobody waits BPF defers debts until `last_signal.spacing_ends_ns`, and a
//! CPU that went idle owing may have no later event: only the helper, which
//! sleeps no later than that deadline and reads again if anything was
//! deferred, publishes it ("Deferred debts are collected", ARCHITECTURE.md).
//! Alone in its binary: it wants every CPU idle.
//!
//! The test holds the spacing open (moving its end 300 ms ahead) so that
//! every event defers, takes T and sleeps until just after that end, with
//! every CPU idle, then looks once: the minimum must have passed T by then.
//! Without the helper's deadline only a CPU's next event after the spacing
//! would publish it, and with every CPU idle there is rarely one within
//! those few milliseconds.
#![allow(unsafe_code)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use barrierd_client::Barrierd;
use common::{monotonic_ns, Daemon, RingProducer, TempDir};

const ROUNDS: usize = 6;
/// A vCPU preempted at the wrong moment may make one round late.
const SERVED_AT_THE_DEADLINE: usize = ROUNDS - 1;
const SPACING: Duration = Duration::from_millis(300);
/// The helper's timer has millisecond granularity, then a pass takes a
/// few hundred µs.
const LOOK_AFTER_THE_END: Duration = Duration::from_millis(3);
/// DEMAND_NS (privsep::handover), and a margin.
const DEMAND_LAPSES: Duration = Duration::from_millis(1100);

#[test]
fn a_poller_is_served_when_the_spacing_ends_without_any_signal() {
    require_privileged!();
    let dir = TempDir::new("polling");
    let path = dir.join("barrierd");
    let daemon = Daemon::start(&path, &[]);
    let barrierd = Barrierd::open(&path).unwrap();
    let helper = daemon.helper_pid();
    let bss = common::map_helper_bss(helper);
    let word = |name: &str, offset: usize| {
        let at = common::helper_bss_offset(helper, name) + offset;
        // SAFETY: the mapping holds the whole .bss and outlives this test;
        // BPF and the helper access these words atomically.
        unsafe { AtomicU64::from_ptr(bss.as_mut_ptr().add(at).cast()) }
    };
    // struct { jiffy; spacing_ends_ns; deferred; } last_signal
    let spacing_ends = word("last_signal", 8);
    let demand = word("demand_ns", 0);
    let ring = RingProducer::of_helper(helper);

    let mut rounds = Vec::new();
    for round in 0..ROUNDS * 3 {
        if rounds.len() == ROUNDS {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while monotonic_ns() - demand.load(Ordering::SeqCst) < DEMAND_LAPSES.as_nanos() as u64 {
            assert!(
                Instant::now() < deadline,
                "something keeps blocking in shared futex waits, which BPF counts as demand"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ends = monotonic_ns() + SPACING.as_nanos() as u64;
        spacing_ends.store(ends, Ordering::SeqCst);
        // Let a pass already under way finish before T.
        std::thread::sleep(Duration::from_millis(20));
        if spacing_ends.load(Ordering::SeqCst) != ends {
            // A signal came first and set its own, earlier end: again.
            continue;
        }
        let t = monotonic_ns();
        let records_before = ring.position();
        std::thread::sleep(Duration::from_nanos(ends - t) + LOOK_AFTER_THE_END);
        let served = barrierd.passed_ns(t);
        let records = ring.position() - records_before;
        eprintln!(
            "round {round}: T passed by the spacing's end + {LOOK_AFTER_THE_END:?}: {served} ({records} ring bytes since T)"
        );
        barrierd.wait_ns(t, Duration::from_secs(30)).unwrap();
        rounds.push(served);
    }
    assert_eq!(
        rounds.len(),
        ROUNDS,
        "signals kept cutting the spacing short"
    );
    let served = rounds.iter().filter(|&&served| served).count();
    assert!(
        served >= SERVED_AT_THE_DEADLINE,
        "only {served} of {ROUNDS} polled barriers completed by the spacing's end + {LOOK_AFTER_THE_END:?}: the helper does not collect deferred debts when the spacing ends"
    );
}
