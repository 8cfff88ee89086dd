//! The skeleton libbpf-cargo generates from bpf/barrierd.bpf.c (build.rs).
#![allow(unsafe_code, clippy::all, unused_imports, dead_code)]

include!(concat!(env!("OUT_DIR"), "/barrierd.skel.rs"));
