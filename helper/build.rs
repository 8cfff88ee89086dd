use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "../bpf/barrierd.bpf.c";
const SHARED_HEADER: &str = "../bpf/barrierd_shared.h";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Debian's clang does not search the multiarch directory that holds asm/types.h.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", env::consts::ARCH);
    SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args([multiarch.as_str(), "-I../bpf", "-mcpu=v3"])
        .build_and_generate(out.join("barrierd.skel.rs"))
        .expect("compiling bpf/barrierd.bpf.c (needs clang, see README)");
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={SHARED_HEADER}");
}
