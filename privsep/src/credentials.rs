//! Giving up root for good, the same way on both sides: the helper once its
//! program is attached, the publisher once its file is mapped. Every step is
//! checked afterwards from what the kernel reports, not from what the calls
//! returned, and any doubt is an error (fail closed).
#![allow(unsafe_code)]

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("refusing to become uid {uid} gid {gid}: the account must not be root")]
    Root { uid: u32, gid: u32 },
    #[error("{0}: {1}")]
    Call(&'static str, #[source] io::Error),
    #[error("privilege drop did not hold: {0}")]
    NotDropped(&'static str),
}

fn check(what: &'static str, rc: libc::c_long) -> Result<libc::c_long, CredentialsError> {
    crate::errno::check(rc).map_err(|e| CredentialsError::Call(what, e))
}

/// The kernel's capability header and sets (capget(2), version 3: two
/// 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;
/// Capability numbers are below this on every kernel (64 bits in /proc).
const CAP_LIMIT: libc::c_ulong = 64;

fn header() -> CapHeader {
    CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    }
}

fn capget() -> Result<[CapData; 2], CredentialsError> {
    let mut data = [CapData::default(); 2];
    let mut header = header();
    // SAFETY: header and two data words, as capget(2) version 3 expects.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    check("capget", rc)?;
    Ok(data)
}

fn prctl(
    what: &'static str,
    option: libc::c_int,
    arg: libc::c_ulong,
) -> Result<libc::c_long, CredentialsError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    check(what, rc as libc::c_long)
}

/// Becomes `uid`:`gid` with no supplementary groups, every uid and gid the
/// same, every capability set (bounding and ambient included) empty,
/// no_new_privs and not dumpable. Must run as root with CAP_SETPCAP,
/// CAP_SETUID and CAP_SETGID, single-threaded (the calls are per thread).
///
/// The credential change also clears the parent-death signal, which could
/// not be delivered any more anyway: a signal from another uid is refused.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), CredentialsError> {
    if uid == 0 || gid == 0 {
        return Err(CredentialsError::Root { uid, gid });
    }
    // Needs CAP_SETPCAP, so before the uid change. EINVAL past the last
    // capability this kernel knows.
    for cap in 0..CAP_LIMIT {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(CredentialsError::Call("PR_CAPBSET_DROP", error));
        }
    }
    prctl(
        "PR_CAP_AMBIENT_CLEAR_ALL",
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    // SAFETY: an empty group list.
    check("setgroups", unsafe { libc::setgroups(0, std::ptr::null()) }
        as libc::c_long)?;
    // SAFETY: plain syscalls with integer arguments.
    check("setresgid", unsafe { libc::setresgid(gid, gid, gid) }
        as libc::c_long)?;
    // Without PR_SET_KEEPCAPS (off by default) this also empties the
    // permitted, effective and ambient sets.
    // SAFETY: as above.
    check("setresuid", unsafe { libc::setresuid(uid, uid, uid) }
        as libc::c_long)?;
    let mut header = header();
    let none = [CapData::default(); 2];
    // SAFETY: header and two data words, as capset(2) version 3 expects.
    check("capset", unsafe {
        libc::syscall(libc::SYS_capset, &mut header, none.as_ptr())
    })?;
    prctl("PR_SET_NO_NEW_PRIVS", libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // Again after the uid change, which makes the process dumpable as
    // fs.suid_dumpable says: otherwise other processes of the account could
    // ptrace us or read our /proc files.
    not_dumpable()?;
    verify(uid, gid)
}

/// No core dump, and our /proc files stay our owner's to read: the helper
/// sets it first thing, while root, and [`drop_to`] again.
pub fn not_dumpable() -> Result<(), CredentialsError> {
    prctl("PR_SET_DUMPABLE", libc::PR_SET_DUMPABLE, 0)?;
    Ok(())
}

fn verify(uid: u32, gid: u32) -> Result<(), CredentialsError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    let rc = unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    check("getresuid", rc as libc::c_long)?;
    if [r, e, s] != [uid; 3] {
        return Err(CredentialsError::NotDropped("a uid still differs"));
    }
    // SAFETY: three valid out-pointers.
    let rc = unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    check("getresgid", rc as libc::c_long)?;
    if [r, e, s] != [gid; 3] {
        return Err(CredentialsError::NotDropped("a gid still differs"));
    }
    // SAFETY: a zero-sized query.
    let groups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if check("getgroups", groups as libc::c_long)? != 0 {
        return Err(CredentialsError::NotDropped("supplementary groups remain"));
    }
    if capget()? != [CapData::default(); 2] {
        return Err(CredentialsError::NotDropped(
            "an effective, permitted or inheritable capability remains",
        ));
    }
    for cap in 0..CAP_LIMIT {
        // SAFETY: prctl with integer arguments only.
        let bounding = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if bounding < 0 {
            break;
        }
        // SAFETY: as above.
        let ambient = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if bounding != 0 || ambient > 0 {
            return Err(CredentialsError::NotDropped(
                "a bounding or ambient capability remains",
            ));
        }
    }
    // SAFETY: a setuid that must fail; if it succeeded we report it.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(CredentialsError::NotDropped("setuid(0) succeeded"));
    }
    if prctl("PR_GET_NO_NEW_PRIVS", libc::PR_GET_NO_NEW_PRIVS, 0)? != 1 {
        return Err(CredentialsError::NotDropped("no_new_privs is not set"));
    }
    if prctl("PR_GET_DUMPABLE", libc::PR_GET_DUMPABLE, 0)? != 0 {
        return Err(CredentialsError::NotDropped("still dumpable"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_accounts_are_refused() {
        assert!(matches!(
            drop_to(0, 1000),
            Err(CredentialsError::Root { .. })
        ));
        assert!(matches!(
            drop_to(1000, 0),
            Err(CredentialsError::Root { .. })
        ));
    }
}
