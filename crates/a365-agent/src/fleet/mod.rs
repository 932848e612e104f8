//! Fleet mode: agents on several machines share profiles through etcd, so
//! that one rotating refresh token serves them all and is spent by one of
//! them at a time.
//!
//! Per shared profile, three keys under the fleet's prefix:
//!
//! - `public/NAME`: the profile's settings and its current access token,
//!   who refreshed it, and whether the credential is dead, signed by a
//!   refresher ([`record`]). Consumers may read this prefix and nothing
//!   else (etcd RBAC), and serve only what verifies with the fleet's
//!   public key.
//! - `secret/NAME`: the credential and the settings it may be sent with,
//!   sealed with the fleet key ([`seal`]), and the marker of a refresh in
//!   flight. Refreshers only.
//! - `lock/NAME`: who is refreshing, bound to that member's lease.
//!
//! Every change of the credential is a transaction that compares
//! `secret/NAME`'s `mod_revision` ([`Fleet::commit`]): a member that
//! stalled past its lease can never overwrite a newer refresh token. The
//! refresh itself is [`crate::profile`]'s `fleet` loop.

mod budget;
mod config;
pub mod etcd;
mod lock;
mod record;
mod seal;
mod seen;

use a365_proto::ProfileSpec;
use a365_store::Credential;
use serde::Deserialize;

pub use config::FleetConfig;
pub use etcd::Watched;
use etcd::{Compare, Etcd, EtcdError, Op};
pub use lock::{CLOCK_SLACK_MS, Lock};
pub use record::{Backoff, Inflight, Public, Secret, next_generation};
use record::{Stored, decode, encode_secret};
pub use seal::{FleetKey, SealError, Verifier};
use seen::Seen;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the fleet key; refreshes shared profiles when they are due.
    #[default]
    Refresher,
    /// Serves the shared access tokens; never holds or sends a refresh token.
    Consumer,
}

/// Why the fleet cannot be used; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("[fleet]: {0}")]
    Config(String),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("shared record of '{0}' in etcd is not readable ({1})")]
    Record(String, String),
    #[error(
        "the public record of '{name}' in etcd does not carry a valid signature of a refresher \
         (it names fleet key {signer}; this member checks with {held}): someone who can write to \
         etcd but holds no fleet key wrote it, or the fleet key was rotated and this member \
         needs the current key_file (a consumer: the current public_key). It is not served"
    )]
    Forged {
        name: String,
        signer: String,
        held: String,
    },
    #[error(
        "the public record of '{0}' in etcd is unsigned (written by an a365 before 0.2, or by \
         someone without the fleet key); a consumer serves only signed records: a refresher \
         signs it at its next refresh"
    )]
    Unsigned(String),
    #[error(
        "the shared record of '{name}' in etcd is older (generation {got}) than one this member \
         has already seen ({seen}): someone put an old record back (a rollback or a restored \
         backup); it is refused so that no spent refresh token is sent again"
    )]
    Rollback { name: String, got: u64, seen: u64 },
    #[error(
        "the public record of '{0}' names settings ({1}) that differ from those sealed with its \
         credential: someone who can write to etcd changed them; the credential is sent nowhere \
         (to change a shared profile's settings, add it again with --shared --replace)"
    )]
    SpecMismatch(String, String),
}

/// This agent's link to its fleet.
#[derive(Debug)]
pub struct Fleet {
    etcd: Etcd,
    pub member: String,
    pub role: Role,
    key: Option<FleetKey>,
    previous_key: Option<FleetKey>,
    /// The public keys that public records are checked with.
    verifiers: Vec<Verifier>,
    /// The newest generation seen of each record.
    seen: Seen,
    pub lease_secs: u64,
    pub sync_secs: u64,
    prefix: String,
}

impl Fleet {
    fn public_key(&self, name: &str) -> String {
        format!("{}public/{name}", self.prefix)
    }

    fn secret_key(&self, name: &str) -> String {
        format!("{}secret/{name}", self.prefix)
    }

    pub(crate) fn lock_key(&self, name: &str) -> String {
        format!("{}lock/{name}", self.prefix)
    }

