//! The skeleton libbpf-cargo generates from bpf/barrierd.bpf.c, and the
//! numeric macros of bpf/barrierd_shared.h as constants (build.rs).
#![allow(
    unsafe_code,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unused_imports,
    dead_code
)]

include!(concat!(env!("OUT_DIR"), "/barrierd.skel.rs"));

/// bpf/barrierd_shared.h's `BARRIERD_*` numbers, without the prefix.
pub mod shared {
    include!(concat!(env!("OUT_DIR"), "/shared_constants.rs"));
}
