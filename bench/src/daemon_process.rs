//! The daemon under test: starting and stopping our own barrierd, or finding
//! an already-running one, and its CPU use (publisher plus helper).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use barrierd_client::{Barrierd, OpenError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procfs::{self, ProcError, SchedStat};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("barrierd-bench starts barrierd, which needs root: run it as root (sudo), or measure an already-running daemon with --file PATH")]
    NotRoot,
    #[error("{0}: no barrierd binary there; build it (`cargo build --release --workspace --bins`) or name it with --daemon PATH")]
    NoBinary(PathBuf),
    #[error("cannot find this executable's directory to look for barrierd there: {0}; name it with --daemon PATH")]
    NoExeDir(#[source] io::Error),
    #[error("preparing {path}: {source}", path = path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting {binary}: {source}", binary = binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("barrierd exited during start-up ({status}); its output:\n{log}")]
    ExitedEarly { status: ExitStatus, log: String },
    #[error("barrierd's file was not running within {timeout:?} ({last}); its output:\n{log}")]
    StartTimeout {
        timeout: Duration,
        last: OpenError,
        log: String,
    },
    #[error("barrierd did not exit within {timeout:?} of SIGTERM (killed it); its output:\n{log}")]
    StopTimeout { timeout: Duration, log: String },
    #[error("signalling barrierd: {0}")]
    Signal(#[source] nix::Error),
    #[error("waiting for barrierd: {0}")]
    Wait(#[source] io::Error),
    #[error("barrierd's publisher (pid {pid}) has {count} children, expected its one helper")]
    Helper { pid: u32, count: usize },
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// Starting barrierd takes root (its helper loads BPF programs).
pub fn require_root() -> Result<(), ProcessError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(ProcessError::NotRoot)
    }
}

/// The barrierd binary next to this executable (`target/release/barrierd`
/// for `target/release/barrierd-bench`), or the one named on the command
/// line; checked to exist.
pub fn find_binary(named: Option<&Path>) -> Result<PathBuf, ProcessError> {
    let binary = match named {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .map_err(ProcessError::NoExeDir)?
            .with_file_name("barrierd"),
    };
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(ProcessError::NoBinary(binary))
    }
}

/// A barrierd we started, on a file in a fresh directory of our own. Killed
/// (SIGKILL) on drop unless [`OwnDaemon::stop`] stopped it; the directory is
/// removed on drop.
#[derive(Debug)]
pub struct OwnDaemon {
    child: Child,
    dir: PathBuf,
    path: PathBuf,
    log: PathBuf,
}

impl OwnDaemon {
    /// Starts `binary PATH` (default tracepoints) as root and waits until the
    /// file says it is running.
    pub fn start(binary: &Path, timeout: Duration) -> Result<(OwnDaemon, Barrierd), ProcessError> {
        require_root()?;
        let dir = std::env::temp_dir().join(format!("barrierd-bench-{}", std::process::id()));
        let dir_error = |source| ProcessError::Dir {
            path: dir.clone(),
            source,
        };
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(dir_error)?;
        // The publisher runs as barrierd; clients of any user may map the file.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(dir_error)?;
        let path = dir.join("public_file");
        let log = dir.join("barrierd.log");
        let log_file = File::create(&log).map_err(dir_error)?;
        let log_file2 = log_file.try_clone().map_err(dir_error)?;
        let child = Command::new(binary)
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_file2)
            .spawn()
            .map_err(|source| {
                let _ = fs::remove_dir_all(&dir);
                ProcessError::Spawn {
                    binary: binary.to_owned(),
                    source,
                }
            })?;
        let mut daemon = OwnDaemon {
            child,
            dir,
            path,
            log,
        };
        let barrierd = daemon.wait_running(timeout)?;
        Ok((daemon, barrierd))
    }

    fn wait_running(&mut self, timeout: Duration) -> Result<Barrierd, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(ProcessError::Wait)? {
                return Err(ProcessError::ExitedEarly {
                    status,
                    log: self.log(),
                });
            }
            match Barrierd::open(&self.path) {
                Ok(barrierd) => return Ok(barrierd),
                Err(last) if Instant::now() >= deadline => {
                    return Err(ProcessError::StartTimeout {
                        timeout,
                        last,
                        log: self.log(),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(unreadable: {e})"))
    }

    /// SIGTERM, then waits up to `timeout` for it to exit; returns its exit
    /// status and output.
    pub fn stop(mut self, timeout: Duration) -> Result<(ExitStatus, String), ProcessError> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)
            .map_err(ProcessError::Signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(ProcessError::Wait)? {
                return Ok((status, self.log()));
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::StopTimeout {
                    timeout,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The daemon's two processes, whose CPU time we account.
#[derive(Debug, Clone, Copy)]
pub struct DaemonProcesses {
    pub publisher: u32,
    pub helper: u32,
}

impl DaemonProcesses {
    /// The publisher `pid` and its only child, the helper.
    pub fn of(pid: u32) -> Result<DaemonProcesses, ProcessError> {
        let children = procfs::children(pid)?;
        match children[..] {
            [helper] => Ok(DaemonProcesses {
                publisher: pid,
                helper,
            }),
            _ => Err(ProcessError::Helper {
                pid,
                count: children.len(),
            }),
        }
    }

    /// Publisher's plus helper's scheduling counters so far.
    pub fn schedstat(&self) -> Result<SchedStat, ProcessError> {
        Ok(procfs::process_schedstat(self.publisher)? + procfs::process_schedstat(self.helper)?)
    }
}
