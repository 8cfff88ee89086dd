//! The published file's layout, word for word as in include/barrierd.h.
//! Every field is a native-endian u64 written with single atomic stores; the
//! futex word of a field is its low 32-bit half.

/// Word indices in the 128-byte header.
pub mod word {
    /// Number of per-CPU records (the machine's possible CPUs).
    pub const NCPU: usize = 0;
    /// Virtual time: advances by one after each update pass.
    pub const VTIME: usize = 1;
    /// Minimum over CPUs of their `last_interrupt_ns`.
    pub const LAST_INTERRUPT_NS: usize = 2;
    /// Minimum over CPUs of their `last_interrupt_vtime`.
    pub const LAST_INTERRUPT_VTIME: usize = 3;
    /// [`super::MAGIC`].
    pub const MAGIC: usize = 4;
    /// [`super::FORMAT_VERSION`].
    pub const FORMAT_VERSION: usize = 5;
    /// [`super::STATE_STOPPED`] or [`super::STATE_RUNNING`]; a futex word.
    pub const STATE: usize = 6;
    /// Incremented each time a daemon starts publishing into the file.
    pub const GENERATION: usize = 7;
    /// Process id of the publishing daemon, in its pid namespace (informational).
    pub const DAEMON_PID: usize = 8;
    /// CPUs the daemon moved onto to make them enter the kernel
    /// (`--prod-after`), since it started (informational).
    pub const PRODS: usize = 9;
}

/// Header size; per-CPU records start here.
pub const HEADER_BYTES: usize = 128;
/// Words per per-CPU record: `{last_interrupt_ns, last_interrupt_vtime}`.
pub const PER_CPU_WORDS: usize = 2;
/// `b"barrierd"` read as a native-endian u64: a file written on a machine of
/// the other endianness does not match.
pub const MAGIC: u64 = u64::from_ne_bytes(*b"barrierd");
pub const FORMAT_VERSION: u64 = 1;
pub const STATE_STOPPED: u64 = 0;
pub const STATE_RUNNING: u64 = 1;

/// Index of CPU `cpu`'s `last_interrupt_ns` word.
pub const fn cpu_ns_word(cpu: usize) -> usize {
    HEADER_BYTES / 8 + cpu * PER_CPU_WORDS
}

/// Index of CPU `cpu`'s `last_interrupt_vtime` word.
pub const fn cpu_vtime_word(cpu: usize) -> usize {
    cpu_ns_word(cpu) + 1
}

/// Bytes needed for `ncpu` records (the file itself is rounded up to a page).
pub const fn file_bytes(ncpu: usize) -> usize {
    HEADER_BYTES + ncpu * PER_CPU_WORDS * 8
}
