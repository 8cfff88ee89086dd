use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "bpf/empty_switch.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Debian's clang does not search the multiarch directory that holds asm/types.h.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", env::consts::ARCH);
    SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args([multiarch.as_str()])
        .build_and_generate(out.join("empty_switch.skel.rs"))
        .expect("compiling bench/bpf/empty_switch.bpf.c (needs clang, see README)");
    println!("cargo:rerun-if-changed={SOURCE}");
}
