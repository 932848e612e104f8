//! The fleet key: seals each shared credential (client secret, refresh
//! token) before it is written to etcd, so that etcd, its backups and its
//! consumers never hold a long-lived secret in the clear. Only refreshers
//! have the key; it is never written to etcd.
//!
//! ChaCha20-Poly1305 from aws-lc-rs (already linked for TLS), a random
//! nonce per record, and the profile's name and the record's generation
//! as associated data, so that a record copied under another profile's key,
//! or given another generation, does not open.
//!
//! The same key also signs the public records ([`FleetKey::sign`]): an
//! Ed25519 key derived from it, whose public half consumers are given, so
//! that a consumer, which must not hold the fleet key, can still tell a
//! record a refresher wrote from one whoever can write to etcd wrote.

use std::path::Path;

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest;
use zeroize::Zeroizing;

/// A fleet key, read from its file.
pub struct FleetKey {
    key: LessSafeKey,
    /// Signs public records; derived from the key, never stored.
    signer: Ed25519KeyPair,
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
    #[error("{0}")]
    PublicKey(String),
}

impl FleetKey {
    /// Reads a key file: exactly 32 bytes (`head -c 32 /dev/urandom`),
    /// readable by its owner only.
    pub fn read(path: &Path) -> Result<FleetKey, SealError> {
        let shown = path.display();
        let bytes = super::config::read_private("fleet key_file", path).map_err(SealError::Key)?;
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
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(
            &sha2::Sha256::new()
                .chain_update(b"a365 fleet signing key v1\0")
                .chain_update(bytes)
                .finalize(),
        );
        let signer = Ed25519KeyPair::from_seed_unchecked(&seed[..]).ok()?;
        Some(FleetKey {
            key: LessSafeKey::new(key),
            signer,
            id,
        })
    }

    /// The public half of the signing key, base64: what a consumer is
    /// configured with (`public_key`).
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.signer.public_key().as_ref())
    }

    /// The key that checks this key's signatures.
    pub fn verifier(&self) -> Verifier {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.signer.public_key().as_ref());
        Verifier { key }
    }

    /// The signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.signer.sign(message).as_ref())
    }

    /// `plain` sealed for `profile` at `generation`: base64 of nonce,
    /// ciphertext and tag.
    pub fn seal(&self, profile: &str, generation: u64, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Key(format!("no randomness: {e}")))?;
        // Room for the tag up front: a growing Vec would leave a copy of
        // the plaintext behind.
        let mut body = Zeroizing::new(Vec::with_capacity(plain.len() + 16));
        body.extend_from_slice(plain);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(profile, generation)),
                &mut *body,
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(STANDARD.encode(&out))
    }

    /// Opens what [`FleetKey::seal`] made for `profile` at `generation`
    /// (0: a record of the first format, which had none).
    pub fn open(
        &self,
        profile: &str,
        generation: u64,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
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
                Aad::from(aad(profile, generation)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SealError::Corrupt)?
            .len();
        Ok(Zeroizing::new(
            bytes[NONCE_LEN..NONCE_LEN + plain_len].to_vec(),
        ))
    }
}

fn aad(profile: &str, generation: u64) -> Vec<u8> {
    match generation {
        0 => format!("a365 fleet credential v1\0{profile}").into_bytes(),
        g => format!("a365 fleet credential v2\0{profile}\0{g}").into_bytes(),
    }
}

/// The public half of a fleet signing key: checks public records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    key: [u8; 32],
}

impl Verifier {
    /// Reads `public_key` of `[fleet]` (base64 of 32 bytes).
    pub fn parse(text: &str) -> Result<Verifier, SealError> {
        let bad = || {
            SealError::PublicKey(
                "public_key is not a fleet public key (base64 of 32 bytes, as \
                 `a365-agent --fleet-public-key` prints it on a refresher)"
                    .into(),
            )
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| bad())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Verifier { key })
    }

    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = STANDARD.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(message, &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_the_same_profile_only() {
        let key = FleetKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("work", 5, b"refresh-token-value").unwrap();
        assert!(!sealed.contains("refresh"));
        assert_eq!(
            &*key.open("work", 5, &sealed).unwrap(),
            b"refresh-token-value"
        );
        assert_eq!(key.open("other", 5, &sealed), Err(SealError::Corrupt));
        // Another generation (a rolled-back record relabelled) does not open.
        assert_eq!(key.open("work", 4, &sealed), Err(SealError::Corrupt));
        assert_eq!(key.open("work", 0, &sealed), Err(SealError::Corrupt));
        let old = key.seal("work", 0, b"v1").unwrap();
        assert_eq!(&*key.open("work", 0, &old).unwrap(), b"v1");
        let other = FleetKey::from_bytes(&[8u8; 32]).unwrap();
        assert_ne!(key.id, other.id);
        assert_eq!(other.open("work", 5, &sealed), Err(SealError::Corrupt));
        // Two seals of the same secret differ (random nonce).
        assert_ne!(sealed, key.seal("work", 5, b"refresh-token-value").unwrap());
        assert!(FleetKey::from_bytes(&[1u8; 16]).is_none());
        assert!(format!("{key:?}").contains(&key.id));
    }

    #[test]
    fn signatures_verify_with_the_public_key_only() {
        let key = FleetKey::from_bytes(&[7u8; 32]).unwrap();
        let verifier = Verifier::parse(&key.public_key()).unwrap();
        assert_eq!(verifier, key.verifier());
        let sig = key.sign(b"record");
        assert!(verifier.verify(b"record", &sig));
        assert!(!verifier.verify(b"recorD", &sig));
        assert!(!verifier.verify(b"record", "not base64!"));
        let other = FleetKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!other.verifier().verify(b"record", &sig));
        assert_ne!(key.public_key(), other.public_key());
        // The public key reveals nothing of the sealing key's id.
        assert!(!key.public_key().contains(&key.id));
        assert!(Verifier::parse("AAAA").is_err());
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
