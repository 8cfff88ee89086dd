//! The system calls the comparison methods make: membarrier(2) and the
//! mprotect(2) IPI trick. The only module allowed `unsafe`; kept small so
//! that each block can be checked against its `SAFETY` comment.
#![allow(unsafe_code)]

use std::io;
use std::ptr::NonNull;

/// `membarrier(2)` commands (not in the libc crate).
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 16;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("membarrier({name}) is not supported here (MEMBARRIER_CMD_QUERY: {supported})")]
    Unsupported {
        name: &'static str,
        supported: String,
    },
    #[error("membarrier({name}): {source}")]
    Membarrier {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{call} of the mprotect page: {source}")]
    Page {
        call: &'static str,
        #[source]
        source: io::Error,
    },
}

fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    // SAFETY: membarrier takes no pointer: with flags 0 and cpu_id 0 it reads
    // and writes none of our memory, whatever the command.
    let result = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// One membarrier command, checked to be supported (and registered for, if
/// it needs that) when made.
#[derive(Debug, Clone, Copy)]
pub struct Membarrier {
    cmd: libc::c_int,
    name: &'static str,
}

impl Membarrier {
    /// `MEMBARRIER_CMD_GLOBAL`: waits for every CPU to pass a full barrier
    /// (an RCU grace period); no IPI.
    pub fn global() -> Result<Membarrier, SysError> {
        Self::supported(MEMBARRIER_CMD_GLOBAL, "MEMBARRIER_CMD_GLOBAL")
    }

    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED`, after registering this process
    /// for it: IPIs the CPUs that run this process's other threads.
    pub fn private_expedited() -> Result<Membarrier, SysError> {
        let barrier = Self::supported(
            MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            "MEMBARRIER_CMD_PRIVATE_EXPEDITED",
        )?;
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).map_err(|source| {
            SysError::Membarrier {
                name: "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED",
                source,
            }
        })?;
        Ok(barrier)
    }

    fn supported(cmd: libc::c_int, name: &'static str) -> Result<Membarrier, SysError> {
        match membarrier(MEMBARRIER_CMD_QUERY) {
            Ok(mask) if mask & libc::c_long::from(cmd) != 0 => Ok(Membarrier { cmd, name }),
            Ok(mask) => Err(SysError::Unsupported {
                name,
                supported: format!("mask {mask:#x}"),
            }),
            Err(error) => Err(SysError::Unsupported {
                name,
                supported: error.to_string(),
            }),
        }
    }

    /// Issues the command once.
    pub fn barrier(&self) -> Result<(), SysError> {
        membarrier(self.cmd)
            .map(drop)
            .map_err(|source| SysError::Membarrier {
                name: self.name,
                source,
            })
    }
}

/// A private anonymous page for the mprotect trick: taking write permission
/// away from a present, writable page makes the kernel flush it from the TLB
/// of every CPU that may cache this process's page tables, with an IPI to
/// each other CPU currently running one of its threads, and wait for them.
/// A CPU that takes the IPI passes a full barrier.
#[derive(Debug)]
pub struct MprotectPage {
    page: NonNull<u8>,
    len: usize,
}

impl MprotectPage {
    pub fn new() -> Result<MprotectPage, SysError> {
        let error = |call| {
            let source = io::Error::last_os_error();
            SysError::Page { call, source }
        };
        // SAFETY: sysconf reads no memory of ours.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let len = usize::try_from(len).map_err(|_| error("sysconf(_SC_PAGESIZE)"))?;
        // SAFETY: a fresh anonymous private mapping at an address the kernel
        // chooses: it aliases nothing of ours.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(error("mmap"));
        }
        let page = NonNull::new(page.cast::<u8>()).ok_or_else(|| error("mmap"))?;
        let page = MprotectPage { page, len };
        page.touch();
        Ok(page)
    }

    /// Writes to the page, so that it is present, dirty and writable in the
    /// page tables (and in this CPU's TLB) before permission is taken away.
    fn touch(&self) {
        // SAFETY: the page is mapped read-write (`new` and `barrier` leave it
        // so) for as long as `self` lives, and only this object accesses it;
        // a volatile byte store needs no alignment.
        unsafe { self.page.as_ptr().write_volatile(1) };
    }

    fn protect(&self, prot: libc::c_int, call: &'static str) -> Result<(), SysError> {
        // SAFETY: the range is exactly our own mapping, which no reference
        // points into (only `touch` accesses it, through the raw pointer, and
        // not concurrently: `&self` methods, and the type is not Sync).
        let result = unsafe { libc::mprotect(self.page.as_ptr().cast(), self.len, prot) };
        if result != 0 {
            return Err(SysError::Page {
                call,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// One barrier: touch the page, mprotect it PROT_READ (the TLB
    /// shootdown), then back to PROT_READ | PROT_WRITE.
    pub fn barrier(&self) -> Result<(), SysError> {
        self.touch();
        self.protect(libc::PROT_READ, "mprotect(PROT_READ)")?;
        self.protect(
            libc::PROT_READ | libc::PROT_WRITE,
            "mprotect(PROT_READ|PROT_WRITE)",
        )
    }
}

impl Drop for MprotectPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; nothing refers to it after.
        unsafe { libc::munmap(self.page.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mprotect_barrier_leaves_the_page_writable() {
        let page = MprotectPage::new().unwrap();
        for _ in 0..3 {
            page.barrier().unwrap();
        }
        page.touch();
    }

    #[test]
    fn private_expedited_works_once_registered() {
        // Unsupported kernels are not this crate's concern; where the
        // command exists, registration must make it usable.
        if let Ok(barrier) = Membarrier::private_expedited() {
            barrier.barrier().unwrap();
        }
    }
}
