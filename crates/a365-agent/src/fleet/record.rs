//! The two records of a shared profile and their written forms.
//!
//! - [`Public`]: what every member may read. Written as an envelope
//!   `{"record": {…}, "sig": "…"}`, the signature a refresher's over the
//!   profile's name and the record's exact bytes ([`signed_message`]).
//!   Records of the first format (no envelope) are still read by
//!   refreshers, which replace them at their next refresh; consumers
//!   refuse them.
//! - [`Secret`]: the sealed credential. From generation 1 on, its
//!   plaintext carries the profile's settings too ([`plaintext`]), so that
//!   where a secret may go is bound to the secret: refreshers take the
//!   token endpoint from the sealed copy only.

use a365_proto::ProfileSpec;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::FleetError;

/// What every member may read about a shared profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Public {
    pub spec: ProfileSpec,
    #[serde(default)]
    pub access_token: Option<SecretString>,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub obtained_at_ms: i64,
    /// The member that wrote the token (or the record).
    pub refreshed_by: String,
    /// Why the credential is dead; every member then sends nothing.
    #[serde(default)]
    pub dead: Option<String>,
    #[serde(default)]
    pub rotates: Option<bool>,
    /// The generation of the sealed credential this record goes with.
    #[serde(default)]
    pub generation: u64,
    /// Whether a refresher's signature vouches for it (false: a record of
    /// the first format, never served, only replaced).
    #[serde(skip)]
    pub signed: bool,
}

/// The written form of [`Public`]: the access token exposed into a wiped
/// buffer only.
#[derive(Serialize)]
struct PublicOut<'a> {
    spec: &'a ProfileSpec,
    access_token: Option<&'a str>,
    expires_at_ms: Option<i64>,
    scopes: &'a [String],
    obtained_at_ms: i64,
    refreshed_by: &'a str,
    dead: Option<&'a str>,
    rotates: Option<bool>,
    generation: u64,
}

/// The signed envelope of a public record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    record: &'a RawValue,
    sig: String,
    /// The id of the fleet key that signed (not covered by the signature:
    /// it only names the key a member lacks after a rotation).
    #[serde(default)]
    signer: String,
}

impl Public {
    /// The record of a token `member` just obtained: (token, expiry, scopes).
    pub fn issued(
        spec: ProfileSpec,
        (access_token, expires_at_ms, scopes): (SecretString, Option<i64>, Vec<String>),
        now_ms: i64,
        member: &str,
        rotates: Option<bool>,
        generation: u64,
    ) -> Public {
        Public {
            spec,
            access_token: Some(access_token),
            expires_at_ms,
            scopes,
            obtained_at_ms: now_ms,
            refreshed_by: member.to_owned(),
            dead: None,
            rotates,
            generation,
            signed: true,
        }
    }

    /// The record's JSON, in a wiped buffer.
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let out = PublicOut {
            spec: &self.spec,
            access_token: self.access_token.as_ref().map(|t| t.expose_secret()),
            expires_at_ms: self.expires_at_ms,
            scopes: &self.scopes,
            obtained_at_ms: self.obtained_at_ms,
            refreshed_by: &self.refreshed_by,
            dead: self.dead.as_deref(),
            rotates: self.rotates,
            generation: self.generation,
        };
        let size = self
            .access_token
            .as_ref()
            .map_or(0, |t| t.expose_secret().len());
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * size + 4096));
        // Strings and numbers only: cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &out);
        buf
    }

    /// Whether the record can be true at `now_ms`: a bearer token as RFC
    /// 6750 allows it, not obtained in the future, not expiring before it
    /// was obtained, no lifetime of years. A writer of etcd without the key
    /// cannot sign, but a signed record must still make sense.
    pub(super) fn check_sense(&self, name: &str, now_ms: i64) -> Result<(), FleetError> {
        const SKEW_MS: i64 = 5 * 60 * 1000;
        const MOST_MS: i64 = 400 * 24 * 3600 * 1000;
        let bad = |why: &str| FleetError::Record(name.into(), why.into());
        // What a token server may not send (escapes, a header line) may not
        // come from etcd either.
        if self
            .access_token
            .as_ref()
            .is_some_and(|t| !a365_token::is_b64token(t.expose_secret()))
        {
            return Err(bad(
                "its access token has characters a bearer token cannot have",
            ));
        }
        if self.obtained_at_ms > now_ms.saturating_add(SKEW_MS) {
            return Err(bad("its token was obtained in the future"));
        }
        if let Some(exp) = self.expires_at_ms {
            if exp < self.obtained_at_ms {
                return Err(bad("its token expires before it was obtained"));
            }
            if exp.saturating_sub(self.obtained_at_ms) > MOST_MS {
                return Err(bad("its token's lifetime is longer than 400 days"));
            }
        }
        Ok(())
    }
}

