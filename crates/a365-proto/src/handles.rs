//! Starting the agent from a client or from `a365-agent --daemon`: Windows
//! hands every inheritable handle to a child, and the standard handles a
//! process was given are inheritable. The long-lived agent would then hold
//! pipes its starter's caller reads to the end (`t=$(a365 token)`, a
//! PowerShell assignment, a CI step), which then never see their end.

/// Makes this process's standard handles non-inheritable before it starts
/// a child with handles of its own (Windows; nothing elsewhere, where
/// the child's standard descriptors replace ours).
#[cfg(windows)]
#[allow(unsafe_code)]
pub fn keep_std_handles() {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{HANDLE_FLAG_INHERIT, SetHandleInformation};
    let handles = [
        std::io::stdin().as_raw_handle(),
        std::io::stdout().as_raw_handle(),
        std::io::stderr().as_raw_handle(),
    ];
    for handle in handles {
        if !handle.is_null() {
            // SAFETY: a handle of this process's, or an invalid one, which
            // the call refuses; the flag only changes inheritance.
            unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0) };
        }
    }
}

#[cfg(not(windows))]
pub fn keep_std_handles() {}
