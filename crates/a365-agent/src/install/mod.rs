//! `--install-service` / `--uninstall-service`: the systemd user units
//! (Linux), the LaunchAgent (macOS) or the `Run` key value (Windows) for
//! the current user, with the real path of this binary filled in.
//!
//! The files in `systemd/` and `launchd/` are compiled in, so what is
//! installed is exactly what the repository ships and tests check.

use std::path::{Path, PathBuf};

pub mod windows;

/// The user service; its `ExecStart=` line is replaced on install.
pub const SYSTEMD_SERVICE: &str = include_str!("../../../../systemd/a365-agent.service");
/// The socket unit, installed as is.
pub const SYSTEMD_SOCKET: &str = include_str!("../../../../systemd/a365-agent.socket");
pub const SYSTEMD_SERVICE_NAME: &str = "a365-agent.service";
pub const SYSTEMD_SOCKET_NAME: &str = "a365-agent.socket";
/// Where the socket unit listens, relative to `$XDG_RUNTIME_DIR` (`%t`):
/// the same place [`a365_proto::path::default_socket_path`] looks.
pub const SYSTEMD_LISTEN: &str = "%t/a365/agent.sock";

/// The LaunchAgent, with `@A365_AGENT@`, `@SOCKET@` and `@LOG@` to fill in.
pub const LAUNCHD_PLIST: &str = include_str!("../../../../launchd/com.a365.agent.plist");
pub const LAUNCHD_LABEL: &str = "com.a365.agent";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot find your home directory")]
    NoHome,
    #[error(transparent)]
    NoSocketPath(#[from] a365_proto::path::NoSocketPath),
    #[error("cannot find this program's path: {0}")]
    NoExe(std::io::Error),
    #[error("{0} cannot be written into a service file (not UTF-8, or a newline)")]
    BadPath(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was done, for the user to read.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub changed: Vec<PathBuf>,
    /// The command(s) to run next.
    pub next: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for path in &self.changed {
            writeln!(f, "  {}", path.display())?;
        }
        write!(f, "{}", self.next)
    }
}

/// The service unit with `ExecStart=` pointing at `bin`.
pub fn systemd_service(bin: &Path) -> Result<String, InstallError> {
    let exec = systemd_quote(bin)?;
    Ok(SYSTEMD_SERVICE
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={exec}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect())
}

/// A path as one word of a systemd command line: `%` doubled, quoted when
/// it holds spaces or quotes.
fn systemd_quote(path: &Path) -> Result<String, InstallError> {
    let text = plain_text(path)?.replace('%', "%%");
    if text.contains([' ', '\t', '"', '\'', '\\']) {
        Ok(format!(
            "\"{}\"",
            text.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    } else {
        Ok(text)
    }
}

fn plain_text(path: &Path) -> Result<&str, InstallError> {
    path.to_str()
        .filter(|t| !t.contains(['\n', '\r']))
        .ok_or_else(|| InstallError::BadPath(path.to_owned()))
}

/// The LaunchAgent for `bin`, listening at `socket`, logging to `log`.
pub fn launchd_plist(bin: &Path, socket: &Path, log: &Path) -> Result<String, InstallError> {
    let xml = |p: &Path| -> Result<String, InstallError> {
        Ok(plain_text(p)?
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"))
    };
    Ok(LAUNCHD_PLIST
        .replace("@A365_AGENT@", &xml(bin)?)
        .replace("@SOCKET@", &xml(socket)?)
        .replace("@LOG@", &xml(log)?))
}

/// Writes the units to `unit_dir` (`~/.config/systemd/user`); what to
/// run next depends on whether a user manager runs (`manager`).
pub fn install_systemd(unit_dir: &Path, bin: &Path, manager: bool) -> Result<Report, InstallError> {
    let service = systemd_service(bin)?;
    let changed = vec![
        write(&unit_dir.join(SYSTEMD_SERVICE_NAME), &service)?,
        write(&unit_dir.join(SYSTEMD_SOCKET_NAME), SYSTEMD_SOCKET)?,
    ];
    let next = match manager {
        true => format!(
            "Start it now and at every login with:\n  systemctl --user daemon-reload\n  \
             systemctl --user enable --now {SYSTEMD_SOCKET_NAME}\n"
        ),
        false => NO_USER_MANAGER.to_owned(),
    };
    Ok(Report { changed, next })
}

/// What to do where no systemd user manager runs.
pub const NO_USER_MANAGER: &str = "No systemd user manager runs in this session (WSL without \
systemd, a container, a server login without one): `systemctl --user` would fail with \
\"Failed to connect to bus\", and the units above wait for a session that has one. Here, \
nothing needs enabling: the first a365 command starts the agent. To start it with every \
shell instead, add this line to ~/.profile (or ~/.bashrc, ~/.zshrc):\n  \
eval \"$(a365-agent --daemon)\"\n";

/// Whether a systemd user manager runs for this session: its private
/// socket, which `systemctl --user` connects to, is in
/// `$XDG_RUNTIME_DIR/systemd/`.
pub fn user_manager_runs() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|dir| Path::new(&dir).join("systemd/private"))
            .and_then(|socket| std::fs::metadata(socket).ok())
            .is_some_and(|meta| meta.file_type().is_socket())
    }
    #[cfg(not(unix))]
    false
}

