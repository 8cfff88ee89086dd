//! Whether a file can only have been written by someone we trust: the rule a
//! client applies to the barrierd file before believing a word of it (a
//! forged file completes barriers that have not happened), and the daemon to
//! the helper it runs as root.
//!
//! Trusted are root, the caller's own effective uid (any process of it can
//! change the caller anyway) and any uid the caller names. The file and every
//! directory above its resolved path must be owned by one of them, and none
//! may be writable by group or others, except a sticky directory such as
//! /tmp: others cannot rename or remove the entries of a trusted owner
//! there, so nobody else can change what the path names.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a path is not trusted: what failed, worded for an error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

/// Checks `opened` (the metadata of the descriptor the caller opened at
/// `path`, so that a name swapped after the check cannot pass) and every
/// directory above `path`'s resolved form against `trusted` (root and the
/// caller's effective uid are always trusted).
pub fn check(path: &Path, opened: &Metadata, trusted: &[u32]) -> Result<(), Untrusted> {
    let me = crate::sys::effective_uid();
    let is_trusted = |uid: u32| uid == 0 || uid == me || trusted.contains(&uid);
    let resolved = path
        .canonicalize()
        .map_err(|e| Untrusted(format!("cannot resolve {}: {e}", path.display())))?;
    let named = resolved
        .metadata()
        .map_err(|e| Untrusted(format!("{}: {e}", resolved.display())))?;
    if (named.dev(), named.ino()) != (opened.dev(), opened.ino()) {
        return Err(Untrusted(format!(
            "{} changed while it was opened",
            path.display()
        )));
    }
    for (i, component) in resolved.ancestors().enumerate() {
        let meta = if i == 0 {
            opened.clone()
        } else {
            component
                .metadata()
                .map_err(|e| Untrusted(format!("{}: {e}", component.display())))?
        };
        let what = if i == 0 { "it" } else { "directory" };
        if !is_trusted(meta.uid()) {
            return Err(Untrusted(format!(
                "{what} {} is owned by uid {}, whom we do not trust",
                component.display(),
                meta.uid()
            )));
        }
        let mode = meta.mode();
        let sticky_directory = meta.is_dir() && mode & libc::S_ISVTX != 0;
        if mode & 0o022 != 0 && !sticky_directory {
            return Err(Untrusted(format!(
                "{what} {} has mode {:o}: others may write it",
                component.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}
