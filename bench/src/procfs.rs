//! What the benchmark reads from /proc and /sys: processes' CPU time, IPI
//! counters and the machine's description. Parsers are pure functions over
//! the files' text so that they are tested without the files.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected contents {text:?}")]
    Parse { path: String, text: String },
}

fn read(path: &str) -> Result<String, ProcError> {
    fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A task's scheduling counters (/proc/PID/task/TID/schedstat).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time spent on a CPU, ns.
    pub cpu_ns: u64,
    /// Time spent runnable, waiting on a run queue for a CPU, ns.
    pub wait_ns: u64,
    /// Number of times it was given a CPU.
    pub runs: u64,
}

impl std::ops::Add for SchedStat {
    type Output = SchedStat;
    fn add(self, other: SchedStat) -> SchedStat {
        SchedStat {
            cpu_ns: self.cpu_ns + other.cpu_ns,
            wait_ns: self.wait_ns + other.wait_ns,
            runs: self.runs + other.runs,
        }
    }
}

pub fn parse_schedstat(text: &str) -> Option<SchedStat> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(SchedStat {
        cpu_ns: fields.next()??,
        wait_ns: fields.next()??,
        runs: fields.next()??,
    })
}

fn gone(error: &io::Error) -> bool {
    // A thread that exited since the listing: ENOENT, or ESRCH when it exits
    // while the file is being opened or read.
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ESRCH)
}

/// Thread `tid` of process `pid`.
pub fn thread_schedstat(pid: u32, tid: u32) -> Result<SchedStat, ProcError> {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text = read(&path)?;
    parse_schedstat(&text).ok_or(ProcError::Parse { path, text })
}

/// Every thread of process `pid`, summed (for a single-threaded process,
/// /proc/PID/schedstat).
pub fn process_schedstat(pid: u32) -> Result<SchedStat, ProcError> {
    let dir = format!("/proc/{pid}/task");
    let error = |source| ProcError::Read {
        path: dir.clone(),
        source,
    };
    let mut total = SchedStat::default();
    for entry in fs::read_dir(&dir).map_err(error)? {
        let tid = entry.map_err(error)?.file_name();
        let Some(tid) = tid.to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        match thread_schedstat(pid, tid) {
            Ok(stat) => total = total + stat,
            Err(ProcError::Read { source, .. }) if gone(&source) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(total)
}

/// Busy time of all CPUs together (user, nice, system, irq and softirq;
/// not idle, iowait or steal) from /proc/stat's first line, in clock ticks.
pub fn parse_proc_stat_busy(text: &str) -> Option<u64> {
    let mut fields = text.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    let at = |i: usize| ticks.get(i).copied();
    // user nice system idle iowait irq softirq steal guest guest_nice
    Some(at(0)? + at(1)? + at(2)? + at(5)? + at(6)?)
}

/// Context switches on all CPUs since boot (/proc/stat's `ctxt` line).
pub fn parse_proc_stat_ctxt(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("ctxt "))
        .and_then(|n| n.trim().parse().ok())
}

/// Context switches on all CPUs since boot.
pub fn machine_switches() -> Result<u64, ProcError> {
    let path = "/proc/stat";
    let text = read(path)?;
    parse_proc_stat_ctxt(&text).ok_or_else(|| ProcError::Parse {
        path: path.into(),
        text: "no ctxt line".into(),
    })
}

/// Busy time of all CPUs together since boot, in ns (tick-sampled, so good
/// to about 10 ms per CPU over a window).
pub fn machine_busy_ns() -> Result<u64, ProcError> {
    let path = "/proc/stat";
    let text = read(path)?;
    let ticks = parse_proc_stat_busy(&text).ok_or_else(|| ProcError::Parse {
        path: path.into(),
        text: text.lines().next().unwrap_or("").into(),
    })?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Ok(ticks.saturating_mul(1_000_000_000 / per_second))
}

/// The children of process `pid` (of its main thread, as the daemon starts
/// its helper from there).
pub fn children(pid: u32) -> Result<Vec<u32>, ProcError> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = read(&path)?;
    text.split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| ProcError::Parse {
                path: path.clone(),
                text: text.clone(),
            })
        })
        .collect()
}

/// IPI counters, summed over CPUs, from /proc/interrupts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ipis {
    /// RES: rescheduling interrupts (a wake-up of a task on another CPU).
    pub resched: u64,
    /// CAL: function call interrupts (membarrier's expedited IPIs, TLB
    /// shootdowns, remote wake-ups queued to an idle CPU, ...).
    pub call: u64,
    /// TLB: TLB shootdowns. On x86 since Linux 3.x these arrive as function
    /// calls, so they are also counted in `call`.
    pub tlb: u64,
}

impl Ipis {
    pub fn read() -> Result<Ipis, ProcError> {
        let path = "/proc/interrupts";
        let text = read(path)?;
        parse_interrupts(&text).ok_or_else(|| ProcError::Parse {
            path: path.to_owned(),
            text: "no RES, CAL or TLB row".into(),
        })
    }

    pub fn since(self, earlier: Ipis) -> Ipis {
        Ipis {
            resched: self.resched.saturating_sub(earlier.resched),
            call: self.call.saturating_sub(earlier.call),
            tlb: self.tlb.saturating_sub(earlier.tlb),
        }
    }

    /// Every IPI once: rescheduling plus function call (which includes
    /// the TLB shootdowns).
    pub fn total(self) -> u64 {
        self.resched + self.call
    }
}

