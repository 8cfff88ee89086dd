//! The drop-in shape: `light()` and `heavy()` on the process-wide handle,
//! opened at `$BARRIERD_FILE` at the first call, served by the daemon while
//! it runs and by membarrier once it stops. Alone in its binary: it sets the
//! environment before any thread reads it, and the handle is process-wide.

mod common;

use barrierd_client::{heavy, light, Liveness, Via, Why};
use common::{Daemon, TempDir};

#[test]
fn heavy_uses_the_daemon_at_barrierd_file_then_membarrier() {
    require_privileged!();
    let dir = TempDir::new("drop-in");
    let path = dir.join("pub");
    let daemon = Daemon::start(&path, &[]);
    std::env::set_var(barrierd_client::layout::PATH_VARIABLE, &path);
    assert_eq!(barrierd_client::default_path(), path);

    light();
    assert_eq!(heavy(), Via::Daemon);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert_eq!(heavy(), Via::Membarrier(Why::NotRunning(Liveness::Stopped)));
}
