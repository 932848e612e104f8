//! The fleet key: seals each shared credential (client secret, refresh
//! token) before it is written to etcd, so that etcd, its backups and its
//! consumers never hold a long-lived secret in the clear. Only refreshers
//! have the key; it is never written to etcd.
//!
//! ChaCha20-Poly1305 from aws-lc-rs (already linked for TLS), a random
//! nonce per record, and the profile's name as associated data, so that a
//! record copied under another profile's key does not open.

use std::path::Path;

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest;
use zeroize::Zeroizing;

/// A fleet key, read from its file.
pub struct FleetKey {
    key: LessSafeKey,
    /// Names the key in records without revealing it: which key sealed a
    /// record tells a member that holds another one what is wrong.
    pub id: String,
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKey").field("id", &self.id).finish()
    }
}

/// Why a record could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{0}")]
    Key(String),
    #[error(
        "the shared credential was sealed with fleet key {sealed_with}, and this member holds {held}: \
         give it the fleet's current key_file"
    )]
    OtherKey { sealed_with: String, held: String },
    #[error("the shared credential does not open with the fleet key (altered or corrupt)")]
    Corrupt,
}

impl FleetKey {
    /// Reads a key file: exactly 32 bytes (`head -c 32 /dev/urandom`),
    /// readable by its owner only.
    pub fn read(path: &Path) -> Result<FleetKey, SealError> {
        let shown = path.display();
        let bytes = super::read_private("fleet key_file", path).map_err(SealError::Key)?;
        FleetKey::from_bytes(&bytes).ok_or_else(|| {
            SealError::Key(format!(
                "fleet key_file {shown} holds {} bytes; it must hold exactly 32 random bytes \
                 (head -c 32 /dev/urandom > {shown})",
                bytes.len()
            ))
        })
    }

    /// `None` unless `bytes` is 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<FleetKey> {
        if bytes.len() != 32 {
            return None;
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        let digest = sha2::Sha256::new()
            .chain_update(b"a365 fleet key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Some(FleetKey {
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// `plain` sealed for `profile`: base64 of nonce, ciphertext and tag.
    pub fn seal(&self, profile: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Key(format!("no randomness: {e}")))?;
        // Room for the tag up front: a growing Vec would leave a copy of
        // the plaintext behind.
        let mut body = Zeroizing::new(Vec::with_capacity(plain.len() + 16));
        body.extend_from_slice(plain);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(profile)),
                &mut *body,
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(STANDARD.encode(&out))
    }

    /// Opens what [`FleetKey::seal`] made for `profile`.
    pub fn open(&self, profile: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut bytes = Zeroizing::new(STANDARD.decode(sealed).map_err(|_| SealError::Corrupt)?);
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SealError::Corrupt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain_len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(profile)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SealError::Corrupt)?
            .len();
        Ok(Zeroizing::new(
            bytes[NONCE_LEN..NONCE_LEN + plain_len].to_vec(),
        ))
    }
}

fn aad(profile: &str) -> Vec<u8> {
    format!("a365 fleet credential v1\0{profile}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_the_same_profile_only() {
        let key = FleetKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("work", b"refresh-token-value").unwrap();
        assert!(!sealed.contains("refresh"));
        assert_eq!(&*key.open("work", &sealed).unwrap(), b"refresh-token-value");
        assert_eq!(key.open("other", &sealed), Err(SealError::Corrupt));
        let other = FleetKey::from_bytes(&[8u8; 32]).unwrap();
        assert_ne!(key.id, other.id);
        assert_eq!(other.open("work", &sealed), Err(SealError::Corrupt));
        // Two seals of the same secret differ (random nonce).
        assert_ne!(sealed, key.seal("work", b"refresh-token-value").unwrap());
        assert!(FleetKey::from_bytes(&[1u8; 16]).is_none());
        assert!(format!("{key:?}").contains(&key.id));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        std::fs::write(&path, [3u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FleetKey::read(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        FleetKey::read(&path).unwrap();
        std::fs::write(&path, [3u8; 31]).unwrap();
        let err = FleetKey::read(&path).unwrap_err().to_string();
        assert!(err.contains("exactly 32"), "{err}");
    }
}
