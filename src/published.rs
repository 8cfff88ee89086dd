//! The published file: opened without following symlinks, locked, validated,
//! sized and mapped by root before the privilege drop; then written only with
//! single atomic 64-bit stores through the shared mapping, each change
//! followed by a shared FUTEX_WAKE on the word's low half.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use barrierd_client::layout::{self, word, BootId};
use barrierd_client::{monotonic_ns, trust};
use barrierd_privsep::errno::check;
use memmap2::MmapRaw;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{self, geteuid};
use tracing::warn;

use barrierd::update::CpuWords;

const PAGE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}: is a symbolic link; refusing to follow it (give the real path)")]
    Symlink(PathBuf),
    #[error("{0}: not a file name (PATH must name a file in an existing directory)")]
    BadPath(PathBuf),
    #[error("{path}: {why}; refusing to use it (clients trust whatever this file says)")]
    Untrusted { path: PathBuf, why: String },
    #[error("{path}: is a {kind}, not a regular file; refusing to touch it")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{0}: not a barrierd file (no magic word); refusing to overwrite it (use --force to replace it)")]
    Foreign(PathBuf),
    #[error("{path}: barrierd file format version {found}, this daemon writes {expected}; refusing to overwrite it (use --force to replace it)")]
    Version {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("another barrierd holds {0}; stop it first (only one daemon may publish to a path)")]
    Locked(PathBuf),
    #[error("cannot read this boot's id from {proc} ({0}); it ties the file to this boot, so that clients do not trust a file of another one: start barrierd with /proc mounted", proc = BootId::PATH)]
    BootId(#[source] io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| match source.raw_os_error() {
        Some(libc::ELOOP) => FileError::Symlink(path.to_owned()),
        Some(libc::EISDIR) => FileError::NotRegular {
            path: path.to_owned(),
            kind: "directory",
        },
        _ => FileError::Io {
            path: path.to_owned(),
            source,
        },
    }
}

pub struct PublishedFile {
    map: MmapRaw,
    ncpu: usize,
    /// Holds the liveness lock (an OFD write lock) while the daemon lives.
    file: File,
    /// Holds the exclusive flock on PATH.lock while the daemon lives.
    _lock: File,
}

/// What the file held before this daemon started, for continuity.
pub struct Previous {
    pub per_cpu: Vec<CpuWords>,
    pub vtime: u64,
    pub generation: u64,
    /// The boot whose clock `per_cpu` is in.
    pub boot: BootId,
}

impl PublishedFile {
    /// Takes `PATH.lock`, then opens (creating it 0644 if absent), validates,
    /// sizes and maps `path` for `ncpu` CPUs, adopts it for this boot, and
    /// only then takes the liveness lock. A foreign or other-version file is
    /// left untouched unless `force`.
    pub fn open(
        path: &Path,
        ncpu: usize,
        force: bool,
        shared_directory: bool,
    ) -> Result<(Self, Previous), FileError> {
        let boot = BootId::current().map_err(FileError::BootId)?;
        let (dir, name) = open_directory(path, shared_directory)?;
        let lock_path = lock_path(path);
        let lock = open_regular(&dir, &lock_name(&name), &lock_path, 0o600)?;
        flock_exclusive(&lock).map_err(|e| match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => FileError::Locked(lock_path.clone()),
            _ => io_error(&lock_path)(e),
        })?;

