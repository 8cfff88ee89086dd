//! Installs an allowlist given as a table of [`Allow`] rows, for every thread
//! (TSYNC), failing closed.
//!
//! A call outside the table never executes. It traps to a SIGSYS reporter that
//! writes the call's name to stderr and then re-issues the very same call with
//! SIGSYS reset to its default action (SA_RESETHAND) and blocked (we are in its
//! handler): the kernel then forces the default action, and the process dies
//! by SIGSYS, as with SECCOMP_RET_KILL_PROCESS, but with the culprit named.
//! rt_sigaction and rt_sigreturn are in neither table, so the reporter can be
//! neither replaced nor returned from.
#![allow(unsafe_code)]

use std::io;
use std::sync::OnceLock;

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// One allowed system call; several rows for the same call are alternatives.
#[derive(Debug, Clone)]
pub struct Allow {
    pub syscall: &'static str,
    /// All must hold for the row to match.
    pub args: Vec<Arg>,
}

/// A condition on one of the six syscall arguments (index 0-5).
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    Eq(u32, u64),
    /// `arg & mask == value`
    MaskedEq(u32, u64, u64),
}

impl Allow {
    /// The call with any arguments.
    pub fn any(syscall: &'static str) -> Self {
        Self {
            syscall,
            args: Vec::new(),
        }
    }

    /// The call when all of `args` hold.
    pub fn when(syscall: &'static str, args: impl Into<Vec<Arg>>) -> Self {
        Self {
            syscall,
            args: args.into(),
        }
    }
}