/// Removes the units and the links `systemctl enable` made to them.
pub fn uninstall_systemd(unit_dir: &Path) -> Result<Report, InstallError> {
    let candidates = [
        unit_dir.join(SYSTEMD_SERVICE_NAME),
        unit_dir.join(SYSTEMD_SOCKET_NAME),
        unit_dir
            .join("sockets.target.wants")
            .join(SYSTEMD_SOCKET_NAME),
        unit_dir
            .join("default.target.wants")
            .join(SYSTEMD_SERVICE_NAME),
    ];
    let changed = remove_all(&candidates)?;
    Ok(Report {
        changed,
        next: format!(
            "A running agent keeps running until you stop it:\n  \
             systemctl --user stop {SYSTEMD_SOCKET_NAME} {SYSTEMD_SERVICE_NAME}\n  \
             systemctl --user daemon-reload\n"
        ),
    })
}

/// Writes the LaunchAgent to `agents_dir` (`~/Library/LaunchAgents`).
pub fn install_launchd(
    agents_dir: &Path,
    bin: &Path,
    socket: &Path,
    log: &Path,
) -> Result<Report, InstallError> {
    let plist = launchd_plist(bin, socket, log)?;
    // launchd creates the socket but not its directory: ours, private.
    #[cfg(unix)]
    if let Some(dir) = socket.parent() {
        a365_proto::path::private_dir(dir).map_err(|e| InstallError::Write {
            path: dir.to_owned(),
            source: std::io::Error::other(e),
        })?;
    }
    if let Some(dir) = log.parent() {
        create_dir(dir)?;
    }
    let path = write(&agents_dir.join(format!("{LAUNCHD_LABEL}.plist")), &plist)?;
    let next = format!(
        "Start it now (it starts at every login from now on) with:\n  \
         launchctl bootstrap gui/$(id -u) '{}'\n",
        path.display()
    );
    Ok(Report {
        changed: vec![path],
        next,
    })
}

/// Removes the LaunchAgent.
pub fn uninstall_launchd(agents_dir: &Path) -> Result<Report, InstallError> {
    let changed = remove_all(&[agents_dir.join(format!("{LAUNCHD_LABEL}.plist"))])?;
    Ok(Report {
        changed,
        next: format!(
            "A running agent keeps running until you stop it:\n  \
             launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}\n"
        ),
    })
}

/// Installs for this platform and this user.
pub fn install() -> Result<Report, InstallError> {
    let exe = std::env::current_exe().map_err(InstallError::NoExe)?;
    if cfg!(windows) {
        // Already absolute; canonical would be a `\\?\` path.
        return windows::install(&exe);
    }
    let bin = exe.canonicalize().map_err(InstallError::NoExe)?;
    let dirs = directories::BaseDirs::new().ok_or(InstallError::NoHome)?;
    if cfg!(target_os = "macos") {
        let home = dirs.home_dir();
        install_launchd(
            &home.join("Library/LaunchAgents"),
            &bin,
            &a365_proto::path::socket_path()?,
            &home.join("Library/Logs/a365-agent.log"),
        )
    } else {
        install_systemd(
            &dirs.config_dir().join("systemd/user"),
            &bin,
            user_manager_runs(),
        )
    }
}

/// Undoes [`install`].
pub fn uninstall() -> Result<Report, InstallError> {
    if cfg!(windows) {
        return windows::uninstall();
    }
    let dirs = directories::BaseDirs::new().ok_or(InstallError::NoHome)?;
    if cfg!(target_os = "macos") {
        uninstall_launchd(&dirs.home_dir().join("Library/LaunchAgents"))
    } else {
        uninstall_systemd(&dirs.config_dir().join("systemd/user"))
    }
}

fn create_dir(dir: &Path) -> Result<(), InstallError> {
    std::fs::create_dir_all(dir).map_err(|source| InstallError::Write {
        path: dir.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<PathBuf, InstallError> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    std::fs::write(path, text).map_err(|source| InstallError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(path.to_owned())
}

/// Removes those of `paths` that exist (files or links).
fn remove_all(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InstallError> {
    let mut removed = Vec::new();
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Remove {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_gets_the_binary() {
        let unit = systemd_service(Path::new("/opt/a365/bin/a365-agent")).unwrap();
        let exec: Vec<_> = unit
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(exec, ["ExecStart=/opt/a365/bin/a365-agent"]);
        assert!(unit.contains("Type=notify"));
    }

    #[test]
    fn odd_paths_are_quoted_for_systemd() {
        assert_eq!(
            systemd_quote(Path::new("/home/a b/100%/a365-agent")).unwrap(),
            "\"/home/a b/100%%/a365-agent\""
        );
        assert!(systemd_quote(Path::new("/x\n/a365-agent")).is_err());
    }

    #[test]
    fn the_socket_unit_listens_where_clients_look() {
        let listen: Vec<_> = SYSTEMD_SOCKET
            .lines()
            .filter_map(|l| l.strip_prefix("ListenStream="))
            .collect();
        assert_eq!(listen, [SYSTEMD_LISTEN]);
        // %t is $XDG_RUNTIME_DIR: the client's default resolves the same way.
        let runtime = Path::new("/run/user/1000");
        let resolved = SYSTEMD_LISTEN.replace("%t", &runtime.display().to_string());
        assert!(Path::new(&resolved).ends_with("a365/agent.sock"));
        for line in ["SocketMode=0600", "DirectoryMode=0700"] {
            assert!(SYSTEMD_SOCKET.lines().any(|l| l == line), "{line}");
        }
    }

    #[test]
    fn plist_placeholders_are_filled_and_escaped() {
        let plist = launchd_plist(
            Path::new("/Users/a&b/.cargo/bin/a365-agent"),
            Path::new("/tmp/a365-501/agent.sock"),
            Path::new("/Users/a&b/Library/Logs/a365-agent.log"),
        )
        .unwrap();
        assert!(!plist.contains('@'), "{plist}");
        assert!(plist.contains("/Users/a&amp;b/.cargo/bin/a365-agent"));
    }
}
