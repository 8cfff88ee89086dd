//! The number of CPU slots both sides index by CPU id: the highest possible
//! CPU id plus one (a sparse possible mask still needs a slot per id).

use std::{fs, io};

pub const POSSIBLE: &str = "/sys/devices/system/cpu/possible";

/// Reads [`POSSIBLE`]; open files before a sandbox goes on.
pub fn possible_cpus() -> io::Result<usize> {
    let text = fs::read_to_string(POSSIBLE)?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{POSSIBLE}: unexpected content {text:?}"),
        )
    })
}

/// Parses a kernel CPU list such as `0-3,5,7-8` into highest id + 1.
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut highest = None;
    for range in text.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        if first > last {
            return None;
        }
        highest = highest.max(Some(last));
    }
    highest.map(|h| h + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(9));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn this_machine_has_some() {
        assert!(possible_cpus().unwrap() >= 1);
    }
}