        let file = open_regular(&dir, &name, path, 0o644)?;
        let len = file.metadata().map_err(io_error(path))?.len();
        let previous = if len == 0 {
            None
        } else {
            check_header(path, &file, len, force)?
        };
        let needed = (layout::file_bytes(ncpu) as u64).div_ceil(PAGE) * PAGE;
        if len != needed {
            file.set_len(needed).map_err(io_error(path))?;
        }
        let map = MmapRaw::map_raw(&file).map_err(io_error(path))?;
        let published = Self {
            map,
            ncpu,
            file,
            _lock: lock,
        };
        let previous = published.adopt(previous, boot);
        // Not before: a client that sees the lock trusts the words, and an
        // adopted file may have held a crashed daemon's RUNNING over another
        // boot's times until `adopt`.
        let published = match set_liveness_lock(&published.file) {
            Ok(()) => published,
            // Only a reader's read lock can be in the way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                warn!(
                    "warning: another process holds a read lock on {}, which would keep our liveness lock off it; publishing a copy in its place (clients that have the old file mapped see it stopped and must open {} again)",
                    path.display(),
                    path.display()
                );
                published.replace(&dir, &name, path)?
            }
            Err(e) => return Err(io_error(path)(e)),
        };
        Ok((published, previous))
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < layout::file_bytes(self.ncpu) / 8);
        // SAFETY: the mapping is at least file_bytes(ncpu) long (checked
        // above), page-aligned so every word is 8-byte aligned, and lives as
        // long as `self`. Other processes only read it, and only atomically.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>().add(index)) }
    }

    pub fn load(&self, index: usize) -> u64 {
        self.word(index).load(Ordering::Acquire)
    }

    /// One atomic store; does not wake (see [`Self::wake`]).
    pub fn store(&self, index: usize, value: u64) {
        self.word(index).store(value, Ordering::Release);
    }

    /// Wakes every process waiting on the word's low 32-bit half.
    pub fn wake(&self, index: usize) {
        let half = layout::futex_half(self.word(index));
        // SAFETY: FUTEX_WAKE only uses the address as a key; it is inside our
        // mapping. Not FUTEX_PRIVATE_FLAG: waiters are other processes.
        unsafe {
            libc::syscall(libc::SYS_futex, half, libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
        }
    }

    pub fn ncpu(&self) -> usize {
        self.ncpu
    }

    /// Marks the file stopped, writes the header for this daemon in `boot`,
    /// and returns where it continues from. The per-CPU words and vtime are
    /// kept only if the file is of this boot, has this CPU count and no word
    /// later than now; otherwise they are reset, and only the generation
    /// count goes on. Another boot's times are another clock's, whatever
    /// their values; clients of this boot saw such a file as
    /// [`barrierd_client::Liveness::OtherBoot`] and trusted none of its
    /// words, so none of them sees time go backwards.
    fn adopt(&self, previous: Option<Previous>, boot: BootId) -> Previous {
        self.store(word::STATE, layout::STATE_STOPPED);
        let now = monotonic_ns();
        let generation = previous.as_ref().map_or(0, |p| p.generation);
        let previous = previous
            .filter(|p| p.boot == boot && p.per_cpu.len() == self.ncpu)
            .filter(|p| p.per_cpu.iter().all(|w| w.ns <= now))
            .unwrap_or_else(|| {
                self.zero();
                Previous {
                    per_cpu: vec![CpuWords::default(); self.ncpu],
                    vtime: 0,
                    generation,
                    boot,
                }
            });
        // After the reset: a client that sees this boot's id sees the words
        // it may trust.
        let [first, last] = boot.words();
        self.store(word::BOOT_ID_0, first);
        self.store(word::BOOT_ID_1, last);
        self.store(word::NCPU, self.ncpu as u64);
        self.store(word::FORMAT_VERSION, layout::FORMAT_VERSION);
        self.store(word::MAGIC, layout::MAGIC);
        previous
    }

    /// Publishes a copy of the file under its name: created 0600 so that
    /// nobody can open (let alone lock) it before we hold its liveness lock,
    /// then opened to readers and renamed over PATH.
    fn replace(self, dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<Self, FileError> {
        let words: Vec<u64> = (0..layout::file_bytes(self.ncpu) / 8)
            .map(|index| self.load(index))
            .collect();
        let Self {
            map, ncpu, _lock, ..
        } = self;
        let mut temporary = OsString::from(".");
        temporary.push(name);
        temporary.push(".new");
        let temporary_path = path.with_file_name(&temporary);
        // One left by a daemon that died in here: we hold PATH.lock, so no
        // other daemon is using it.
        match unistd::unlinkat(
            dir,
            temporary.as_os_str(),
            unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(io_error(&temporary_path)(e.into())),
        }
        let file = open_regular(dir, &temporary, &temporary_path, 0o600)?;
        file.set_len(map.len() as u64)
            .map_err(io_error(&temporary_path))?;
        let copy = Self {
            map: MmapRaw::map_raw(&file).map_err(io_error(&temporary_path))?,
            ncpu,
            file,
            _lock,
        };
        for (index, &value) in words.iter().enumerate() {
            copy.store(index, value);
        }
        set_liveness_lock(&copy.file).map_err(io_error(&temporary_path))?;
        copy.file
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_error(&temporary_path))?;
        fcntl::renameat(dir, temporary.as_os_str(), dir, name)
            .map_err(|e| io_error(path)(e.into()))?;
        Ok(copy)
    }

    fn zero(&self) {
        for index in 0..layout::file_bytes(self.ncpu) / 8 {
            self.store(index, 0);
        }
    }
}

