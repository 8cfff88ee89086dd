//! A live view of barrierd at work: heavy barriers through the daemon and,
//! in the same window, `membarrier(MEMBARRIER_CMD_GLOBAL)`, with their
//! latency over the last second and the daemon's CPU use, refreshed once a
//! second; a summary when it ends (Ctrl-C, `--seconds`, or `--barriers`).
//!
//! ```text
//! demo [--seconds N] [--barriers N] [--gap-us US] [PATH]
//! ```
//!
//! PATH defaults to `$BARRIERD_FILE`, or /run/barrierd/public_file. Between
//! two barriers through the daemon it pauses `--gap-us` (1000 by default),
//! as an application that needs a barrier now and then would; back to back,
//! every barrier costs the daemon a pass.
//!
//! Exit status: 0 when every barrier through the daemon completed, 1 when one
//! could not (the message says why), 2 on a bad command line.
#![allow(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barrierd_client::{Barrierd, WaitError};

/// Set by SIGINT and SIGTERM: stop and print the summary.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    path: PathBuf,
    seconds: Option<u64>,
    barriers: Option<u64>,
    gap: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: barrierd_client::default_path(),
        seconds: None,
        barriers: None,
        gap: Duration::from_millis(1),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut number = |name: &str, least: u64| {
            let value = words.next().ok_or(format!("{name} needs a number"))?;
            match value.parse::<u64>() {
                Ok(n) if n >= least => Ok(n),
                _ => Err(format!("{name}: {value:?} is not a number from {least}")),
            }
        };
        match word.as_str() {
            "--seconds" => args.seconds = Some(number("--seconds", 1)?),
            "--barriers" => args.barriers = Some(number("--barriers", 1)?),
            "--gap-us" => args.gap = Duration::from_micros(number("--gap-us", 0)?),
            "-h" | "--help" => return Err(String::new()),
            _ if word.starts_with('-') => return Err(format!("unknown option {word}")),
            _ => args.path = PathBuf::from(word),
        }
    }
    Ok(args)
}

/// Latencies of one method, for the current window and for the whole run.
#[derive(Default)]
struct Samples {
    window: Vec<Duration>,
    all: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, latency: Duration) {
        self.window.push(latency);
        self.all.push(latency);
    }
}

/// "n, p50, p99, max" of some latencies, in ms.
fn summary(latencies: &mut [Duration]) -> String {
    if latencies.is_empty() {
        return format!("{:>8} {:>9} {:>9} {:>9}", 0, "-", "-", "-");
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:>8} {:>9.3} {:>9.3} {:>9.3}",
        latencies.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap())
    )
}

