use std::env;
use std::path::{Path, PathBuf};

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
    write_shared_constants(&out.join("shared_constants.rs"));
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={SHARED_HEADER}");
}

/// The header's `#define BARRIERD_NAME <number>ULL` lines as Rust `u64`
/// constants (`NAME`), so that the helper reads the header's values rather
/// than copies of them. The skeleton only carries types, not macros.
fn write_shared_constants(path: &Path) {
    let header = std::fs::read_to_string(SHARED_HEADER).expect("reading bpf/barrierd_shared.h");
    let constants: String = header
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("#define BARRIERD_")?.split_whitespace();
            let (name, value) = (words.next()?, words.next()?);
            let number: u64 = value.trim_end_matches("ULL").parse().ok()?;
            Some(format!("pub const {name}: u64 = {number};\n"))
        })
        .collect();
    assert!(
        constants.contains("QUIESCENT"),
        "bpf/barrierd_shared.h defines no BARRIERD_QUIESCENT"
    );
    std::fs::write(path, constants).expect("writing the shared constants");
}