/// PATH.lock, beside PATH.
pub fn lock_path(path: &Path) -> PathBuf {
    PathBuf::from(lock_name(path.as_os_str()))
}

fn lock_name(name: &OsStr) -> OsString {
    let mut lock = name.to_owned();
    lock.push(".lock");
    lock
}

fn untrusted(path: &Path, why: impl Into<String>) -> FileError {
    FileError::Untrusted {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Opens the directory that holds `path`, creating it (0755) if it is
/// missing but its own parent exists, and checks it as clients will
/// ([`trust::check`]: root's, and nobody else can replace entries on the
/// way). Unless `shared` (--allow-shared-directory) it must also be a
/// directory where nobody else can create entries: elsewhere another user
/// can create PATH or PATH.lock first and keep the daemon from starting
/// (clients refuse their forgery, but nobody publishes).
fn open_directory(path: &Path, shared: bool) -> Result<(OwnedFd, OsString), FileError> {
    let name = match path.file_name() {
        Some(name) if !path.as_os_str().as_bytes().ends_with(b"/") => name.to_owned(),
        _ => return Err(FileError::BadPath(path.to_owned())),
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::DirBuilder::new().mode(0o755).create(parent) {
        // The umask must not decide who can reach the file.
        Ok(()) => std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error(parent))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(parent)(e)),
    }
    let dir = fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(parent)(e.into()))?;
    let meta = File::from(dir.try_clone().map_err(io_error(parent))?)
        .metadata()
        .map_err(io_error(parent))?;
    let others_create = meta.mode() & 0o022 != 0;
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    if others_create && !(shared && sticky) {
        return Err(untrusted(
            parent,
            if sticky {
                format!("directory of mode {:o}: any user could create {} or its lock before barrierd and keep it from starting; use a directory only root can write to (such as /run/barrierd, created if missing), or accept that with --allow-shared-directory", meta.mode() & 0o7777, path.display())
            } else {
                format!(
                    "directory of mode {:o} without the sticky bit: others could replace the file",
                    meta.mode() & 0o7777
                )
            },
        ));
    }
    if meta.uid() != 0 {
        return Err(untrusted(
            parent,
            format!(
                "directory owned by uid {}, who could replace the file",
                meta.uid()
            ),
        ));
    }
    // Above it, the clients' rule: nobody else can replace it on the way.
    let resolved = parent.canonicalize().map_err(io_error(parent))?;
    if let Some(above) = resolved.parent() {
        let above_meta = above.metadata().map_err(io_error(above))?;
        trust::check(above, &above_meta, &[]).map_err(|e| untrusted(parent, e.0))?;
    }
    Ok((dir, name))
}

