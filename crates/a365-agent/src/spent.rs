//! The refresh tokens this agent has seen replaced by a rotation, kept as
//! SHA-256 digests (never the tokens): pasting one into `a365 add` again
//! is refused before it is sent, because the server would refuse it, and
//! a server with reuse detection would revoke the grant it came from.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

/// The file grows by one line (about 90 bytes) per rotation; past this
/// size its older half is dropped.
const MAX_BYTES: u64 = 1 << 20;

/// Where the digests are kept: `$XDG_STATE_HOME/a365/spent-refresh-tokens`.
#[derive(Debug, Clone)]
pub struct Spent {
    file: Option<PathBuf>,
}

/// A spent refresh token as recorded: which profile sent it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub profile: String,
    pub at_secs: i64,
}

impl Spent {
    /// Kept in `state_dir`; `None` keeps nothing (tests of the engine).
    pub fn new(state_dir: Option<PathBuf>) -> Spent {
        Spent {
            file: state_dir.map(|dir| dir.join("spent-refresh-tokens")),
        }
    }

    /// Records that `profile` sent `token` and got another in its place.
    /// Best effort, off the runtime's thread: a failure is logged only.
    pub fn record(&self, token: &SecretString, profile: &str, at_secs: i64) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let line = format!("{} {at_secs} {profile}\n", digest(token.expose_secret()));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = append(&file, &line) {
                tracing::warn!(file = %file.display(), "could not record a spent refresh token: {e}");
            }
        });
    }

    /// Whether `token` is one this agent saw replaced.
    pub fn seen(&self, token: &str) -> Option<Seen> {
        let file = std::fs::File::open(self.file.as_ref()?).ok()?;
        let wanted = digest(token);
        let mut found = None;
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            let mut fields = line.splitn(3, ' ');
            if fields.next() == Some(wanted.as_str()) {
                found = Some(Seen {
                    at_secs: fields.next().and_then(|s| s.parse().ok()).unwrap_or(0),
                    profile: fields.next().unwrap_or("?").to_owned(),
                });
            }
        }
        found
    }
}

/// The token's digest, in hex; a domain tag keeps it from matching any
/// other use of SHA-256 over the same bytes.
fn digest(token: &str) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(b"a365 spent refresh token\0");
    hash.update(token.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One append (and trim) at a time: records arrive from every profile.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Appends `line` (mode 600), first keeping only the newer half of a
/// file grown past [`MAX_BYTES`].
fn append(file: &std::path::Path, line: &str) -> std::io::Result<()> {
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if std::fs::metadata(file).is_ok_and(|m| m.len() > MAX_BYTES) {
        let text = std::fs::read(file)?;
        let keep = text.len() / 2;
        let start = text[keep..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| keep + i + 1);
        let tmp = file.with_extension("tmp");
        let mut out = options.clone().truncate(false).open(&tmp)?;
        out.set_len(0)?;
        out.write_all(&text[start..])?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)?;
    }
    let mut out = options.open(file)?;
    out.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_token_is_seen_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let spent = Spent::new(Some(dir.path().to_owned()));
        let rt = SecretString::from("rt-1");
        assert_eq!(spent.seen("rt-1"), None);
        spent.record(&rt, "work", 1_700_000_000);
        for _ in 0..100 {
            if spent.seen("rt-1").is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let seen = spent.seen("rt-1").unwrap();
        assert_eq!(seen.profile, "work");
        assert_eq!(seen.at_secs, 1_700_000_000);
        assert_eq!(spent.seen("rt-2"), None);
        let text = std::fs::read_to_string(dir.path().join("spent-refresh-tokens")).unwrap();
        assert!(!text.contains("rt-1"), "{text}");
    }

    #[test]
    fn the_file_keeps_its_newer_half() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spent");
        let line = format!("{} 1 p\n", "a".repeat(64));
        let text = line.repeat((MAX_BYTES as usize / line.len()) + 2);
        std::fs::write(&file, &text).unwrap();
        append(&file, "new 2 q\n").unwrap();
        let after = std::fs::read_to_string(&file).unwrap();
        assert!(
            after.len() < text.len() / 2 + line.len() * 2,
            "{}",
            after.len()
        );
        assert!(after.ends_with("new 2 q\n"));
        assert!(
            after
                .lines()
                .all(|l| l.len() == line.len() - 1 || l == "new 2 q")
        );
    }
}
