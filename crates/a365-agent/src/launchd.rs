//! launchd socket activation (macOS): the LaunchAgent's `Sockets` entry
//! makes launchd create and hold the socket, so a client that connects
//! while the agent restarts waits instead of failing, as with systemd's
//! socket unit. `launch_activate_socket` (libSystem) hands it over.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

/// The key of the socket in the LaunchAgent's `Sockets` dictionary.
pub const SOCKET_NAME: &str = "Listener";

#[allow(unsafe_code)]
unsafe extern "C" {
    /// `launch_activate_socket(3)`: the fds of socket entry `name`, in an
    /// array the caller frees.
    fn launch_activate_socket(
        name: *const std::ffi::c_char,
        fds: *mut *mut std::ffi::c_int,
        cnt: *mut usize,
    ) -> std::ffi::c_int;
    fn free(ptr: *mut std::ffi::c_void);
}

/// The sockets launchd holds for us under [`SOCKET_NAME`]; `Ok(None)` when
/// this process was not started by launchd (`ESRCH`) or has no such entry
/// (`ENOENT`).
#[allow(unsafe_code)]
pub fn activated_sockets() -> std::io::Result<Option<Vec<OwnedFd>>> {
    let name = CString::new(SOCKET_NAME).map_err(std::io::Error::other)?;
    let mut fds: *mut std::ffi::c_int = std::ptr::null_mut();
    let mut count: usize = 0;
    // SAFETY: a NUL-terminated name and two out-pointers to our locals.
    let err = unsafe { launch_activate_socket(name.as_ptr(), &mut fds, &mut count) };
    match err {
        0 => {}
        ESRCH | ENOENT => return Ok(None),
        other => return Err(std::io::Error::from_raw_os_error(other)),
    }
    let mut owned = Vec::with_capacity(count);
    if !fds.is_null() {
        for i in 0..count {
            // SAFETY: launchd gave `count` fds in this array, each ours to
            // own and close; the array is freed below, once.
            owned.push(unsafe { OwnedFd::from_raw_fd(*fds.add(i)) });
        }
        // SAFETY: allocated by launch_activate_socket with malloc.
        unsafe { free(fds.cast()) };
    }
    Ok(Some(owned))
}

/// `<errno.h>` on macOS.
const ENOENT: std::ffi::c_int = 2;
const ESRCH: std::ffi::c_int = 3;
