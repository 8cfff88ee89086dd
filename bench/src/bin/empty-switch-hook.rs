//! Attaches a BPF program that does nothing to sched_switch, says so on
//! stdout, and keeps it attached until killed (the kernel detaches it when
//! the process dies): the overhead benchmark's floor (bench/overhead.sh),
//! the cost of the hook itself, whatever the program does.
#![allow(unsafe_code)] // only in the generated skeleton

use std::io::{self, Write};
use std::mem::MaybeUninit;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/empty_switch.skel.rs"));
}

fn main() -> anyhow::Result<()> {
    let mut storage = MaybeUninit::uninit();
    let open = skel::EmptySwitchSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    let mut skel = open
        .load()
        .context("loading the empty program (needs root)")?;
    skel.attach().context("attaching to sched_switch")?;
    println!("attached");
    io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
