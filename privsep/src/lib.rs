//! What both sides of barrierd's privilege boundary share: the one-way
//! message protocol (helper → publisher), the privilege drop, and the
//! seccomp installer with its SIGSYS reporter. Each side keeps its own
//! seccomp table next to its own code.

pub mod cpus;
pub mod credentials;
pub mod ipc;
pub mod seccomp;