/// What a signature of the public record of `name` covers: the name too,
/// so a record copied under another profile's key does not verify.
pub(super) fn signed_message(name: &str, record: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut message = Zeroizing::new(Vec::with_capacity(record.len() + name.len() + 32));
    message.extend_from_slice(b"a365 fleet public v1\0");
    message.extend_from_slice(name.as_bytes());
    message.push(0);
    message.extend_from_slice(record);
    message
}

/// `record` (a public record's JSON), its signature and the signing key's
/// id as the envelope.
pub(super) fn envelope(record: &[u8], sig: &str, signer: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(record.len() + sig.len() + 64));
    out.extend_from_slice(b"{\"record\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b",\"sig\":\"");
    out.extend_from_slice(sig.as_bytes());
    out.extend_from_slice(b"\",\"signer\":\"");
    // A key id: hex digits only.
    out.extend_from_slice(signer.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// A stored public record: the record's bytes and their signature, or a
/// record of the first format (no signature).
pub(super) enum Stored<'a> {
    Signed {
        record: &'a [u8],
        sig: String,
        signer: String,
    },
    Unsigned(&'a [u8]),
}

pub(super) fn stored(bytes: &[u8]) -> Stored<'_> {
    match serde_json::from_slice::<Envelope<'_>>(bytes) {
        Ok(e) => Stored::Signed {
            record: e.record.get().as_bytes(),
            sig: e.sig,
            signer: e.signer,
        },
        Err(_) => Stored::Unsigned(bytes),
    }
}

/// The refreshers' record: the sealed credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// [`plaintext`], sealed with the fleet key.
    pub sealed: String,
    /// Which fleet key sealed it.
    pub key_id: String,
    /// A refresh request sent and not yet committed: if its member dies
    /// or stalls, its answer is lost, and with a rotating provider the
    /// refresh token it sent is spent. Never replayed.
    #[serde(default)]
    pub inflight: Option<Inflight>,
    #[serde(default)]
    pub dead: Option<String>,
    /// Grows with every new credential (the time it was sealed, or one
    /// more than the last); sealed into the record's associated data, so
    /// it cannot be changed, and no member takes an older one than it saw.
    /// 0: the first format, without settings or generation.
    #[serde(default)]
    pub generation: u64,
    /// The fleet's back-off after a failed refresh: no member sends before
    /// it ends (the provider's `Retry-After` at least). Left out when
    /// unset, so agents of the release before it read the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// A back-off shared by the fleet: one provider, one rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// No member sends a refresh before this (UTC epoch ms).
    pub until_ms: i64,
    /// Failed refreshes in a row, by any member.
    pub failures: u32,
    /// The last one's error, for `status` (no secret: a provider error).
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    pub member: String,
    pub at_ms: i64,
}

/// The generation after `last`, at `now_ms`.
pub fn next_generation(last: u64, now_ms: i64) -> u64 {
    last.saturating_add(1)
        .max(u64::try_from(now_ms).unwrap_or(0))
}

