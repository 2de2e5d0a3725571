//! Tests that need root and BPF: say loudly when they cannot run, and fail instead of skipping
//! when `API_SHIELD_REQUIRE_PRIVILEGED=1`.

/// Whether privileged tests must run.
pub fn required() -> bool {
    std::env::var("API_SHIELD_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// True when the test may go on; otherwise prints `skipping: <reason>` (or panics when
/// privileged tests are required).
pub fn can_run(test: &str, needs_netns: bool) -> bool {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_owned())
    } else if !std::path::Path::new("/sys/fs/bpf").exists() {
        Some("no /sys/fs/bpf".to_owned())
    } else if needs_netns && !ip_available() {
        Some("`ip` (iproute2) is not installed".to_owned())
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) => {
            assert!(
                !required(),
                "{test}: API_SHIELD_REQUIRE_PRIVILEGED=1 but the test cannot run: {reason}"
            );
            eprintln!("skipping: {test}: {reason} (needs root, BPF and network namespaces)");
            false
        }
    }
}

fn ip_available() -> bool {
    std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A pin directory on bpffs unique to one test, removed with everything in it when dropped.
pub struct PinDir {
    /// The directory given to the daemon as `pin_dir`.
    pub path: std::path::PathBuf,
}

impl PinDir {
    /// Picks a fresh directory under /sys/fs/bpf (the daemon creates it, mounting bpffs if
    /// needed).
    pub fn new() -> PinDir {
        PinDir {
            path: std::path::PathBuf::from(format!("/sys/fs/bpf/{}", super::unique("asx-test-"))),
        }
    }

    /// The layout directory the maps are pinned in.
    pub fn layout(&self) -> std::path::PathBuf {
        api_shield::fastpath::layout_dir(&self.path)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
