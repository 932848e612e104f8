//! What the browser is given for a login: not the agent's one-time
//! launcher URL, which every local user could read on the browser's
//! command line (`/proc/PID/cmdline`) and fetch first, logging the
//! profile into their own account, but a page only this user can read
//! (mode 0600, in the socket's private directory) that forwards the
//! browser to the launcher.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The launcher page, removed when dropped.
#[derive(Debug)]
pub struct LaunchPage {
    path: PathBuf,
}

impl LaunchPage {
    /// Writes a page forwarding to `launcher` next to the agent's
    /// socket (Windows: in `%LOCALAPPDATA%\a365`).
    pub fn write(socket: &Path, launcher: &str) -> std::io::Result<LaunchPage> {
        let dir = private_dir(socket)?;
        let path = dir.join(format!("login-{}.html", std::process::id()));
        // A page left by a crashed login of a process with our pid.
        let _ = std::fs::remove_file(&path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        let page = LaunchPage { path };
        #[cfg(windows)]
        a365_proto::peer::make_private(&page.path)?;
        file.write_all(page_text(launcher).as_bytes())?;
        Ok(page)
    }

    /// The `file:` URL of the page, for the browser.
    pub fn url(&self) -> String {
        file_url(&self.path)
    }
}

impl Drop for LaunchPage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The socket's directory, which the agent made private (checked again
/// here: a page in a directory others can write could be swapped).
#[cfg(unix)]
fn private_dir(socket: &Path) -> std::io::Result<PathBuf> {
    let dir = socket
        .parent()
        .ok_or_else(|| std::io::Error::other("the socket path has no directory"))?;
    a365_proto::path::check_dir(dir).map_err(std::io::Error::other)?;
    Ok(dir.to_owned())
}

#[cfg(windows)]
fn private_dir(_socket: &Path) -> std::io::Result<PathBuf> {
    let base =
        directories::BaseDirs::new().ok_or_else(|| std::io::Error::other("no %LOCALAPPDATA%"))?;
    let dir = base.data_local_dir().join("a365");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A page that sends the browser on at once, with a link for a browser
/// that does not follow a refresh; no referrer goes to the launcher.
fn page_text(launcher: &str) -> String {
    let url = html_escape(launcher);
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"0; url={url}\">\
         <title>a365 login</title></head>\
         <body><p>a365: opening the login&hellip; <a href=\"{url}\">continue</a></p></body></html>\n"
    )
}

fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// `file:///…` for an absolute path, with the few characters a path may
/// hold that a URL may not escaped.
fn file_url(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    let mut out = String::from("file://");
    if !text.starts_with('/') {
        out.push('/');
    }
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_forwards_to_the_launcher_and_only_its_user_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let socket = dir.path().join("agent.sock");
        let launcher = "http://127.0.0.1:3000/start/abc&\"<x>";
        let page = LaunchPage::write(&socket, launcher).unwrap();
        let url = page.url();
        assert!(url.starts_with("file:///"), "{url}");
        assert!(!url.contains("start/abc"));
        let text = std::fs::read_to_string(&page.path).unwrap();
        assert!(text.contains("url=http://127.0.0.1:3000/start/abc&amp;&quot;&lt;x&gt;"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&page.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let path = page.path.clone();
        drop(page);
        assert!(!path.exists(), "removed when the login ends");
        assert_eq!(file_url(Path::new("/run/a b#")), "file:///run/a%20b%23");
        assert_eq!(file_url(Path::new(r"C:\Users\me")), "file:///C:/Users/me");
    }
}