/// Opens `name` in `dir` read-write without following a symlink, creating it
/// with exactly `mode` if absent, and refuses before touching it anything but
/// a regular file of ours, with one link, that nobody else may write.
/// O_NONBLOCK: opening a FIFO must not hang.
fn open_regular(dir: &OwnedFd, name: &OsStr, path: &Path, mode: u32) -> Result<File, FileError> {
    let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mode_t = Mode::from_bits_truncate(mode as libc::mode_t);
    let open =
        |extra: OFlag| fcntl::openat(dir, name, flags | extra, mode_t).map_err(io::Error::from);
    let (fd, created) = match open(OFlag::O_CREAT | OFlag::O_EXCL) {
        Ok(fd) => (fd, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            (open(OFlag::empty()).map_err(io_error(path))?, false)
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(io_error(path))?;
    let file_type = meta.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_socket() {
            "socket"
        } else if file_type.is_char_device() || file_type.is_block_device() {
            "device"
        } else {
            "special file"
        };
        return Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    if meta.uid() != geteuid().as_raw() {
        let owner = unistd::User::from_uid(unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map_or_else(String::new, |user| format!(" ({})", user.name));
        return Err(untrusted(
            path,
            format!(
                "owned by uid {}{owner}, not by us: that user made it, remove it",
                meta.uid()
            ),
        ));
    }
    if meta.nlink() != 1 {
        return Err(untrusted(
            path,
            format!(
                "has {} hard links; it may be another file's name",
                meta.nlink()
            ),
        ));
    }
    if !created && meta.mode() & 0o022 != 0 {
        return Err(untrusted(
            path,
            format!("mode {:o} lets others write it", meta.mode() & 0o7777),
        ));
    }
    if created {
        // The umask must not decide who can map the file.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_error(path))?;
    }
    Ok(file)
}

fn read_words(file: &File, count: usize) -> io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; count * 8];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunk")))
        .collect())
}

/// Reads an existing non-empty file's header (and records); `None` when it is
/// forced over.
fn check_header(
    path: &Path,
    file: &File,
    len: u64,
    force: bool,
) -> Result<Option<Previous>, FileError> {
    let refuse = |error: FileError| if force { Ok(None) } else { Err(error) };
    if len < layout::HEADER_BYTES as u64 {
        return refuse(FileError::Foreign(path.to_owned()));
    }
    let header = read_words(file, layout::HEADER_BYTES / 8).map_err(io_error(path))?;
    if header[word::MAGIC] != layout::MAGIC {
        return refuse(FileError::Foreign(path.to_owned()));
    }
    if header[word::FORMAT_VERSION] != layout::FORMAT_VERSION {
        return refuse(FileError::Version {
            path: path.to_owned(),
            found: header[word::FORMAT_VERSION],
            expected: layout::FORMAT_VERSION,
        });
    }
    let fits = usize::try_from(header[word::NCPU])
        .ok()
        .filter(|&n| n <= barrierd_privsep::ipc::MAX_CPUS)
        .filter(|&n| layout::file_bytes(n) as u64 <= len);
    let Some(n) = fits else {
        return refuse(FileError::Foreign(path.to_owned()));
    };
    let words = read_words(file, layout::file_bytes(n) / 8).map_err(io_error(path))?;
    let per_cpu = (0..n)
        .map(|cpu| CpuWords {
            ns: words[layout::cpu_ns_word(cpu)],
            vtime: words[layout::cpu_vtime_word(cpu)],
        })
        .collect();
    Ok(Some(Previous {
        per_cpu,
        vtime: header[word::VTIME],
        generation: header[word::GENERATION],
        boot: BootId::from_words([header[word::BOOT_ID_0], header[word::BOOT_ID_1]]),
    }))
}

fn flock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) })?;
    Ok(())
}

/// An exclusive OFD lock on the whole file, held for the daemon's life and
/// released by the kernel however it dies. Clients probe it with F_OFD_GETLK
/// for a read lock (which takes nothing): only a write lock conflicts, and
/// only a process that may write the file can take one, so no reader can
/// fake it. A reader's read lock can keep it off the file, which
/// [`PublishedFile::replace`] answers.
fn set_liveness_lock(file: &File) -> io::Result<()> {
    // SAFETY: zero is a valid flock value; we set the fields that matter.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `lock` is a valid struct flock for the call's duration.
    check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) })?;
    Ok(())
}
