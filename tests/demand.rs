//! Demand, against the real daemon: without a client blocked in a barrier
//! wait, a quiet machine's stray wake-ups share a few passes a second; a
//! waiter gets its pass at once, and for a while after it every wake-up does.
//!
//! Alone in its test binary on purpose: any shared futex wait on the machine
//! counts as demand, so no other test may wait for a barrier meanwhile.

mod common;

use std::time::{Duration, Instant};

use barrierd_client::Barrierd;
use common::{monotonic_ns, Daemon, TempDir};

const GENEROUS: Duration = Duration::from_secs(10);

/// Wakes every millisecond for `how_long` and goes back to sleep: each time
/// its CPU leaves quiescence and settles again, which is exactly how a
/// barrier waiter looks, except that it blocks in nanosleep, not a futex.
/// Returns how many passes the daemon made meanwhile.
fn blip(client: &Barrierd, how_long: Duration) -> (u64, u32) {
    let vtime = client.vtime();
    let start = Instant::now();
    let mut wakeups = 0;
    while start.elapsed() < how_long {
        std::thread::sleep(Duration::from_millis(1));
        wakeups += 1;
    }
    (client.vtime() - vtime, wakeups)
}

#[test]
fn stray_wakeups_share_passes_until_a_barrier_waits() {
    require_privileged!();
    let dir = TempDir::new("demand");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    let client = Barrierd::open(&path).unwrap();
    // Nothing has waited on this daemon; let any other demand lapse
    // (privsep::handover::DEMAND_NS, 1 s).
    std::thread::sleep(Duration::from_millis(1500));

    let before = monotonic_ns();
    let (passes, wakeups) = blip(&client, Duration::from_secs(2));
    eprintln!("no waiter: {passes} passes for {wakeups} wake-ups in 2 s");
    // One per BARRIERD_UNDEMANDED_NS (200 ms) would be 10.
    assert!(
        passes <= 30,
        "{passes} passes for {wakeups} wake-ups in 2 s with no waiter: not spaced out \
         (or another process on this machine waits on shared futexes)"
    );
    // Spaced out, not stopped: a client that polls without waiting still
    // sees the minimum advance.
    let polling = Instant::now();
    while client.last_interrupt_ns() <= before {
        assert!(
            polling.elapsed() < GENEROUS,
            "the minimum stopped advancing"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // A waiter is served at once (demand had lapsed: its block signals)...
    client.heavy_barrier(GENEROUS).unwrap();
    // ...and while demand lasts, every wake-up that may hold the minimum back
    // gets its pass again.
    let (passes, wakeups) = blip(&client, Duration::from_millis(500));
    eprintln!("after a waiter: {passes} passes for {wakeups} wake-ups in 0.5 s");
    assert!(
        passes >= 50,
        "{passes} passes for {wakeups} wake-ups in 0.5 s after a barrier waited: demand not seen"
    );

    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}
