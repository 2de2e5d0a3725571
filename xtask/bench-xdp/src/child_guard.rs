//! A child process stopped when dropped, shared by bench-proxy and bench-flood (`#[path]`).

use std::{
    process::Child,
    time::{Duration, Instant},
};

/// A child process stopped when dropped: SIGTERM first, so an nginx master stops its workers
/// too (SIGKILL would orphan them, still listening on the benchmark's ports), then SIGKILL if it
/// has not exited within five seconds.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
