//! Windows: opening the agent's named pipe as a client, and the pipe's
//! name.
//!
//! - A client opens the pipe with `SECURITY_SQOS_PRESENT |
//!   SECURITY_IDENTIFICATION`: whoever listens there may learn who we are,
//!   but cannot act as us (without it, a squatter holding
//!   SeImpersonatePrivilege, as service accounts do, impersonates the user
//!   before our peer check has even run). interprocess has no such option,
//!   so the handle is opened here and handed to it.
//! - The name is `\\.\pipe\a365-agent-{user}-{random}`, the random part
//!   kept in a file under the user's own `%LOCALAPPDATA%`: another local
//!   user cannot create the pipe first under a name they cannot guess.

#![allow(unsafe_code)]

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{
    ERROR_PIPE_BUSY, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, OPEN_EXISTING, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;

/// Connects to the pipe at `path` (`\\.\pipe\…`) as an identification-only
/// client, waiting a little while every instance is busy.
pub fn connect(path: &Path) -> io::Result<interprocess::local_socket::Stream> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    let mut tries = 0;
    let handle = loop {
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives
        // the call; no security attributes and no template are passed.
        let handle = unsafe {
            CreateFileW(
                wide.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if handle != INVALID_HANDLE_VALUE {
            break handle;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(ERROR_PIPE_BUSY as i32) || tries >= 10 {
            return Err(err);
        }
        tries += 1;
        // SAFETY: as above.
        unsafe { WaitNamedPipeW(wide.as_ptr(), 500) };
    };
    // SAFETY: a valid handle CreateFileW just returned, owned by no one else.
    let owned = unsafe { OwnedHandle::from_raw_handle(handle) };
    let stream = interprocess::os::windows::named_pipe::local_socket::Stream::try_from(owned)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(interprocess::local_socket::Stream::NamedPipe(stream))
}

/// `\\.\pipe\a365-agent-{user}-{random}`, the random part read from
/// `%LOCALAPPDATA%\a365\pipe-name` (made, private, on first use).
pub(crate) fn default_path() -> Option<PathBuf> {
    let user = std::env::var("USERNAME").ok()?;
    let dir = directories::BaseDirs::new()?.data_local_dir().join("a365");
    let file = dir.join("pipe-name");
    let suffix = match read_suffix(&file) {
        Some(suffix) => suffix,
        None => make_suffix(&dir, &file)?,
    };
    Some(PathBuf::from(format!(
        r"\\.\pipe\a365-agent-{user}-{suffix}"
    )))
}

fn read_suffix(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let suffix = text.trim();
    (suffix.len() == 32 && suffix.bytes().all(|b| b.is_ascii_hexdigit())).then(|| suffix.to_owned())
}

/// A new random suffix, unless another process made one first.
fn make_suffix(dir: &Path, file: &Path) -> Option<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).ok()?;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(mut f) => {
            f.write_all(suffix.as_bytes()).ok()?;
            let _ = crate::peer::make_private(file);
            Some(suffix)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_suffix(file),
        Err(_) => None,
    }
}
