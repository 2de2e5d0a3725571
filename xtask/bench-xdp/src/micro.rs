//! Per-packet cost of the program itself: `BPF_PROG_TEST_RUN` with `repeat` on one frame per
//! decision path (includes the harness overhead, as the baseline figures do).

use anyhow::{Context as _, Result};
use api_shield_common::maps;
use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

/// Repetitions per path.
const REPEAT: u32 = 2_000_000;

/// Nanoseconds per run of api-shield's program on `frame`.
pub fn ns_per_run(ebpf: &Ebpf, frame: &[u8]) -> Result<f64> {
    ns_per_run_of(ebpf, maps::PROGRAM, frame)
}

/// Nanoseconds per run of the program `name` in `ebpf` on `frame`.
pub fn ns_per_run_of(ebpf: &Ebpf, name: &str, frame: &[u8]) -> Result<f64> {
    let program: &Xdp = ebpf.program(name).context("program")?.try_into()?;
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat: REPEAT,
        ..Default::default()
    })?;
    // The kernel reports the mean duration of one run.
    Ok(result.duration.as_nanos() as f64)
}
