//! The publisher's pure logic as a library: the daemon (src/main.rs) and
//! the fuzz target (fuzz/) run the very same validation and pass code.

pub mod update;
