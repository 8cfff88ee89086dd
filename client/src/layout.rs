//! The published file's layout, word for word as in include/barrierd.h.
//! Every field is a native-endian u64 written with single atomic stores; the
//! futex word of a field is its low 32-bit half.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

/// Where the daemon publishes unless told otherwise, and where clients look:
/// the systemd unit's RuntimeDirectory, a directory only root can change.
pub const DEFAULT_PATH: &str = "/run/barrierd/public_file";

/// The environment variable that names another file for clients.
pub const PATH_VARIABLE: &str = "BARRIERD_FILE";

/// The file a client should open: `$BARRIERD_FILE` if set and not empty,
/// else [`DEFAULT_PATH`].
pub fn default_path() -> PathBuf {
    std::env::var_os(PATH_VARIABLE)
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from)
}

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
    /// The first 8 bytes of the [`super::BootId`] of the boot in which a
    /// daemon last started on the file.
    pub const BOOT_ID_0: usize = 10;
    /// The last 8 bytes of that [`super::BootId`].
    pub const BOOT_ID_1: usize = 11;
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

/// Which boot a file belongs to. CLOCK_MONOTONIC starts again at every boot,
/// so a file's timestamps mean something only during the boot that wrote
/// them: a file left by a crash on persistent storage holds times far ahead
/// of the next boot's clock, and a client that trusted them would complete
/// barriers at once.
///
/// The 16 bytes of the UUID in [`BootId::PATH`], which the kernel draws
/// afresh at every boot, stored in words [`word::BOOT_ID_0`] (the first 8
/// bytes) and [`word::BOOT_ID_1`] (the last 8), each read as a native-endian
/// u64. All zero ([`BootId::UNKNOWN`]) in a file that a daemon without this
/// word wrote: no boot matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootId([u64; 2]);

impl BootId {
    /// Where the kernel shows the current boot's id.
    pub const PATH: &'static str = "/proc/sys/kernel/random/boot_id";
    /// What a file written before boot ids were recorded holds.
    pub const UNKNOWN: BootId = BootId([0, 0]);

    /// The current boot's id. Clients read it once, when they open the file.
    pub fn current() -> io::Result<BootId> {
        let text = std::fs::read_to_string(Self::PATH)?;
        Self::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds {text:?}, not a boot id", Self::PATH),
            )
        })
    }

    /// Parses a UUID as the kernel prints it: 32 hex digits, dashes between
    /// them ignored, at most one trailing newline. `None` for anything else,
    /// and for all zero, which is no boot's id.
    pub fn parse(text: &str) -> Option<BootId> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut bytes = [0u8; 16];
        let mut digits = 0;
        for c in text.chars().filter(|&c| c != '-') {
            let digit = c.to_digit(16)? as u8;
            let byte = bytes.get_mut(digits / 2)?;
            *byte = (*byte << 4) | digit;
            digits += 1;
        }
        let (first, last) = bytes.split_at(8);
        let id = BootId([
            u64::from_ne_bytes(first.try_into().ok()?),
            u64::from_ne_bytes(last.try_into().ok()?),
        ]);
        (digits == 32 && id != Self::UNKNOWN).then_some(id)
    }

    /// As stored in words [`word::BOOT_ID_0`] and [`word::BOOT_ID_1`].
    pub fn from_words(words: [u64; 2]) -> BootId {
        BootId(words)
    }

    /// The values of words [`word::BOOT_ID_0`] and [`word::BOOT_ID_1`].
    pub fn words(self) -> [u64; 2] {
        self.0
    }
}

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

/// The UUID form the kernel prints, lower-case with dashes.
impl std::fmt::Display for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = [self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes()].concat();
        for (i, byte) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The futex word of a field: its low 32-bit half, the first on
/// little-endian and the second on big. Waiters (client/src/sys.rs) and the
/// daemon's wakes (src/published.rs) both take it from here, so they cannot
/// disagree on which half the kernel keys on.
pub fn futex_half(word: &AtomicU64) -> *const u32 {
    let first = word.as_ptr().cast::<u32>().cast_const();
    if cfg!(target_endian = "big") {
        first.wrapping_add(1)
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_are_parsed_byte_by_byte_in_uuid_order() {
        let id = BootId::parse("01234567-89ab-cdef-0011-2233445566ff\n").unwrap();
        assert_eq!(
            id.words(),
            [
                u64::from_ne_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]),
                u64::from_ne_bytes([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xff]),
            ]
        );
        assert_eq!(BootId::parse("0123456789ABCDEF00112233445566FF"), Some(id));
        assert_eq!(BootId::from_words(id.words()), id);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-2233445566ff");
    }

    #[test]
    fn anything_but_a_boot_id_is_refused() {
        for text in [
            "",
            "\n",
            "01234567-89ab-cdef-0011-2233445566f",
            "01234567-89ab-cdef-0011-2233445566ff0",
            "01234567-89ab-cdef-0011-2233445566fg",
            "01234567-89ab-cdef-0011-2233445566ff\n\n",
            " 01234567-89ab-cdef-0011-2233445566ff",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(BootId::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_current_boot_id_is_the_kernels() {
        let text = std::fs::read_to_string(BootId::PATH).unwrap();
        let current = BootId::current().unwrap();
        assert_eq!(BootId::parse(&text), Some(current));
        assert_ne!(current, BootId::UNKNOWN);
        assert_eq!(BootId::current().unwrap(), current);
    }

    #[test]
    fn futex_half_is_the_low_half() {
        let word = AtomicU64::new(0x1122_3344_5566_7788);
        let half = futex_half(&word);
        let base = word.as_ptr() as usize;
        assert!(half as usize == base || half as usize == base + 4);
        // Safe reads of the two halves' bytes, to see which one it names.
        let bytes = 0x1122_3344_5566_7788u64.to_ne_bytes();
        let at = half as usize - base;
        let read = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(read, 0x5566_7788);
    }
}