    /// The fleet's public key, printed for consumers; `None` on a consumer.
    pub fn signing_public_key(&self) -> Option<String> {
        self.key.as_ref().map(FleetKey::public_key)
    }

    /// Every shared profile, by name, with its record or why it cannot be
    /// trusted (a forged record does not take a profile away from the
    /// members that serve it: they go on with what they hold).
    pub async fn profiles(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(String, Result<Public, FleetError>)>, FleetError> {
        let prefix = format!("{}public/", self.prefix);
        let mut out = Vec::new();
        for kv in self.etcd.list(&prefix).await? {
            let name = kv.key[prefix.len()..].to_owned();
            if !a365_proto::is_valid_profile_name(&name) {
                tracing::warn!(key = %kv.key.escape_default(), "ignoring a fleet key that names no valid profile");
                continue;
            }
            let public = self.decode_public(&name, &kv.value, now_ms);
            out.push((name, public));
        }
        Ok(out)
    }

    /// Follows the fleet's public records (profiles added, changed and
    /// removed, and every commit); see [`Etcd::watch`].
    pub async fn watch_profiles(&self, seen: &(dyn Fn(Watched) + Sync)) -> Result<(), FleetError> {
        let prefix = format!("{}public/", self.prefix);
        Ok(self.etcd.watch(&prefix, seen).await?)
    }

    pub async fn read_public(&self, name: &str, now_ms: i64) -> Result<Option<Public>, FleetError> {
        match self.etcd.get(&self.public_key(name)).await? {
            Some(kv) => Ok(Some(self.decode_public(name, &kv.value, now_ms)?)),
            None => Ok(None),
        }
    }

    /// A public record, if it can be trusted: signed by a fleet key (on a
    /// refresher, the first format is read too, marked unsigned), its
    /// times sensible, and no older than one seen before.
    fn decode_public(&self, name: &str, bytes: &[u8], now_ms: i64) -> Result<Public, FleetError> {
        let public = match record::stored(bytes) {
            Stored::Signed {
                record,
                sig,
                signer,
            } => {
                let message = record::signed_message(name, record);
                if !self.verifiers.iter().any(|v| v.verify(&message, &sig)) {
                    return Err(self.forged(name, &signer));
                }
                let mut public: Public = decode(name, record)?;
                public.signed = true;
                public
            }
            Stored::Unsigned(_) if self.role == Role::Consumer => {
                return Err(FleetError::Unsigned(name.into()));
            }
            Stored::Unsigned(bytes) => {
                let mut public: Public = decode(name, bytes)?;
                // The first format had no generation: one claimed here is
                // a writer's trick to pass the rollback check.
                if public.generation != 0 {
                    return Err(self.forged(name, "none"));
                }
                public.signed = false;
                public
            }
        };
        public.check_sense(name, now_ms)?;
        let seen_as = format!("public/{name}");
        self.seen.check(&seen_as, public.generation)?;
        if public.signed {
            self.seen.note(&seen_as, public.generation);
        }
        Ok(public)
    }

    /// A record that does not verify, named with the key it claims and the
    /// keys this member holds.
    pub fn forged(&self, name: &str, signer: &str) -> FleetError {
        let held = [&self.key, &self.previous_key]
            .into_iter()
            .flatten()
            .map(|k| k.id.clone())
            .collect::<Vec<_>>();
        FleetError::Forged {
            name: name.into(),
            signer: signer
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(16)
                .collect(),
            held: match held.is_empty() {
                true => "its public_key".into(),
                false => held.join(", "),
            },
        }
    }

    /// The public record's written form: signed with the fleet key.
    fn encode_public(&self, name: &str, public: &Public) -> Result<Vec<u8>, FleetError> {
        let key = self.key.as_ref().ok_or_else(|| {
            FleetError::Config("a consumer holds no fleet key and cannot sign".into())
        })?;
        let record = public.encode();
        let sig = key.sign(&record::signed_message(name, &record));
        Ok(record::envelope(&record, &sig, &key.id).to_vec())
    }

    /// The sealed credential and the revision a commit must compare;
    /// refused when older than one this member has seen.
    pub async fn read_secret(&self, name: &str) -> Result<Option<(Secret, i64)>, FleetError> {
        match self.etcd.get(&self.secret_key(name)).await? {
            Some(kv) => {
                let secret: Secret = decode(name, &kv.value)?;
                self.seen
                    .check(&format!("secret/{name}"), secret.generation)?;
                Ok(Some((secret, kv.mod_revision)))
            }
            None => Ok(None),
        }
    }

    /// Forgets what was seen of `name`: it left the fleet.
    pub fn forget(&self, name: &str) {
        self.seen.forget(&format!("public/{name}"));
        self.seen.forget(&format!("secret/{name}"));
    }

    /// Writes `secret` (and `public`, when given) if `secret/NAME` is still
    /// at revision `rev`; the new revision, or `None` if another member
    /// changed it first (nothing written).
    pub async fn commit(
        &self,
        name: &str,
        rev: i64,
        secret: &Secret,
        public: Option<&Public>,
    ) -> Result<Option<i64>, FleetError> {
        let mut ops = vec![Op::Put {
            key: self.secret_key(name),
            value: encode_secret(secret),
            lease: None,
        }];
        if let Some(public) = public {
            ops.push(Op::Put {
                key: self.public_key(name),
                value: self.encode_public(name, public)?,
                lease: None,
            });
        }
        let compare = [Compare::ModRevision(self.secret_key(name), rev)];
        let done = self.etcd.txn(&compare, &ops).await?;
        if done.is_some() {
            self.written(name, secret, public);
        }
        Ok(done)
    }

    /// What this member wrote is the newest it has seen.
    fn written(&self, name: &str, secret: &Secret, public: Option<&Public>) {
        self.seen.note(&format!("secret/{name}"), secret.generation);
        if let Some(public) = public {
            self.seen.note(&format!("public/{name}"), public.generation);
        }
    }

    /// Puts a new shared profile (or, with `replace`, a new credential for
    /// one) in the fleet; false when the name is taken.
    pub async fn create(
        &self,
        name: &str,
        public: &Public,
        secret: &Secret,
        replace: bool,
    ) -> Result<bool, FleetError> {
        let ops = [
            Op::Put {
                key: self.public_key(name),
                value: self.encode_public(name, public)?,
                lease: None,
            },
            Op::Put {
                key: self.secret_key(name),
                value: encode_secret(secret),
                lease: None,
            },
        ];
        let compare = match replace {
            true => Vec::new(),
            false => vec![Compare::Absent(self.public_key(name))],
        };
        let done = self.etcd.txn(&compare, &ops).await?.is_some();
        if done {
            self.written(name, secret, Some(public));
        }
        Ok(done)
    }

    /// Takes `name` out of the fleet; false if it was not in it.
    pub async fn delete(&self, name: &str) -> Result<bool, FleetError> {
        let exists = self.etcd.get(&self.public_key(name)).await?.is_some();
        let ops = [
            Op::Delete(self.public_key(name)),
            Op::Delete(self.secret_key(name)),
        ];
        self.etcd.txn(&[], &ops).await?;
        Ok(exists)
    }

    /// `credential` and the settings it may be sent with, sealed for
    /// `name` at `generation` with the current key.
    pub fn seal(
        &self,
        name: &str,
        spec: &ProfileSpec,
        credential: &Credential,
        generation: u64,
    ) -> Result<Secret, FleetError> {
        let key = self.key.as_ref().ok_or_else(|| {
            FleetError::Config("a consumer holds no fleet key and cannot seal".into())
        })?;
        let credential = credential
            .encode()
            .map_err(|e| FleetError::Record(name.into(), e.to_string()))?;
        let plain = record::plaintext(spec, &credential);
        Ok(Secret {
            sealed: key.seal(name, generation.max(1), &plain)?,
            key_id: key.id.clone(),
            inflight: None,
            dead: None,
            generation: generation.max(1),
            backoff: None,
        })
    }

    /// Opens the credential with whichever of our keys sealed it, and
    /// checks it against `spec`, the settings this member would send it
    /// with: they must be the sealed ones. A record of the first format
    /// has none sealed and takes `spec` (it is sealed with them at its
    /// next refresh).
    pub fn open_credential(
        &self,
        name: &str,
        secret: &Secret,
        spec: &ProfileSpec,
    ) -> Result<Credential, FleetError> {
        let key = [&self.key, &self.previous_key]
            .into_iter()
            .flatten()
            .find(|k| k.id == secret.key_id)
            .ok_or_else(|| SealError::OtherKey {
                sealed_with: secret.key_id.clone(),
                held: self.key.as_ref().map_or("none".into(), |k| k.id.clone()),
            })?;
        let seen_as = format!("secret/{name}");
        self.seen.check(&seen_as, secret.generation)?;
        let plain = key.open(name, secret.generation, &secret.sealed)?;
        let credential = match secret.generation {
            0 => &plain[..],
            _ => {
                let (sealed_spec, credential) =
                    record::split_plaintext(&plain).ok_or_else(|| {
                        FleetError::Record(name.into(), "sealed settings unreadable".into())
                    })?;
                if sealed_spec != *spec {
                    let what = spec_difference(&sealed_spec, spec);
                    tracing::error!(profile = %name, "{}", FleetError::SpecMismatch(name.into(), what.clone()));
                    return Err(FleetError::SpecMismatch(name.into(), what));
                }
                credential
            }
        };
        let credential =
            Credential::decode(credential).map_err(|why| FleetError::Record(name.into(), why))?;
        self.seen.note(&seen_as, secret.generation);
        Ok(credential)
    }
}

/// Which settings differ, by name (their values are not secret, but the
/// message stays short).
fn spec_difference(sealed: &ProfileSpec, public: &ProfileSpec) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(sealed), serde_json::to_value(public))
    else {
        return "unknown".into();
    };
    let names: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(text: &str) -> FleetConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_are_checked_before_anything_is_contacted() {
        let err = |text: &str| {
            let text = format!("insecure_loopback = true\n{text}");
            Fleet::open(&config(&text), None).unwrap_err().to_string()
        };
        assert!(err("etcd = []").contains("no endpoint"));
        assert!(
            err("etcd = [\"http://etcd.example:2379\"]\nrole = \"consumer\"")
                .contains("plain http")
        );
        assert!(err("etcd = [\"http://127.0.0.1:2379\"]").contains("needs key_file"));
        assert!(
            err("etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nkey_file = \"/k\"")
                .contains("never holds the fleet key")
        );
        assert!(
            err(
                "etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nuser = \"u\"\n\
                 public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\""
            )
            .contains("password_file")
        );
        let fleet = Fleet::open(
            &config(
                "etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nmember = \"m1\"\nprefix = \"x\"\n\
                 insecure_loopback = true\npublic_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            (fleet.member.as_str(), fleet.public_key("p")),
            ("m1", "x/public/p".into())
        );
        assert!(toml::from_str::<FleetConfig>("etcd = []\nrole = \"boss\"").is_err());
    }

    fn refresher(key: u8) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [key; 32]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = format!(
            "etcd = [\"https://127.0.0.1:2379\"]\nkey_file = {:?}",
            path.display().to_string()
        );
        Fleet::open(&config(&text), None).unwrap()
    }

    fn consumer(public_key: &str) -> Fleet {
        let text = format!(
            "etcd = [\"https://127.0.0.1:2379\"]\nrole = \"consumer\"\npublic_key = {public_key:?}"
        );
        Fleet::open(&config(&text), None).unwrap()
    }

    fn public(generation: u64) -> Public {
        Public::issued(
            ProfileSpec::default(),
            (SecretString::from("at-1"), Some(2_000), Vec::new()),
            1_000,
            "m",
            None,
            generation,
        )
    }

    #[test]
    fn consumers_serve_only_what_a_refresher_signed() {
        let r = refresher(7);
        let c = consumer(&r.signing_public_key().unwrap());
        let signed = r.encode_public("work", &public(5)).unwrap();
        let got = c.decode_public("work", &signed, 1_500).unwrap();
        assert!(got.signed);
        // Another name, another key, an edited record, or no signature at
        // all: refused.
        assert!(matches!(
            c.decode_public("other", &signed, 1_500),
            Err(FleetError::Forged { .. })
        ));
        let stranger = refresher(8).encode_public("work", &public(6)).unwrap();
        assert!(matches!(
            c.decode_public("work", &stranger, 1_500),
            Err(FleetError::Forged { .. })
        ));
        let edited = String::from_utf8(signed.clone())
            .unwrap()
            .replace("at-1", "at-X");
        assert!(matches!(
            c.decode_public("work", edited.as_bytes(), 1_500),
            Err(FleetError::Forged { .. })
        ));
        let plain = public(0).encode();
        assert!(matches!(
            c.decode_public("work", &plain, 1_500),
            Err(FleetError::Unsigned(_))
        ));
        // A refresher reads the first format, marked unsigned; one that
        // claims a generation (which that format never had) is forged.
        assert!(!r.decode_public("work", &plain, 1_500).unwrap().signed);
        assert!(matches!(
            r.decode_public("work", &public(6).encode(), 1_500),
            Err(FleetError::Forged { .. })
        ));
        // An older record than one seen: a rollback.
        let older = r.encode_public("work", &public(4)).unwrap();
        assert!(matches!(
            c.decode_public("work", &older, 1_500),
            Err(FleetError::Rollback {
                got: 4,
                seen: 5,
                ..
            })
        ));
        // Times that cannot be true.
        assert!(c.decode_public("work", &signed, -400_000).is_err());
    }

    #[test]
    fn the_credential_opens_only_with_the_settings_sealed_with_it() {
        let r = refresher(7);
        let spec = ProfileSpec {
            token_url: Some("https://idp.example/token".into()),
            ..ProfileSpec::default()
        };
        let credential = Credential {
            refresh_token: Some(SecretString::from("rt-1")),
            ..Credential::default()
        };
        let secret = r.seal("work", &spec, &credential, 10).unwrap();
        assert_eq!(secret.generation, 10);
        let opened = r.open_credential("work", &secret, &spec).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(opened.refresh_token.as_ref().unwrap()),
            "rt-1"
        );
        let moved = ProfileSpec {
            token_url: Some("https://attacker.example/token".into()),
            ..spec.clone()
        };
        let err = r.open_credential("work", &secret, &moved).unwrap_err();
        assert!(
            matches!(err, FleetError::SpecMismatch(_, ref what) if what == "token_url"),
            "{err}"
        );
        // The generation in the clear cannot be changed: it is sealed in.
        let relabelled = Secret {
            generation: 11,
            ..secret.clone()
        };
        assert!(r.open_credential("work", &relabelled, &spec).is_err());
        // A record of the first format (generation 0, no settings sealed)
        // opens, and takes the settings it will be sealed with next.
        let key = r.key.as_ref().unwrap();
        let legacy = Secret {
            sealed: key.seal("work2", 0, &credential.encode().unwrap()).unwrap(),
            key_id: key.id.clone(),
            inflight: None,
            dead: None,
            generation: 0,
            backoff: None,
        };
        r.open_credential("work2", &legacy, &moved).unwrap();
        // Once generation 10 was opened, an older record is a rollback.
        let older = r.seal("work", &spec, &credential, 9).unwrap();
        assert!(matches!(
            r.open_credential("work", &older, &spec),
            Err(FleetError::Rollback { .. })
        ));
    }

    #[test]
    fn plain_http_to_etcd_needs_insecure_loopback_and_a_consumer_a_public_key() {
        let err = |text: &str| Fleet::open(&config(text), None).unwrap_err().to_string();
        assert!(
            err("etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\npublic_key = \"x\"")
                .contains("insecure_loopback")
        );
        assert!(
            err("etcd = [\"https://127.0.0.1:2379\"]\nrole = \"consumer\"")
                .contains("needs public_key")
        );
        assert!(
            err("etcd = [\"https://127.0.0.1:2379\"]\nrole = \"consumer\"\npublic_key = \"AAAA\"")
                .contains("not a fleet public key")
        );
    }
}
