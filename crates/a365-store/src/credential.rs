//! The record stored per profile.

use std::fmt;

use a365_proto::ClientAuth;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Everything secret (or cached) about one profile.
#[derive(Clone, Default)]
pub struct Credential {
    pub client_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    /// The cached access token (or the static token).
    pub access_token: Option<SecretString>,
    /// UTC epoch milliseconds of the access token's expiry.
    pub access_expires_at_ms: Option<i64>,
    /// Scopes the cached token carries (not secret).
    pub access_scopes: Vec<String>,
    /// When the record last changed, i.e. the access token was obtained
    /// (UTC epoch ms); set by the caller, the store keeps it as given.
    pub updated_at_ms: i64,
    /// Designer Cloud: the id of the current API token (not secret).
    pub token_id: Option<String>,
    /// Designer Cloud: ids of replaced tokens still to be deleted on the
    /// server; kept until the delete succeeds.
    pub retired_token_ids: Vec<String>,
    /// Designer Cloud: the tag of a token being created, saved before the
    /// create is sent, so that one created but never saved (a crash, a lost
    /// answer) can be found by its description and deleted.
    pub creating: Option<String>,
    /// A refresh token was sent at this time (UTC epoch ms) and its answer
    /// not yet recorded: saved before the request goes out, so that after
    /// a crash or a lost answer the possibly spent token is not sent again
    /// blindly.
    pub refresh_sent_at_ms: Option<i64>,
    /// Whether the provider rotates refresh tokens, as last seen (`None`:
    /// not seen yet).
    pub rotates: Option<bool>,
    /// The client authentication the token server accepted for this
    /// profile (`None`: none accepted yet, or no client secret).
    pub client_auth: Option<ClientAuth>,
    /// The cached access token stated no lifetime: the one assumed, in
    /// seconds.
    pub assumed_lifetime_s: Option<u64>,
    /// Who signed in (a browser login's userinfo or id_token), for
    /// `status` (not secret).
    pub account: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |s: &Option<SecretString>| if s.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("Credential")
            .field("client_secret", &present(&self.client_secret))
            .field("refresh_token", &present(&self.refresh_token))
            .field("access_token", &present(&self.access_token))
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("access_scopes", &self.access_scopes)
            .field("updated_at_ms", &self.updated_at_ms)
            .field("token_id", &self.token_id)
            .field("retired_token_ids", &self.retired_token_ids)
            .field("creating", &self.creating)
            .field("refresh_sent_at_ms", &self.refresh_sent_at_ms)
            .field("rotates", &self.rotates)
            .field("client_auth", &self.client_auth)
            .field("assumed_lifetime_s", &self.assumed_lifetime_s)
            .field("account", &self.account)
            .finish()
    }
}

/// The record version this code writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Why a stored record could not be read; never quotes the record.
#[derive(Debug)]
pub(crate) enum ParseError {
    Corrupt(String),
    /// Written by a newer a365: not corrupt, so not to be deleted.
    Version(u32),
}

/// Read first, without the strictness of `In`, so a newer record with new
/// fields is reported as newer, not as corrupt.
#[derive(Deserialize)]
struct Probe {
    version: u32,
}

/// The on-disk form: version 1.
#[derive(Serialize)]
struct Out<'a> {
    version: u32,
    client_secret: Option<&'a str>,
    refresh_token: Option<&'a str>,
    access_token: Option<&'a str>,
    access_expires_at_ms: Option<i64>,
    access_scopes: &'a [String],
    updated_at_ms: i64,
    token_id: Option<&'a str>,
    retired_token_ids: &'a [String],
    /// Left out when unset, so a downgraded a365 still reads the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    creating: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_sent_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotates: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_auth: Option<ClientAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assumed_lifetime_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct In {
    /// Checked by `Probe`; named here only so `deny_unknown_fields` allows it.
    #[serde(rename = "version")]
    _version: u32,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    access_token: Option<SecretString>,
    access_expires_at_ms: Option<i64>,
    #[serde(default)]
    access_scopes: Vec<String>,
    updated_at_ms: i64,
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    retired_token_ids: Vec<String>,
    #[serde(default)]
    creating: Option<String>,
    #[serde(default)]
    refresh_sent_at_ms: Option<i64>,
    #[serde(default)]
    rotates: Option<bool>,
    #[serde(default)]
    client_auth: Option<ClientAuth>,
    #[serde(default)]
    assumed_lifetime_s: Option<u64>,
    #[serde(default)]
    account: Option<String>,
}

