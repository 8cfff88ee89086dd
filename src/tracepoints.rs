//! Turns command-line tracepoints (`group/name`, or a numeric tracefs id as
//! the 2018 original took them) into raw tracepoint names for the helper.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use barrierd_privsep::handover::is_tracepoint_identifier;

/// Used when no tracepoint is given: together they fire on every CPU that
/// runs anything (timer ticks, softirqs, context switches).
pub const DEFAULT: [&str; 3] = [
    "irq/softirq_entry",
    "irq_vectors/local_timer_entry",
    "sched/sched_switch",
];

/// Where tracefs is looked for, in order.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, thiserror::Error)]
pub enum TracepointError {
    #[error("{0:?} is not a tracepoint: expected group/name (e.g. sched/sched_switch) or a numeric tracefs id")]
    Malformed(String),
    #[error("tracepoint id {0} needs tracefs, which is not mounted; mount it with `mount -t tracefs nodev /sys/kernel/tracing`, or name the tracepoint as group/name")]
    NoTracefs(u32),
    #[error("no tracepoint has id {id} in {tracefs}/events")]
    UnknownId { id: u32, tracefs: PathBuf },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether a command-line word has a tracepoint's form (a tracefs id, or
/// `group/name`) rather than a path's: how an optional PATH is told from the
/// tracepoints after it. A relative path of that form needs a `./`.
pub fn is_spec(word: &str) -> bool {
    word.parse::<u32>().is_ok()
        || word.split_once('/').is_some_and(|(group, name)| {
            is_tracepoint_identifier(group) && is_tracepoint_identifier(name)
        })
}

/// The raw tracepoint name for one command-line tracepoint.
pub fn resolve(spec: &str) -> Result<String, TracepointError> {
    if let Ok(id) = spec.parse::<u32>() {
        let tracefs = TRACEFS
            .iter()
            .map(Path::new)
            .find(|root| root.join("events").is_dir())
            .ok_or(TracepointError::NoTracefs(id))?;
        return find_id(&tracefs.join("events"), id)?.ok_or_else(|| TracepointError::UnknownId {
            id,
            tracefs: tracefs.to_owned(),
        });
    }
    match spec.split_once('/') {
        Some((group, name))
            if is_tracepoint_identifier(group) && is_tracepoint_identifier(name) =>
        {
            Ok(name.to_owned())
        }
        _ => Err(TracepointError::Malformed(spec.to_owned())),
    }
}

/// Scans `events/GROUP/NAME/id` files for `id`.
fn find_id(events: &Path, id: u32) -> Result<Option<String>, TracepointError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TracepointError::Io { path, source }
    };
    for group in fs::read_dir(events).map_err(io_error(events))? {
        let group = group.map_err(io_error(events))?.path();
        let Ok(entries) = fs::read_dir(&group) else {
            continue;
        };
        for event in entries.flatten() {
            let Ok(text) = fs::read_to_string(event.path().join("id")) else {
                continue;
            };
            if text.trim().parse() == Ok(id) {
                let name = event.file_name().to_string_lossy().into_owned();
                return Ok(Some(name).filter(|n| is_tracepoint_identifier(n)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracepoint_is_told_from_a_path() {
        for word in ["sched/sched_switch", "irq/softirq_entry", "317"] {
            assert!(is_spec(word), "{word}");
        }
        for word in [
            "/run/barrierd/public_file",
            "./sched/x",
            "pub",
            "a/b/c",
            "../x",
        ] {
            assert!(!is_spec(word), "{word}");
        }
    }

    #[test]
    fn group_and_name() {
        assert_eq!(resolve("sched/sched_switch").unwrap(), "sched_switch");
        assert_eq!(
            resolve("irq_vectors/local_timer_entry").unwrap(),
            "local_timer_entry"
        );
        for bad in [
            "sched_switch",
            "sched/",
            "/x",
            "a/b/c",
            "Sched/x",
            "a/b c",
            "",
        ] {
            assert!(
                matches!(resolve(bad), Err(TracepointError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn numeric_ids_are_looked_up_in_an_events_tree() {
        let dir = std::env::temp_dir().join(format!("barrierd-tp-{}", std::process::id()));
        let event = dir.join("sched/sched_switch");
        fs::create_dir_all(&event).unwrap();
        fs::write(event.join("id"), "316\n").unwrap();
        assert_eq!(find_id(&dir, 316).unwrap().as_deref(), Some("sched_switch"));
        assert_eq!(find_id(&dir, 317).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