/// The rows both processes' tables share (each then adds its own), as
/// crosvm's policies include a common one: what Rust's std and the SIGSYS
/// reporter need of any confined process of ours.
pub fn baseline() -> Vec<Allow> {
    let futex_op = |op: i32| Arg::Eq(1, op as u64);
    vec![
        // Errors, logs and the SIGSYS reporter, to stderr only.
        Allow::when("write", [Arg::Eq(0, 2)]),
        // The vDSO's fallback when the clock source has no fast path; the
        // only clock either process reads.
        Allow::when("clock_gettime", [Arg::Eq(0, libc::CLOCK_MONOTONIC as u64)]),
        // Rust's std locks (stderr) use private futexes if ever contended.
        Allow::when(
            "futex",
            [futex_op(libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG)],
        ),
        Allow::when(
            "futex",
            [futex_op(libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG)],
        ),
        // A signal interrupting a sleeping call may restart it.
        Allow::any("restart_syscall"),
        // Leaving, whichever way.
        Allow::any("exit_group"),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown system call {0:?} in the seccomp table")]
    UnknownSyscall(&'static str),
    #[error("building the seccomp filter: {0}")]
    Build(#[source] libseccomp::error::SeccompError),
    #[error("loading the seccomp filter: {0}")]
    Load(#[source] libseccomp::error::SeccompError),
    #[error("installing the SIGSYS reporter: {0}")]
    Reporter(#[source] io::Error),
}

/// The highest syscall number the reporter names; others print as numbers.
const NAMED_SYSCALLS: usize = 512;

struct Reporter {
    who: &'static str,
    names: Vec<Option<String>>,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Installs the filter on all threads of the calling process. `who` prefixes
/// the reporter's message. Also sets no_new_privs (a filter requires it).
pub fn install(who: &'static str, table: &[Allow]) -> Result<(), SeccompError> {
    let mut filter = ScmpFilterContext::new(ScmpAction::Trap).map_err(SeccompError::Build)?;
    filter
        .set_act_badarch(ScmpAction::KillProcess)
        .and_then(|f| f.set_ctl_tsync(true))
        .and_then(|f| f.set_ctl_nnp(true))
        .map_err(SeccompError::Build)?;
    for row in table {
        let syscall = ScmpSyscall::from_name(row.syscall)
            .map_err(|_| SeccompError::UnknownSyscall(row.syscall))?;
        let conditions: Vec<ScmpArgCompare> = row
            .args
            .iter()
            .map(|arg| match *arg {
                Arg::Eq(i, v) => ScmpArgCompare::new(i, ScmpCompareOp::Equal, v),
                Arg::MaskedEq(i, mask, v) => {
                    ScmpArgCompare::new(i, ScmpCompareOp::MaskedEqual(mask), v)
                }
            })
            .collect();
        filter
            .add_rule_conditional(ScmpAction::Allow, syscall, &conditions)
            .map_err(SeccompError::Build)?;
    }
    install_reporter(who)?;
    filter.load().map_err(SeccompError::Load)
}

fn install_reporter(who: &'static str) -> Result<(), SeccompError> {
    // Names are resolved now: the handler may neither allocate nor call libseccomp.
    REPORTER.get_or_init(|| Reporter {
        who,
        names: (0..NAMED_SYSCALLS as i32)
            .map(|nr| ScmpSyscall::from(nr).get_name().ok())
            .collect(),
    });
    // SAFETY: a zeroed sigaction is a valid starting value; we set the fields
    // the kernel reads, and `on_sigsys` has the SA_SIGINFO signature.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    crate::errno::check(rc).map_err(SeccompError::Reporter)?;
    Ok(())
}

/// The trapped call's number and arguments, as the kernel left them in the
/// interrupted context (seccomp rolls the number back into the result register).
#[cfg(target_arch = "x86_64")]
fn trapped_call(context: &libc::ucontext_t) -> (i64, [i64; 6]) {
    let r = &context.uc_mcontext.gregs;
    (
        r[libc::REG_RAX as usize],
        [
            r[libc::REG_RDI as usize],
            r[libc::REG_RSI as usize],
            r[libc::REG_RDX as usize],
            r[libc::REG_R10 as usize],
            r[libc::REG_R8 as usize],
            r[libc::REG_R9 as usize],
        ],
    )
}

#[cfg(target_arch = "aarch64")]
fn trapped_call(context: &libc::ucontext_t) -> (i64, [i64; 6]) {
    let r = &context.uc_mcontext.regs;
    (
        r[8] as i64,
        [r[0], r[1], r[2], r[3], r[4], r[5]].map(|x| x as i64),
    )
}

/// Appends `n` in decimal; the handler cannot use the formatting machinery.
fn push_decimal(out: &mut Line, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(&digits[i..]);
}

/// A fixed-size line buffer that silently truncates.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

extern "C" fn on_sigsys(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let (nr, args) = trapped_call(unsafe { &*context.cast::<libc::ucontext_t>() });
    let mut line = Line {
        buf: [0; 160],
        len: 0,
    };
    if let Some(reporter) = REPORTER.get() {
        line.push(reporter.who.as_bytes());
        line.push(b": seccomp: forbidden system call ");
        let name = usize::try_from(nr)
            .ok()
            .and_then(|i| reporter.names.get(i))
            .and_then(Option::as_deref);
        line.push(name.unwrap_or("?").as_bytes());
        line.push(b" (");
        push_decimal(&mut line, nr as u64);
        line.push(b"); killed by SIGSYS\n");
    }
    // SAFETY: write(2) of a valid buffer; async-signal-safe.
    unsafe { libc::write(2, line.buf.as_ptr().cast(), line.len) };
    // SAFETY: re-issuing the trapped call with its own arguments: the filter
    // traps it again, before it runs, and with SIGSYS blocked and reset to its
    // default action the kernel kills the process.
    unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    // Unreachable unless the kernel let the call through, which it cannot.
    std::process::abort();
}

/// For tests of a real policy: runs `install` then `forbidden` in a forked
/// child whose stderr is captured, and returns how the child ended and what
/// it wrote. The child never returns into the caller.
#[cfg(feature = "test-support")]
pub fn run_confined_child(install: impl FnOnce(), forbidden: impl FnOnce()) -> (i32, String) {
    let mut pipe = [0; 2];
    // SAFETY: `pipe` is valid for two ints.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only installs the filter and makes the forbidden call
    // (glibc keeps malloc usable after fork), then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain descriptor calls in the child.
        unsafe {
            libc::dup2(pipe[1], 2);
            libc::close(pipe[0]);
        }
        install();
        forbidden();
        // SAFETY: leaving the child without running the test harness's code.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(pipe[1]) };
    let mut output = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        output.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: reaping our own child; closing our read end.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(pipe[0]);
    }
    (status, String::from_utf8_lossy(&output).into_owned())
}

/// For tests that keep ARCHITECTURE.md's sandbox tables true: compares the
/// calls of `table` with the first column of the Markdown table that
/// follows `heading` in `doc` (names separated by commas, each maybe
/// followed by a condition), both ways. `Err` names every call that one
/// side has and the other lacks.
#[cfg(feature = "test-support")]
pub fn documented_exactly(table: &[Allow], doc: &str, heading: &str) -> Result<(), String> {
    use std::collections::BTreeSet;

    let section = doc
        .find(heading)
        .map(|at| &doc[at..])
        .ok_or_else(|| format!("no {heading:?} in the document"))?;
    let rows = section
        .lines()
        .skip_while(|line| !line.starts_with("| syscall |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'));
    let documented: BTreeSet<&str> = rows
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|names| names.split(','))
        .filter_map(|name| name.split_whitespace().next())
        .collect();
    let allowed: BTreeSet<&str> = table.iter().map(|allow| allow.syscall).collect();
    let undocumented: Vec<_> = allowed.difference(&documented).collect();
    let not_allowed: Vec<_> = documented.difference(&allowed).collect();
    if undocumented.is_empty() && not_allowed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "under {heading:?}: allowed but not documented {undocumented:?}; documented but not allowed {not_allowed:?}"
    ))
}
