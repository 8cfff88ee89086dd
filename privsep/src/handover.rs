//! What `barrierd` hands the helper when it starts it, defined once for both
//! ends: the socket on a fixed descriptor, and tracepoint names of one form.

use std::os::fd::RawFd;

/// Where the launcher (src/launch.rs) puts the helper's end of the
/// socketpair, and where the helper (helper/src/main.rs) takes it from.
pub const HELPER_SOCKET_FD: RawFd = 3;

/// How long a client's shared futex wait keeps demand alive: BPF's window
/// (the helper writes it into the program's read-only data before loading),
/// the publisher's `--prod-after` window, and what a client's promptness
/// request lasts (`barrierd_client::PROMPTNESS` and the C header's
/// `BARRIERD_PROMPTNESS_NS`, which a test ties to this). Longer than the
/// clients' 100 ms probe interval, after which a waiter blocks again.
pub const DEMAND_NS: u64 = 1_000_000_000;

/// A tracepoint group or name as barrierd accepts it: `[a-z0-9_]{1,64}`.
/// The publisher parses `group/name` with it, the helper checks each raw
/// tracepoint name it is given with it, so no name one side accepts can
/// surprise the other.
pub fn is_tracepoint_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_identifiers() {
        assert!(is_tracepoint_identifier("sched_switch"));
        assert!(is_tracepoint_identifier("local_timer_entry"));
        assert!(!is_tracepoint_identifier(""));
        assert!(!is_tracepoint_identifier("sched/sched_switch"));
        assert!(!is_tracepoint_identifier("../x"));
        assert!(!is_tracepoint_identifier("Sched"));
        assert!(!is_tracepoint_identifier(&"a".repeat(65)));
        assert!(is_tracepoint_identifier(&"a".repeat(64)));
    }
}
