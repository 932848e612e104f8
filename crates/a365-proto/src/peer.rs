//! Who is on the other end of a connection: this process's own user, or
//! someone else. The agent asks it of every client, and a client asks it of
//! the agent before sending anything (another user may have created the
//! socket or pipe first). One module for this platform concern: the user
//! id from `SO_PEERCRED` / `getpeereid` on Unix, the token user's SID of the
//! peer process on Windows.

use interprocess::local_socket::traits::StreamCommon;

/// The peer runs as another user, or could not be identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotMe {
    /// Another user: `who` is their uid (Unix) or SID (Windows), `me` ours.
    #[error("the peer runs as {who}, not as you ({me})")]
    Other { who: String, me: String },
    /// The system would not say (fail closed).
    #[error("the peer's user cannot be read: {0}")]
    Unknown(String),
}

/// Checks that the process on the other end of `stream` runs as our user;
/// its process id, when the system says.
pub fn check(stream: &impl StreamCommon) -> Result<Option<u32>, NotMe> {
    let creds = stream
        .peer_creds()
        .map_err(|e| NotMe::Unknown(e.to_string()))?;
    #[cfg(unix)]
    {
        let me = rustix::process::geteuid().as_raw();
        match creds.euid() {
            Some(uid) if uid == me => Ok(creds.pid().and_then(|pid| u32::try_from(pid).ok())),
            Some(uid) => Err(NotMe::Other {
                who: format!("uid {uid}"),
                me: format!("uid {me}"),
            }),
            None => Err(NotMe::Unknown("no uid".into())),
        }
    }
    #[cfg(windows)]
    {
        let pid = creds
            .pid()
            .ok_or_else(|| NotMe::Unknown("no process id".into()))?;
        let unknown = |e: std::io::Error| NotMe::Unknown(e.to_string());
        let me = windows::current_user().map_err(unknown)?;
        let them = windows::process_user(pid).map_err(unknown)?;
        if me == them {
            Ok(Some(pid))
        } else {
            Err(NotMe::Other {
                who: windows::sid_string(&them),
                me: windows::sid_string(&me),
            })
        }
    }
}

