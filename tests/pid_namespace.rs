//! barrierd in a pid namespace of its own (a container): BPF must exempt
//! the daemon's own tasks by the kernel's numbering of them, not by the
//! pids the daemon sees of itself, or a host process whose tgid equals one
//! of those small numbers would count as quiescent while it runs client
//! code.

mod common;

use std::time::Duration;

use barrierd_client::Barrierd;
use common::{Daemon, TempDir};

#[test]
fn bpf_exempts_the_daemons_own_tasks_by_their_kernel_tgids() {
    require_privileged!();
    let dir = TempDir::new("pidns");
    let path = dir.join("barrierd");
    let daemon = Daemon::start_in_pid_namespace(&path, &[]);
    let publisher = daemon.publisher_pid();
    let helper = daemon.helper_pid();

    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(
        ns(publisher),
        ns(std::process::id() as i32),
        "not in a new pid namespace"
    );
    // Outermost first: the host's pid, then the namespace's (barrierd is its
    // pid 1, the helper its first child).
    let (publisher_pids, helper_pids) = (common::ns_pids(publisher), common::ns_pids(helper));
    assert_eq!(publisher_pids, [i64::from(publisher), 1], "publisher NSpid");
    assert_eq!(helper_pids, [i64::from(helper), 2], "helper NSpid");

    let bss = common::helper_bss(helper);
    let exempt: Vec<i64> = bss["watermark"]["daemon_tgid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tgid| tgid.as_i64().unwrap())
        .collect();
    eprintln!("BPF exempts tgids {exempt:?}; helper NSpid {helper_pids:?}, publisher NSpid {publisher_pids:?}");
    assert_eq!(
        exempt,
        [i64::from(helper), i64::from(publisher)],
        "BPF must exempt the kernel's tgids of the helper and the publisher"
    );

    let barrierd = Barrierd::open(&path).unwrap();
    for _ in 0..20 {
        barrierd.heavy_barrier(Duration::from_secs(10)).unwrap();
    }
}
