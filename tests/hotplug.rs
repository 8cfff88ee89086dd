//! CPU hotplug: a CPU offline when the daemon starts is published as
//! quiescent (it runs nothing), and once it comes online its first switch to
//! a client task is traced, so it is never taken as quiescent while it runs
//! client code. Alone in its binary: it takes a CPU offline for a moment.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use barrierd_client::Barrierd;
use common::{BusyCpus, Daemon, TempDir};

/// Takes a CPU offline; brings it back online on drop, whatever happens.
struct Offline(PathBuf);

impl Offline {
    fn take(cpu: usize) -> Self {
        let control = PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/online"));
        std::fs::write(&control, "0").unwrap_or_else(|e| panic!("{}: {e}", control.display()));
        Self(control)
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        std::fs::write(&self.0, "1").unwrap();
    }
}

fn quiescent(bss: &serde_json::Value, cpu: usize) -> bool {
    bss["slots"][cpu]["state"].as_u64().unwrap() & 1 == 1
}

#[test]
fn a_cpu_offline_at_start_is_quiescent_and_tracked_once_online() {
    require_privileged!();
    let cpus = barrierd_privsep::cpus::online_cpus().unwrap();
    let cpu = *cpus.last().unwrap();
    let hotpluggable =
        std::path::Path::new(&format!("/sys/devices/system/cpu/cpu{cpu}/online")).exists();
    if cpus.len() < 2 || !hotpluggable {
        common::skip(
            module_path!(),
            &format!("needs a second, hot-pluggable CPU (online {cpus:?})"),
        );
        return;
    }
    let dir = TempDir::new("hotplug");
    let path = dir.join("barrierd");

    let offline = Offline::take(cpu);
    let daemon = Daemon::start(&path, &[]);
    let barrierd = Barrierd::open(&path).unwrap();
    let bss = common::helper_bss(daemon.helper_pid());
    assert!(
        quiescent(&bss, cpu),
        "offline CPU {cpu} not quiescent: {}",
        bss["slots"][cpu]
    );
    // An offline CPU holds no barrier back.
    barrierd.heavy_barrier(Duration::from_secs(10)).unwrap();

    drop(offline);
    let spinner = BusyCpus::pinned_to(cpu);
    // Its kernel threads, idle since it went offline, preempt the spinner
    // now and then (rightly quiescent meanwhile): sample, and require BPF to
    // see the spinner busy. A CPU taken for quiescent while it runs client
    // code would be quiescent in every sample.
    let samples: Vec<bool> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            quiescent(&common::helper_bss(daemon.helper_pid()), cpu)
        })
        .collect();
    let busy = samples.iter().filter(|&&q| !q).count();
    eprintln!(
        "CPU {cpu} with a spinner: busy in {busy} of {} samples",
        samples.len()
    );
    assert!(
        busy * 2 >= samples.len(),
        "CPU {cpu} runs a client task but BPF held it quiescent in {} of {} samples",
        samples.len() - busy,
        samples.len()
    );
    // The spinner enters the kernel only by its ticks: a barrier completes
    // once CPU `cpu` took one after T, and its word says so.
    for _ in 0..20 {
        let t = common::monotonic_ns();
        barrierd.wait_ns(t, Duration::from_secs(10)).unwrap();
        assert!(barrierd.cpu_last_interrupt_ns(cpu).unwrap() > t);
    }
    drop(spinner);
}
