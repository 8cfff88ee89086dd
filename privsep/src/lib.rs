//! What both sides of barrierd's privilege boundary share: the one-way
//! message protocol (helper → publisher), what the launcher hands the helper,
//! the privilege drop, and the
//! seccomp installer with its SIGSYS reporter. Each side keeps its own
//! seccomp table next to its own code.

pub mod cpus;
pub mod credentials;
pub mod errno;
pub mod handover;
pub mod ipc;
pub mod seccomp;
