//! barrierd's exit statuses, defined once: `--help` prints this table, the
//! daemon's errors map onto it, and a test holds ARCHITECTURE.md to it.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Stopped = 0,
    Setup = 1,
    /// clap's own status for a command line it rejects.
    Usage = 2,
    Locked = 3,
    Running = 4,
}

impl Exit {
    pub const ALL: [Exit; 5] = [
        Exit::Stopped,
        Exit::Setup,
        Exit::Usage,
        Exit::Locked,
        Exit::Running,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Stopped => "stopped by SIGTERM, SIGINT or SIGHUP",
            Exit::Setup => {
                "setup failed (not root, bad file at PATH, helper missing or failed, sandbox)"
            }
            Exit::Usage => "bad command line",
            Exit::Locked => "another barrierd already publishes to PATH",
            Exit::Running => "failure while running (helper died, protocol violation)",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The "Exit status:" block of `barrierd --help`.
pub fn help() -> String {
    Exit::ALL
        .iter()
        .fold(String::from("Exit status:"), |text, exit| {
            format!("{text}\n  {}  {}", exit.code(), exit.meaning())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_lists_every_exit_status_as_the_code_does() {
        let doc = include_str!("../ARCHITECTURE.md");
        for exit in Exit::ALL {
            let row = format!("| {} | {} |", exit.code(), exit.meaning());
            assert!(doc.contains(&row), "ARCHITECTURE.md lacks the row {row:?}");
        }
        let rows = doc
            .lines()
            .skip_while(|line| !line.starts_with("| status | meaning |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .count();
        assert_eq!(
            rows,
            Exit::ALL.len(),
            "ARCHITECTURE.md's exit table has other rows"
        );
    }

    #[test]
    fn codes_are_distinct_and_help_shows_each() {
        let help = help();
        for (i, exit) in Exit::ALL.iter().enumerate() {
            assert_eq!(usize::from(exit.code()), i);
            assert!(help.contains(&format!("  {}  {}", exit.code(), exit.meaning())));
        }
    }
}
