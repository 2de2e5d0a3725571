//! Builds the XDP program (`api-shield-ebpf`) and leaves `api-shield-ebpf.o` in `OUT_DIR` for
//! `include_bytes!` (see `build/ebpf_build.rs`).

#[path = "build/ebpf_build.rs"]
mod ebpf_build;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let common = manifest_dir.join("../api-shield-common");
    ebpf_build::build_ebpf(
        &manifest_dir.join("../api-shield-ebpf"),
        "api-shield-ebpf",
        "api-shield-ebpf.o",
        &[common.join("src"), common.join("Cargo.toml")],
        // The packet's fields are read with unaligned loads; without this LLVM splits each into
        // byte loads, and on the wire every extra load of a frame's line costs (BENCHMARKS.md).
        // The kernel's verifier allows misaligned packet access where the architecture has
        // efficient unaligned access (x86-64, arm64); elsewhere it would refuse the program at
        // load. rustc marks the feature unstable (and warns so); the eBPF half needs nightly.
        &["+allows-misaligned-mem-access"],
    )
}
