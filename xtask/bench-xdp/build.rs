//! Builds the flood generator (`xtask/flood-ebpf`) into `OUT_DIR/flood.o`.

#[path = "../../api-shield/build/ebpf_build.rs"]
mod ebpf_build;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    ebpf_build::build_ebpf(
        &manifest_dir.join("../flood-ebpf"),
        "api-shield-flood-ebpf",
        "flood.o",
        &[],
        &[],
    )
}
