//! The XDP program against the userspace model of its rules, on fuzzer-chosen frames: the check
//! `tests/xdp_model.rs` makes on random ones, with the same model and rig (included by path).
//! An input is a profile byte, then up to 16 frames, each a length byte and that many bytes of
//! choices for the frame template (VLAN tags, IPv4 options and fragments, IPv6 extension chains,
//! sources in and around the rules' networks, ports, cuts, overwritten bytes, raw bytes). The
//! frames run in order through BPF_PROG_TEST_RUN on the program reset to its loaded state, and
//! each verdict and counter must be the model's. Needs root and BPF: without them it says so and
//! checks nothing, unless API_SHIELD_REQUIRE_PRIVILEGED=1, when it fails.
#![no_main]

// Shared with tests/xdp_model.rs, which uses parts this target does not.
#[allow(dead_code)]
#[path = "../../../tests/support/xdp_diff.rs"]
mod diff;
#[allow(dead_code)]
#[path = "../../../tests/support/xdp_model.rs"]
mod model;

use std::cell::RefCell;

use diff::{Bytes, Pool, Rig};
use libfuzzer_sys::fuzz_target;
use model::{Model, Rules, PROFILES};

const MAX_FRAMES: usize = 16;

/// The program loaded under one profile.
struct Loaded {
    rules: &'static Rules,
    pool: Pool,
    rig: Rig,
}

fn load() -> Option<Vec<Loaded>> {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("not root")
    } else if !std::path::Path::new("/sys/fs/bpf").exists() {
        Some("no /sys/fs/bpf")
    } else {
        None
    };
    if let Some(missing) = missing {
        assert!(
            std::env::var("API_SHIELD_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "API_SHIELD_REQUIRE_PRIVILEGED=1 but the xdp fuzz target cannot run: {missing}"
        );
        eprintln!("skipping: fuzz target xdp: {missing} (needs root and BPF)");
        return None;
    }
    Some(
        PROFILES
            .iter()
            .map(|rules| Loaded {
                rules,
                pool: Pool::new(rules),
                rig: Rig::new(rules),
            })
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static LOADED: RefCell<Option<Vec<Loaded>>> = RefCell::new(load());
    }
    let Some((&profile, frames)) = data.split_first() else {
        return;
    };
    LOADED.with_borrow_mut(|loaded| {
        let Some(loaded) = loaded else {
            return;
        };
        let count = loaded.len();
        let Loaded { rules, pool, rig } = &mut loaded[usize::from(profile) % count];
        let mut model = Model::new(rules);
        let mut input = Bytes::new(frames);
        for i in 0..MAX_FRAMES {
            if input.is_empty() {
                break;
            }
            let len = usize::from(input.u8());
            let frame = diff::frame(&mut input.take(len), pool);
            if let Err(disagreement) = diff::check(rig, &mut model, &frame) {
                panic!("profile {}, frame {i}: {disagreement}", rules.name);
            }
        }
        rig.reset(&model);
    });
});