/// Checks that the client of a loopback TCP connection (its end at
/// `peer`, ours at `local`) runs as our user: the TCP table names the
/// process that owns the client's socket, and that process's token user
/// is compared with ours.
#[cfg(windows)]
pub fn check_tcp(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Result<u32, NotMe> {
    let unknown = |e: std::io::Error| NotMe::Unknown(e.to_string());
    // The client's row: its local end is our peer, its remote end us.
    let pid = windows::tcp_owner(peer, local)
        .map_err(unknown)?
        .ok_or_else(|| NotMe::Unknown("the connection is not in the TCP table".into()))?;
    let me = windows::current_user().map_err(unknown)?;
    let them = windows::process_user(pid).map_err(unknown)?;
    if me == them {
        Ok(pid)
    } else {
        Err(NotMe::Other {
            who: windows::sid_string(&them),
            me: windows::sid_string(&me),
        })
    }
}

/// The SDDL of a pipe only this process's user may open: a protected DACL
/// (nothing inherited) that grants the user all access and nobody else
/// anything (the default DACL lets Everyone and Anonymous read).
#[cfg(windows)]
pub fn private_pipe_sddl() -> std::io::Result<String> {
    Ok(pipe_sddl(&windows::sid_string(&windows::current_user()?)))
}

/// The SDDL for `sid` alone (pure, so it is tested on every platform).
pub fn pipe_sddl(sid: &str) -> String {
    format!("D:P(A;;GA;;;{sid})")
}

/// The SDDL of a private file or directory: a protected DACL granting only
/// `sid`, inherited by what is created inside (`OICI`).
pub fn private_file_sddl(sid: &str) -> String {
    format!("D:P(A;OICI;FA;;;{sid})")
}

/// Windows' `chmod 700`: replaces the access list of `path` with one that
/// grants only this process's user (the inherited one of `%LOCALAPPDATA%`
/// also admits SYSTEM and Administrators).
#[cfg(windows)]
pub fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    let sddl = private_file_sddl(&windows::sid_string(&windows::current_user()?));
    windows::set_file_dacl(path, &sddl)
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod windows {
    //! The only unsafe code of the client side: reading a process's token
    //! user with the Win32 API.

    use std::io;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, GetLengthSid, GetTokenInformation,
        PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SetFileSecurityW, TOKEN_QUERY,
        TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    /// A SID's bytes: equal SIDs have equal bytes.
    pub type Sid = Vec<u8>;

    /// Closes a handle when dropped.
    struct Handle(HANDLE);

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: the handle was opened by us and is closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    pub fn current_user() -> io::Result<Sid> {
        // SAFETY: the pseudo-handle of the current process needs no closing.
        token_user(unsafe { GetCurrentProcess() })
    }

    pub fn process_user(pid: u32) -> io::Result<Sid> {
        // SAFETY: plain call; a null handle is checked below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return Err(io::Error::last_os_error());
        }
        let process = Handle(process);
        token_user(process.0)
    }

    fn token_user(process: HANDLE) -> io::Result<Sid> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `token` is a valid out pointer; failure is checked.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = Handle(token);
        let mut len = 0u32;
        // SAFETY: asks for the size only (null buffer, length 0).
        unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut len) };
        if len == 0 {
            return Err(io::Error::last_os_error());
        }
        // u64s: TOKEN_USER holds a pointer and must be aligned for it.
        let mut buffer = vec![0u64; (len as usize).div_ceil(8)];
        // SAFETY: the buffer holds `len` bytes, aligned for TOKEN_USER.
        let ok = unsafe {
            GetTokenInformation(
                token.0,
                TokenUser,
                buffer.as_mut_ptr().cast(),
                len,
                &mut len,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success the buffer starts with a TOKEN_USER whose SID
        // points into the same buffer, `GetLengthSid` bytes long.
        unsafe {
            let user = &*buffer.as_ptr().cast::<TOKEN_USER>();
            let sid = user.User.Sid;
            let sid_len = GetLengthSid(sid) as usize;
            Ok(std::slice::from_raw_parts(sid.cast::<u8>(), sid_len).to_vec())
        }
    }

    fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
        use std::os::windows::ffi::OsStrExt;
        s.encode_wide().chain(Some(0)).collect()
    }

    /// Sets the DACL of `path` from `sddl` (`D:P(...)`), protected from
    /// inheritance.
    pub fn set_file_dacl(path: &std::path::Path, sddl: &str) -> io::Result<()> {
        let sddl = wide(std::ffi::OsStr::new(sddl));
        let path = wide(path.as_os_str());
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and an out pointer; `sd` is
        // freed below.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a NUL-terminated path and the descriptor made above.
        let ok = unsafe {
            SetFileSecurityW(
                path.as_ptr(),
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                sd,
            )
        };
        let result = if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        // SAFETY: allocated by the conversion above, freed once.
        unsafe { LocalFree(sd) };
        result
    }

    /// The process owning the TCP connection whose local end is `from`
    /// and remote end `to` (`GetExtendedTcpTable`).
    pub fn tcp_owner(
        from: std::net::SocketAddr,
        to: std::net::SocketAddr,
    ) -> io::Result<Option<u32>> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
        use windows_sys::Win32::NetworkManagement::IpHelper::{
            GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID,
            MIB_TCPROW_OWNER_PID, MIB_TCPTABLE_OWNER_PID, TCP_TABLE_OWNER_PID_CONNECTIONS,
        };
        use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
        let v4 = from.is_ipv4();
        let family = u32::from(if v4 { AF_INET } else { AF_INET6 });
        let port = |p: u32| u16::from_be(p as u16);
        let mut size = 0u32;
        for _ in 0..8 {
            // u64s: the table is aligned for its rows.
            let mut buffer = vec![0u64; (size as usize).div_ceil(8).max(1)];
            // SAFETY: the buffer holds `size` bytes; the call says when it
            // needs more (and how much) without writing past it.
            let rc = unsafe {
                GetExtendedTcpTable(
                    buffer.as_mut_ptr().cast(),
                    &mut size,
                    0,
                    family,
                    TCP_TABLE_OWNER_PID_CONNECTIONS,
                    0,
                )
            };
            if rc == ERROR_INSUFFICIENT_BUFFER {
                continue;
            }
            if rc != NO_ERROR {
                return Err(io::Error::from_raw_os_error(rc as i32));
            }
            let bytes = (size as usize).min(buffer.len() * 8);
            let base = buffer.as_ptr().cast::<u8>();
            let found = if v4 {
                // SAFETY: on success the buffer starts with the table; the
                // rows read are checked to lie within the bytes written.
                let rows = unsafe {
                    table_rows::<MIB_TCPROW_OWNER_PID>(
                        base,
                        bytes,
                        std::mem::offset_of!(MIB_TCPTABLE_OWNER_PID, table),
                    )
                };
                rows.iter().find_map(|r| {
                    let local = SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::from(r.dwLocalAddr.to_ne_bytes())),
                        port(r.dwLocalPort),
                    );
                    let remote = SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::from(r.dwRemoteAddr.to_ne_bytes())),
                        port(r.dwRemotePort),
                    );
                    (local == from && remote == to).then_some(r.dwOwningPid)
                })
            } else {
                // SAFETY: as above, for the IPv6 table.
                let rows = unsafe {
                    table_rows::<MIB_TCP6ROW_OWNER_PID>(
                        base,
                        bytes,
                        std::mem::offset_of!(MIB_TCP6TABLE_OWNER_PID, table),
                    )
                };
                rows.iter().find_map(|r| {
                    let local = SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::from(r.ucLocalAddr)),
                        port(r.dwLocalPort),
                    );
                    let remote = SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::from(r.ucRemoteAddr)),
                        port(r.dwRemotePort),
                    );
                    (local == from && remote == to).then_some(r.dwOwningPid)
                })
            };
            return Ok(found);
        }
        Err(io::Error::other("the TCP table kept growing"))
    }

    /// The rows of a `MIB_TCP*TABLE_OWNER_PID` at `base` (`bytes` long,
    /// rows from byte `offset`): its `dwNumEntries`, capped to the rows
    /// that fit in the bytes.
    ///
    /// # Safety
    /// `base` points to `bytes` readable bytes, aligned for `Row`, that
    /// start with the table's `u32` count.
    unsafe fn table_rows<'a, Row>(base: *const u8, bytes: usize, offset: usize) -> &'a [Row] {
        if bytes < offset {
            return &[];
        }
        // SAFETY: the count is the table's first field, within `bytes`.
        let count = unsafe { base.cast::<u32>().read() } as usize;
        let fit = (bytes - offset) / std::mem::size_of::<Row>();
        // SAFETY: `count.min(fit)` rows from `offset` lie within `bytes`.
        unsafe { std::slice::from_raw_parts(base.add(offset).cast::<Row>(), count.min(fit)) }
    }

    /// `S-1-5-21-…`, for SDDL and messages.
    pub fn sid_string(sid: &Sid) -> String {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: `sid` holds a whole SID; the string is freed below.
        if unsafe { ConvertSidToStringSidW(sid.as_ptr().cast_mut().cast(), &mut text) } == 0 {
            return "an unknown user".into();
        }
        // SAFETY: a NUL-terminated UTF-16 string from the call above.
        let string = unsafe {
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            String::from_utf16_lossy(std::slice::from_raw_parts(text, len))
        };
        // SAFETY: allocated by ConvertSidToStringSidW, freed once.
        unsafe { LocalFree(text.cast()) };
        string
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipe_dacl_grants_only_the_user() {
        assert_eq!(
            pipe_sddl("S-1-5-21-1-2-3-1001"),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1001)"
        );
    }

    /// Protected (nothing inherited from `%LOCALAPPDATA%`, which admits
    /// SYSTEM and Administrators), full access for the user alone, passed
    /// on to the files created inside.
    #[test]
    fn a_private_file_dacl_grants_only_the_user_and_is_inherited_inside() {
        assert_eq!(
            private_file_sddl("S-1-5-21-1-2-3-1001"),
            "D:P(A;OICI;FA;;;S-1-5-21-1-2-3-1001)"
        );
    }
}