/// What is sealed from generation 1 on: the settings' JSON, its length
/// first (4 bytes, big-endian), then the credential.
pub(super) fn plaintext(spec: &ProfileSpec, credential: &[u8]) -> Zeroizing<Vec<u8>> {
    // Strings, numbers and maps of strings: cannot fail.
    let spec = serde_json::to_vec(spec).unwrap_or_default();
    let mut out = Zeroizing::new(Vec::with_capacity(4 + spec.len() + credential.len()));
    out.extend_from_slice(&u32::try_from(spec.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&spec);
    out.extend_from_slice(credential);
    out
}

/// Splits what [`plaintext`] made.
pub(super) fn split_plaintext(plain: &[u8]) -> Option<(ProfileSpec, &[u8])> {
    let len = u32::from_be_bytes(plain.get(..4)?.try_into().ok()?) as usize;
    let spec = plain.get(4..4usize.checked_add(len)?)?;
    Some((serde_json::from_slice(spec).ok()?, plain.get(4 + len..)?))
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    name: &str,
    bytes: &[u8],
) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| {
        FleetError::Record(
            name.into(),
            format!("{:?} error at column {}", e.classify(), e.column()),
        )
    })
}

pub(super) fn encode_secret(secret: &Secret) -> Vec<u8> {
    // Strings and numbers only: cannot fail. Sealed already.
    serde_json::to_vec(secret).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn public() -> Public {
        Public {
            spec: ProfileSpec::default(),
            access_token: Some(SecretString::from("at-123")),
            expires_at_ms: Some(5),
            scopes: vec!["s".into()],
            obtained_at_ms: 1,
            refreshed_by: "m".into(),
            dead: None,
            rotates: Some(true),
            generation: 9,
            signed: false,
        }
    }

    #[test]
    fn a_public_record_round_trips_and_debug_hides_the_token() {
        let public = public();
        let bytes = public.encode();
        let back: Public = decode("p", &bytes).unwrap();
        assert_eq!(back.access_token.unwrap().expose_secret(), "at-123");
        assert_eq!(back.generation, 9);
        assert!(!format!("{public:?}").contains("at-123"));
        let err = decode::<Public>("p", b"{\"spec\": 5, \"x\": \"at-123\"}").unwrap_err();
        assert!(!err.to_string().contains("at-123"), "{err}");
    }

    #[test]
    fn the_envelope_keeps_the_record_bytes_exactly() {
        let record = public().encode();
        let out = envelope(&record, "c2ln", "0a1b");
        match stored(&out) {
            Stored::Signed {
                record: r,
                sig,
                signer,
            } => {
                assert_eq!(r, &record[..]);
                assert_eq!((sig.as_str(), signer.as_str()), ("c2ln", "0a1b"));
            }
            Stored::Unsigned(_) => panic!("not read as signed"),
        }
        assert!(matches!(stored(&record), Stored::Unsigned(_)));
        assert_ne!(
            &*signed_message("a", &record),
            &*signed_message("b", &record)
        );
    }

    #[test]
    fn times_that_cannot_be_true_are_refused() {
        let mut p = public();
        p.obtained_at_ms = 1_000;
        p.expires_at_ms = Some(2_000);
        p.check_sense("p", 1_500).unwrap();
        p.check_sense("p", 10_000).unwrap();
        assert!(p.check_sense("p", 1_000 - 6 * 60 * 1000).is_err());
        p.expires_at_ms = Some(999);
        assert!(p.check_sense("p", 1_500).is_err());
        p.expires_at_ms = Some(1_000 + 401 * 24 * 3600 * 1000);
        assert!(p.check_sense("p", 1_500).is_err());
        p.expires_at_ms = Some(2_000);
        p.access_token = Some(SecretString::from("at\r\nX-Evil: 1"));
        assert!(p.check_sense("p", 1_500).is_err());
    }

    #[test]
    fn settings_travel_with_the_sealed_credential() {
        let spec = ProfileSpec {
            token_url: Some("https://idp.example/token".into()),
            ..ProfileSpec::default()
        };
        let plain = plaintext(&spec, b"{\"credential\":1}");
        let (back, rest) = split_plaintext(&plain).unwrap();
        assert_eq!(back, spec);
        assert_eq!(rest, b"{\"credential\":1}");
        assert!(split_plaintext(b"\xff\xff\xff\xff{}").is_none());
        assert!(split_plaintext(b"").is_none());
        assert_eq!(next_generation(5, 3), 6);
        assert_eq!(next_generation(5, 1_000), 1_000);
    }
}