impl Credential {
    /// The one place the secrets are exposed: into a zeroized buffer.
    pub(crate) fn to_json(&self) -> std::io::Result<Zeroizing<Vec<u8>>> {
        let out = Out {
            version: VERSION,
            client_secret: self.client_secret.as_ref().map(|s| s.expose_secret()),
            refresh_token: self.refresh_token.as_ref().map(|s| s.expose_secret()),
            access_token: self.access_token.as_ref().map(|s| s.expose_secret()),
            access_expires_at_ms: self.access_expires_at_ms,
            access_scopes: &self.access_scopes,
            updated_at_ms: self.updated_at_ms,
            token_id: self.token_id.as_deref(),
            retired_token_ids: &self.retired_token_ids,
            creating: self.creating.as_deref(),
            refresh_sent_at_ms: self.refresh_sent_at_ms,
            rotates: self.rotates,
            client_auth: self.client_auth,
            assumed_lifetime_s: self.assumed_lifetime_s,
            account: self.account.as_deref(),
        };
        // Sized up front: a growing Vec would leave unzeroized copies behind.
        let size = [&self.client_secret, &self.refresh_token, &self.access_token]
            .iter()
            .filter_map(|s| s.as_ref().map(|s| s.expose_secret().len()))
            .sum::<usize>();
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * size + 1024));
        // Cannot fail for strings and numbers; never write a partial record.
        serde_json::to_writer_pretty(&mut *buf, &out)
            .map_err(|e| std::io::Error::other(format!("serializing: {:?}", e.classify())))?;
        buf.push(b'\n');
        Ok(buf)
    }

    /// The record as the file store writes it, for a store elsewhere (the
    /// fleet seals it before it leaves the machine).
    pub fn encode(&self) -> std::io::Result<Zeroizing<Vec<u8>>> {
        self.to_json()
    }

    /// Reads what [`Credential::encode`] wrote; the error never quotes it.
    pub fn decode(bytes: &[u8]) -> Result<Credential, String> {
        Credential::from_json(bytes).map_err(|e| match e {
            ParseError::Corrupt(why) => why,
            ParseError::Version(v) => format!("record version {v} is newer than this a365"),
        })
    }

    /// Parses a stored record; the error describes where, never what.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Credential, ParseError> {
        // serde_json's Display can quote the input: say where, not what.
        let located = |e: serde_json::Error| {
            ParseError::Corrupt(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(located)?;
        if probe.version != VERSION {
            return Err(ParseError::Version(probe.version));
        }
        let record: In = serde_json::from_slice(bytes).map_err(located)?;
        Ok(Credential {
            client_secret: record.client_secret,
            refresh_token: record.refresh_token,
            access_token: record.access_token,
            access_expires_at_ms: record.access_expires_at_ms,
            access_scopes: record.access_scopes,
            updated_at_ms: record.updated_at_ms,
            token_id: record.token_id,
            retired_token_ids: record.retired_token_ids,
            creating: record.creating,
            refresh_sent_at_ms: record.refresh_sent_at_ms,
            rotates: record.rotates,
            client_auth: record.client_auth,
            assumed_lifetime_s: record.assumed_lifetime_s,
            account: record.account,
        })
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Credential {
    Credential {
        client_secret: Some("cs-SECRET-1".into()),
        refresh_token: Some("rt-SECRET-2".into()),
        access_token: Some("at-SECRET-3".into()),
        access_expires_at_ms: Some(1_900_000_000_000),
        access_scopes: vec!["openid".into()],
        updated_at_ms: 1_899_999_000_000,
        token_id: Some("tid-1".into()),
        retired_token_ids: vec!["tid-0".into()],
        creating: None,
        refresh_sent_at_ms: None,
        rotates: None,
        client_auth: None,
        assumed_lifetime_s: None,
        account: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("[REDACTED]"));
    }

    #[test]
    fn json_round_trip_and_errors_without_contents() {
        let json = sample().to_json().unwrap();
        let back = Credential::from_json(&json).unwrap();
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "rt-SECRET-2");
        assert_eq!(back.access_expires_at_ms, Some(1_900_000_000_000));
        for bad in [
            &br#"{"version":1,"refresh_token":42,"x":"SECRET"}"#[..],
            br#"{"version":1,"updated_at_ms":0,"x":"SECRET"}"#,
            br#"{"version":1,"refresh_token":"SECRET"#,
            br#"{"refresh_token":"SECRET"}"#,
            b"SECRET",
        ] {
            let err = format!("{:?}", Credential::from_json(bad).unwrap_err());
            assert!(err.starts_with("Corrupt"), "{err}");
            assert!(!err.contains("SECRET") && !err.contains("42"), "{err}");
        }
        // A newer record with new fields is newer, not corrupt.
        assert!(matches!(
            Credential::from_json(br#"{"version":2,"new":"SECRET"}"#),
            Err(ParseError::Version(2))
        ));
    }

    #[test]
    fn a_pending_create_is_written_only_while_there_is_one() {
        let plain = sample().to_json().unwrap();
        assert!(!String::from_utf8_lossy(&plain).contains("creating"));
        let mut pending = sample();
        pending.creating = Some("0a1b2c3d4e5f6071".into());
        let back = Credential::from_json(&pending.to_json().unwrap()).unwrap();
        assert_eq!(back.creating.as_deref(), Some("0a1b2c3d4e5f6071"));
    }
}
