//! `--prod-after`, against the real daemon: a CPU that does not enter the
//! kernel while a client waits is made to.
//!
//! The daemon traces only context switches here, so a CPU that runs one busy
//! thread looks exactly like a nohz_full CPU (its ticks go unrecorded).
//! Without prodding, barriers then wait for whatever next switches on it:
//! 0.4 s at the median and 1.5 s at p99 on this project's machine; for
//! ever on a real nohz_full CPU. With a 2 ms bound they take milliseconds.

mod common;

use std::time::Duration;

use barrierd_client::Barrierd;
use common::{BusyCpus, Daemon, TempDir};

/// 500 times the bound: a correctness limit, not a latency target.
const LIMIT: Duration = Duration::from_secs(1);

#[test]
fn a_cpu_without_events_is_prodded_while_a_client_waits() {
    require_privileged!();
    let cpus = common::online_cpus();
    assert!(cpus >= 2, "needs two online CPUs, one busy and one waiting");
    let dir = TempDir::new("prod");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &["sched/sched_switch", "--prod-after", "2"]);
    let client = Barrierd::open(&path).unwrap();
    assert_eq!(client.prods(), 0);

    let busy = BusyCpus::pinned_to(cpus - 1);
    common::pin_current_thread(0);
    // Anything else that runs on the spinner's CPU (a kernel worker, the
    // daemon itself) is an event there too: barriers go on until one of them
    // needed a prod.
    let mut barriers = 0;
    while barriers < 20 || (client.prods() == 0 && barriers < 1000) {
        if let Err(e) = client.heavy_barrier(LIMIT) {
            panic!("barrier {barriers}: {e} (the CPU without events was not prodded in time)");
        }
        barriers += 1;
    }
    let prods = client.prods();
    drop(busy);
    eprintln!("{barriers} barriers, {prods} prods");
    assert!(prods > 0, "{barriers} barriers without a single prod");

    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}\n{stderr}");
}