/// RES, CAL and TLB rows of /proc/interrupts, each summed over the CPU
/// columns (the header line says how many); `None` if none of them is there
/// (not x86, or not Linux).
pub fn parse_interrupts(text: &str) -> Option<Ipis> {
    let mut lines = text.lines();
    let ncpu = lines.next()?.split_whitespace().count();
    let mut ipis = Ipis::default();
    let mut found = false;
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let field = match name.trim() {
            "RES" => &mut ipis.resched,
            "CAL" => &mut ipis.call,
            "TLB" => &mut ipis.tlb,
            _ => continue,
        };
        found = true;
        *field = rest
            .split_whitespace()
            .take(ncpu)
            .map_while(|n| n.parse::<u64>().ok())
            .sum();
    }
    found.then_some(ipis)
}

/// CONFIG_HZ from a kernel config's text.
pub fn parse_config_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|line| line.strip_prefix("CONFIG_HZ="))
        .and_then(|hz| hz.trim().parse().ok())
}

/// The kernel's HZ, from /boot/config-RELEASE or /proc/config.gz (through
/// `zcat`), if either is there.
fn kernel_hz(release: &str) -> Option<u32> {
    if let Ok(config) = fs::read_to_string(format!("/boot/config-{release}")) {
        return parse_config_hz(&config);
    }
    if !Path::new("/proc/config.gz").exists() {
        return None;
    }
    let output = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()?;
    parse_config_hz(&String::from_utf8_lossy(&output.stdout))
}

/// What the results were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// UTC, ISO 8601, when the run started.
    pub date: String,
    pub kernel: String,
    pub online_cpus: usize,
    /// The CPUs the benchmark may run on and loads.
    pub usable_cpus: Vec<usize>,
    pub hz: Option<u32>,
    pub clocksource: Option<String>,
    pub cpu_model: Option<String>,
}

impl Environment {
    pub fn read(usable_cpus: Vec<usize>) -> Environment {
        let trimmed = |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
        let kernel = trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
        let online_cpus = trimmed("/sys/devices/system/cpu/online")
            .and_then(|list| count_cpu_list(&list))
            .unwrap_or(usable_cpus.len());
        Environment {
            date: iso8601_utc(SystemTime::now()),
            hz: kernel_hz(&kernel),
            kernel,
            online_cpus,
            usable_cpus,
            clocksource: trimmed(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            ),
            cpu_model: fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            }),
        }
    }
}

/// The number of CPUs in a kernel CPU list such as `0-3,8,10-11`.
pub fn count_cpu_list(list: &str) -> Option<usize> {
    list.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                b.checked_sub(a).map(|d| d + 1)
            }
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// (year, month, day) of the proleptic Gregorian calendar for a count of
/// days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn schedstat_fields() {
        assert_eq!(
            parse_schedstat("123456 789 10\n"),
            Some(SchedStat {
                cpu_ns: 123_456,
                wait_ns: 789,
                runs: 10
            })
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("1 2"), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn proc_stat_busy_ticks() {
        let text = "cpu  100 2 30 5000 7 4 5 9 0 0\ncpu0 50 1 15 2500 3 2 2 4 0 0\n";
        assert_eq!(parse_proc_stat_busy(text), Some(100 + 2 + 30 + 4 + 5));
        assert_eq!(parse_proc_stat_busy("cpu0 1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_proc_stat_busy("cpu 1 2 3\n"), None);
        assert!(machine_busy_ns().is_ok());
        assert_eq!(parse_proc_stat_ctxt(text), None);
        assert_eq!(
            parse_proc_stat_ctxt("cpu 1 2 3 4 5 6 7\nintr 5 0\nctxt 123456\nbtime 1\n"),
            Some(123_456)
        );
        assert!(machine_switches().unwrap() > 0);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // A sleep switches this (new) thread out, which is when its
        // counters are brought up to date.
        std::thread::sleep(Duration::from_millis(2));
        // This thread first: the process's sum, read after, includes its
        // later (so larger) counters.
        let tid = nix::unistd::gettid().as_raw() as u32;
        let thread = thread_schedstat(std::process::id(), tid).unwrap();
        let stat = process_schedstat(std::process::id()).unwrap();
        assert!(thread.cpu_ns > 0 && thread.runs > 0);
        assert!(thread.cpu_ns <= stat.cpu_ns && thread.runs <= stat.runs);
    }

    #[test]
    fn interrupts_rows_are_summed_over_cpus_only() {
        let text = "           CPU0       CPU1       \n\
                    \x20 0:         44          0   IO-APIC   2-edge      timer\n\
                    LOC:     235956     264673   Local timer interrupts\n\
                    RES:      94861      70337   Rescheduling interrupts\n\
                    CAL:     237981     184070   Function call interrupts\n\
                    TLB:      57114      54405   TLB shootdowns\n\
                    ERR:          0\n";
        assert_eq!(
            parse_interrupts(text),
            Some(Ipis {
                resched: 94_861 + 70_337,
                call: 237_981 + 184_070,
                tlb: 57_114 + 54_405,
            })
        );
        assert_eq!(parse_interrupts("CPU0\nLOC: 1 Local\n"), None);
    }

    #[test]
    fn ipi_deltas() {
        let a = Ipis {
            resched: 1,
            call: 2,
            tlb: 3,
        };
        let b = Ipis {
            resched: 11,
            call: 22,
            tlb: 33,
        };
        assert_eq!(b.since(a).total(), 30);
        assert_eq!(a.since(b), Ipis::default());
    }

    #[test]
    fn config_hz() {
        assert_eq!(
            parse_config_hz("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(parse_config_hz("CONFIG_HZ_250=y\n"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn dates() {
        let at = |secs| iso8601_utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
