//! Finds the OS error number in an error's source chain, to tell "not permitted" and "busy"
//! apart from other failures of the BPF syscalls.

use std::error::Error;

/// The first `io::Error` errno found walking `error` and its sources.
pub(super) fn in_chain(error: &(dyn Error + 'static)) -> Option<i32> {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        if let Some(sys) = e.downcast_ref::<aya::sys::SyscallError>() {
            if let Some(code) = sys.io_error.raw_os_error() {
                return Some(code);
            }
        }
        current = e.source();
    }
    None
}