fn membarrier_global() -> std::io::Result<()> {
    // SAFETY: membarrier(MEMBARRIER_CMD_GLOBAL, 0) takes no pointers.
    if unsafe { libc::syscall(libc::SYS_membarrier, 1, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time (user + system) of the daemon's processes: the publisher, whose
/// pid the file names, and its children (the helper), from /proc.
fn daemon_cpu(pid: u64) -> Option<Duration> {
    let ticks_of = |pid: &str| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may hold spaces): utime, stime
        // are the 12th and 13th after the closing parenthesis.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let pid = pid.to_string();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut ticks = ticks_of(&pid)?;
    for child in children.split_whitespace() {
        ticks += ticks_of(child).unwrap_or(0);
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("demo: {message}");
            }
            eprintln!("usage: demo [--seconds N] [--barriers N] [--gap-us US] [PATH]");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let barrierd = Arc::new(Barrierd::open(&args.path).map_err(|e| e.to_string())?);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let daemon_pid = barrierd.daemon_pid();
    let ours = Arc::new(Mutex::new(Samples::default()));
    let theirs = Arc::new(Mutex::new(Samples::default()));
    let failure: Arc<Mutex<Option<WaitError>>> = Arc::default();

    let through_daemon = {
        let (barrierd, ours, failure) = (barrierd.clone(), ours.clone(), failure.clone());
        let (limit, gap) = (args.barriers.unwrap_or(u64::MAX), args.gap);
        std::thread::spawn(move || {
            for _ in 0..limit {
                if STOP.load(Ordering::Relaxed) {
                    return;
                }
                let start = Instant::now();
                if let Err(error) = barrierd.heavy_barrier(Duration::from_secs(5)) {
                    *failure.lock().unwrap() = Some(error);
                    break;
                }
                ours.lock().unwrap().push(start.elapsed());
                std::thread::sleep(gap);
            }
            STOP.store(true, Ordering::Relaxed);
        })
    };
    let through_membarrier = {
        let theirs = theirs.clone();
        std::thread::spawn(move || {
            while !STOP.load(Ordering::Relaxed) {
                let start = Instant::now();
                if membarrier_global().is_err() {
                    return;
                }
                theirs.lock().unwrap().push(start.elapsed());
            }
        })
    };

    let terminal = std::io::stdout().is_terminal();
    let header = format!(
        "{:<22} {:>8} {:>9} {:>9} {:>9}",
        "last second", "barriers", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "barrierd demo on {} ({} CPUs); Ctrl-C for the summary",
        args.path.display(),
        barrierd.ncpu()
    );
    let started = Instant::now();
    let cpu_at_start = daemon_cpu(daemon_pid);
    let (mut window_start, mut cpu_before) = (Instant::now(), cpu_at_start);
    let mut first = true;
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if window_start.elapsed() < Duration::from_secs(1) && !STOP.load(Ordering::Relaxed) {
            continue;
        }
        let elapsed = window_start.elapsed();
        let cpu_now = daemon_cpu(daemon_pid);
        let cpu = match (cpu_before, cpu_now) {
            (Some(before), Some(now)) => format!(
                "{:.2} % of a core",
                (now - before).as_secs_f64() * 100.0 / elapsed.as_secs_f64()
            ),
            _ => "unknown (/proc not readable)".to_owned(),
        };
        let line_ours = summary(&mut std::mem::take(&mut ours.lock().unwrap().window));
        let line_theirs = summary(&mut std::mem::take(&mut theirs.lock().unwrap().window));
        // On a terminal, each display replaces the last (cursor up four
        // lines, each line cleared to its end); elsewhere they follow.
        let end = if terminal { "\x1b[K" } else { "" };
        if terminal && !first {
            print!("\x1b[4A");
        }
        println!("{header}{end}");
        println!("{:<22} {line_ours}{end}", "barrierd");
        println!("{:<22} {line_theirs}{end}", "membarrier GLOBAL");
        println!("daemon CPU: {cpu}{end}");
        if !terminal {
            println!();
        }
        std::io::stdout().flush().ok();
        (window_start, cpu_before, first) = (Instant::now(), cpu_now, false);
        if args
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            STOP.store(true, Ordering::Relaxed);
        }
    }
    through_daemon.join().unwrap();
    through_membarrier.join().unwrap();

    let total = started.elapsed();
    println!("\nsummary over {:.1} s", total.as_secs_f64());
    println!(
        "{:<22} {:>8} {:>9} {:>9} {:>9}",
        "", "barriers", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:<22} {}",
        "barrierd",
        summary(&mut ours.lock().unwrap().all)
    );
    println!(
        "{:<22} {}",
        "membarrier GLOBAL",
        summary(&mut theirs.lock().unwrap().all)
    );
    if let (Some(before), Some(now)) = (cpu_at_start, daemon_cpu(daemon_pid)) {
        println!(
            "daemon CPU: {:.2} % of a core",
            (now - before).as_secs_f64() * 100.0 / total.as_secs_f64()
        );
    }
    let failure = failure.lock().unwrap().take();
    let completed = ours.lock().unwrap().all.len();
    match failure {
        Some(error) => Err(format!("a barrier through the daemon failed: {error}")),
        None if completed == 0 => Err("no barrier through the daemon completed".to_owned()),
        None => Ok(()),
    }
}
