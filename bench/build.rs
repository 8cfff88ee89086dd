use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: [(&str, &str); 2] = [
    ("bpf/empty_switch.bpf.c", "empty_switch.skel.rs"),
    ("bpf/ktime.bpf.c", "ktime.skel.rs"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Debian's clang does not search the multiarch directory that holds asm/types.h.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", env::consts::ARCH);
    for (source, skeleton) in PROGRAMS {
        SkeletonBuilder::new()
            .source(source)
            .clang_args([multiarch.as_str()])
            .build_and_generate(out.join(skeleton))
            .unwrap_or_else(|e| panic!("compiling bench/{source} (needs clang, see README): {e}"));
        println!("cargo:rerun-if-changed={source}");
    }
}
