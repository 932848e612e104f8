//! A route's secret: what a client sends in `x-a365-route-secret` where
//! the owner of its connection cannot be told. Made once per route name,
//! kept in a 0600 file under the state directory, so that it survives a
//! restart and a tool configured with it keeps working.

use std::path::{Path, PathBuf};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// `$XDG_STATE_HOME/a365/proxy/NAME.secret`.
pub(crate) fn path(state_dir: &Path, route: &str) -> PathBuf {
    state_dir.join("proxy").join(format!("{route}.secret"))
}

/// The secret of `route`, made now when there is none.
pub(crate) fn load_or_make(state_dir: &Path, route: &str) -> Result<SecretString, String> {
    let path = path(state_dir, route);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => return Ok(SecretString::from(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut bytes[..]).map_err(|e| format!("no randomness: {e}"))?;
    let secret =
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]));
    let dir = path.parent().unwrap_or(state_dir);
    a365_store::create_private_dir(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
    a365_store::write_atomic(&path, secret.expose_secret().as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(secret)
}

/// Forgets `route`'s secret (the route was removed).
pub(crate) fn remove(state_dir: &Path, route: &str) {
    let _ = std::fs::remove_file(path(state_dir, route));
}

/// Whether `given` is `secret`, in time that does not depend on where
/// they differ.
pub(crate) fn matches(secret: &SecretString, given: &[u8]) -> bool {
    let secret = secret.expose_secret().as_bytes();
    secret.len() == given.len()
        && secret
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_kept_private_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let one = load_or_make(dir.path(), "nexar").unwrap();
        let two = load_or_make(dir.path(), "nexar").unwrap();
        assert_eq!(one.expose_secret(), two.expose_secret());
        assert!(matches(&one, one.expose_secret().as_bytes()));
        assert!(!matches(&one, b"nope"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path(), "nexar"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        remove(dir.path(), "nexar");
        let three = load_or_make(dir.path(), "nexar").unwrap();
        assert_ne!(one.expose_secret(), three.expose_secret());
    }
}
