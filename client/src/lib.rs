//! Client side of barrierd: the published file's layout.

pub mod layout;
