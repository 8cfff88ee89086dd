//! Performs heavy barriers through barrierd and prints how long each took.
//!
//! ```text
//! cargo run --release --example wait -- PATH [--iterations N] [--fallback membarrier]
//! ```
//!
//! Exits 1 if a barrier cannot be completed (for instance the daemon is not
//! running and there is no fallback), 2 on a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use barrierd_client::{Barrier, BarrierError, Fallback, Via};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "Performs heavy barriers through barrierd and prints their latency")]
struct Args {
    /// The file barrierd publishes.
    path: PathBuf,
    /// How many barriers to perform.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// What to do when the daemon cannot complete a barrier.
    #[arg(long, value_enum, default_value_t = FallbackArg::None)]
    fallback: FallbackArg,
    /// Longest wait for the daemon per barrier, in seconds.
    #[arg(long, default_value_t = barrierd_client::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = parse_seconds)]
    timeout: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum FallbackArg {
    /// Fail: report why the daemon could not serve the barrier.
    None,
    /// Use membarrier(MEMBARRIER_CMD_GLOBAL) instead.
    Membarrier,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if Duration::try_from_secs_f64(seconds).is_ok() => Ok(seconds),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wait: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), BarrierError> {
    let fallback = match args.fallback {
        FallbackArg::None => Fallback::None,
        FallbackArg::Membarrier => Fallback::Membarrier,
    };
    let barrier =
        Barrier::open(&args.path, fallback)?.with_timeout(Duration::from_secs_f64(args.timeout));
    if let Some(error) = barrier.unavailable() {
        eprintln!("wait: {error}");
    }

    let mut latencies = Vec::new();
    let mut via_membarrier = 0;
    let mut last_via = Via::Daemon;
    for i in 1..=args.iterations {
        let start = Instant::now();
        let via = barrier.heavy()?;
        let latency = start.elapsed();
        let route = match via {
            Via::Daemon => "barrierd".to_owned(),
            Via::Membarrier(why) => {
                via_membarrier += 1;
                if via != last_via {
                    eprintln!("wait: {why}; falling back to membarrier(MEMBARRIER_CMD_GLOBAL)");
                }
                format!("membarrier, {why}")
            }
        };
        last_via = via;
        println!("barrier {i}: {} ({route})", millis(latency));
        latencies.push(latency);
    }

    latencies.sort();
    let total: Duration = latencies.iter().sum();
    println!(
        "{} barriers, {} through barrierd, {via_membarrier} through membarrier: \
         min {}, median {}, mean {}, max {}",
        latencies.len(),
        latencies.len() - via_membarrier,
        millis(latencies[0]),
        millis(latencies[latencies.len() / 2]),
        millis(total / latencies.len() as u32),
        millis(latencies[latencies.len() - 1]),
    );
    Ok(())
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}
