//! Where the agent listens: the one definition both sides use.

use std::path::PathBuf;

/// Overrides the socket path, like `SSH_AUTH_SOCK`.
pub const SOCKET_ENV: &str = "A365_AGENT_SOCK";

/// The socket path: `$A365_AGENT_SOCK` if set and non-empty, else
/// [`default_socket_path`].
pub fn socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_socket_path(),
    }
}

/// `$XDG_RUNTIME_DIR/a365/agent.sock`; where there is no runtime directory
/// (macOS, minimal Linux sessions) `$TMPDIR/a365-{uid}/agent.sock`, a
/// directory of our own that the agent creates 0700.
#[cfg(unix)]
pub fn default_socket_path() -> PathBuf {
    let dir = directories::BaseDirs::new()
        .and_then(|b| b.runtime_dir().map(|d| d.join("a365")))
        .unwrap_or_else(|| {
            let uid = rustix::process::getuid().as_raw();
            std::env::temp_dir().join(format!("a365-{uid}"))
        });
    dir.join("agent.sock")
}

/// `\\.\pipe\a365-agent-{user}`.
#[cfg(windows)]
pub fn default_socket_path() -> PathBuf {
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "default".into());
    PathBuf::from(format!(r"\\.\pipe\a365-agent-{user}"))
}

/// The interprocess name for `path`. On Unix a file path (never the Linux
/// abstract namespace, which has no permissions).
pub fn socket_name(
    path: &std::path::Path,
) -> std::io::Result<interprocess::local_socket::Name<'_>> {
    use interprocess::local_socket::{GenericFilePath, ToFsName};
    path.to_fs_name::<GenericFilePath>()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn default_ends_in_agent_sock_under_a365() {
        let p = default_socket_path();
        assert!(p.ends_with("agent.sock"));
        let parent = p
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(parent == "a365" || parent.starts_with("a365-"), "{parent}");
    }
}
