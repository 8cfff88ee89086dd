//! barrierd: publishes, in a read-only mmap-able file, when each CPU last
//! entered the kernel, so that clients can wait for global asymmetric memory
//! barriers without IPIs or syscalls on the fast path.

#![deny(unsafe_code)]

mod exit;
mod launch;
mod notify;
mod prod;
mod published;
mod publisher;
mod sandbox;
mod status;
mod tracepoints;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing::Level;

const AFTER_HELP: &str = "\
Tracepoints: `group/name` (attached as raw tracepoints, no tracefs needed) or
numeric tracefs ids as the 2018 barrierd took them (these need tracefs mounted:
`mount -t tracefs nodev /sys/kernel/tracing`). Without any, the default set is
irq/softirq_entry, irq_vectors/local_timer_entry and sched/sched_switch.
sched/sched_switch is always traced: it also tells when a CPU runs its idle
task, a kernel thread or barrierd itself, which counts as up to date.

Must be started as root: a helper (barrierd-helper, next to this executable)
loads and attaches the BPF program as root, then drops to --helper-user under
seccomp; this process drops to --user, with no capabilities, under Landlock
and seccomp, before it publishes anything. scripts/setup creates both
accounts.
Stop it with SIGTERM or SIGINT; the file is then marked stopped.
`barrierd status [PATH]` reports on a daemon, unprivileged (see `barrierd
status --help`); a PATH named `status` needs a leading `./`.
";

/// Publish per-CPU kernel-entry timestamps for asymmetric barriers.
#[derive(Parser, Debug)]
#[command(version, after_help = format!("{AFTER_HELP}\n\n{}", exit::help()))]
struct Args {
    /// The file to publish (created 0644 if absent; PATH.lock is created
    /// 0600) [default: /run/barrierd/public_file, where clients look].
    path: Option<PathBuf>,
    /// Tracepoints that count as kernel entries (a relative PATH that looks
    /// like one, `dir/file`, needs a leading `./`).
    tracepoints: Vec<String>,
    /// Account the publisher runs as (unprivileged, barrierd's own).
    #[arg(long, default_value = "barrierd")]
    user: String,
    /// Account the helper becomes once its program is attached (unprivileged,
    /// another than --user's).
    #[arg(long, default_value = "barrierd-helper")]
    helper_user: String,
    /// The privileged helper [default: barrierd-helper next to barrierd].
    #[arg(long)]
    helper: Option<PathBuf>,
    /// Replace a file at PATH that is not a barrierd file of this format version.
    #[arg(long)]
    force: bool,
    /// Accept PATH in a sticky directory where others can create entries
    /// (such as /tmp): another user can then create PATH or PATH.lock first
    /// and keep barrierd from starting.
    #[arg(long)]
    allow_shared_directory: bool,
    /// Nice value of the daemon's two processes: their passes are short, and
    /// under load each is a wake-up that waits for a CPU.
    #[arg(long, default_value_t = -10, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: i32,
    /// A bound for CPUs that take no ticks in user code (nohz_full, a stuck
    /// tick): while a client waits, a CPU whose latest kernel entry is this
    /// many ms old is made to enter the kernel (barrierd moves itself onto it
    /// and back). Off by default; prods are counted in the file's `prods`
    /// word.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    prod_after: Option<u64>,
    /// Trace every update (also VERBOSE=1).
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == "status")
    {
        return status::main(std::env::args_os().skip(1));
    }
    let args = Args::parse();
    let verbose =
        args.verbose || std::env::var_os("VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .with_max_level(if verbose { Level::DEBUG } else { Level::INFO })
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every message embeds its cause: the plain form, not the chain.
            eprintln!("barrierd: error: {error}");
            error
                .downcast_ref::<publisher::PublisherError>()
                .map_or(exit::Exit::Setup, publisher::PublisherError::exit_code)
                .into()
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    launch::close_inherited_descriptors()?;
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "barrierd must be started as root: its helper loads a BPF program (the publisher then drops to --user {})",
            args.user
        );
    }
    let mut specs = args.tracepoints;
    // `barrierd sched/sched_switch`: no PATH, only tracepoints.
    let path = match args.path {
        Some(word) if word.to_str().is_some_and(tracepoints::is_spec) => {
            specs.insert(0, word.to_string_lossy().into_owned());
            None
        }
        path => path,
    }
    .unwrap_or_else(|| PathBuf::from(barrierd_client::DEFAULT_PATH));
    if specs.is_empty() {
        specs = tracepoints::DEFAULT.iter().map(|s| s.to_string()).collect();
    }
    let tracepoints = specs
        .iter()
        .map(|spec| tracepoints::resolve(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let [account, helper_account] = sandbox::lookup_accounts(&args.user, &args.helper_user)?;
    let helper = launch::helper_path(args.helper.as_deref())?;
    let config = publisher::Config {
        path,
        tracepoints,
        account,
        helper_account,
        helper,
        force: args.force,
        allow_shared_directory: args.allow_shared_directory,
        nice: args.nice,
        prod_after: args.prod_after.map(std::time::Duration::from_millis),
    };
    let path = config.path.clone();
    let publisher::Stopped(signal) = publisher::run(config)?;
    tracing::info!("Stopped on {signal}; {} is marked stopped.", path.display());
    Ok(())
}
