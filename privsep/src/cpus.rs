//! CPU numbering both sides agree on: slots are indexed by CPU id, so their
//! count is the highest possible id plus one (a sparse possible mask still
//! needs a slot per id).

use std::{fs, io};

pub const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
pub const ONLINE: &str = "/sys/devices/system/cpu/online";

/// The number of CPU slots: highest possible CPU id + 1. Reads sysfs: call it
/// before a sandbox goes on.
pub fn possible_cpus() -> io::Result<usize> {
    Ok(read_cpu_list(POSSIBLE)?
        .into_iter()
        .max()
        .map_or(0, |h| h + 1))
}

/// The ids of the CPUs online now. Reads sysfs: call it before a sandbox.
pub fn online_cpus() -> io::Result<Vec<usize>> {
    read_cpu_list(ONLINE)
}

fn read_cpu_list(path: &str) -> io::Result<Vec<usize>> {
    let text = fs::read_to_string(path)?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected content {text:?}"),
        )
    })
}

/// Parses a kernel CPU list such as `0-3,5,7-8` into ids, in order.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for range in text.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        if first > last || ids.last().is_some_and(|&l| l >= first) {
            return None;
        }
        ids.extend(first..=last);
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("2,1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn this_machine_has_some() {
        let possible = possible_cpus().unwrap();
        let online = online_cpus().unwrap();
        assert!(possible >= 1);
        assert!(!online.is_empty() && online.iter().all(|&cpu| cpu < possible));
    }
}
