//! What a sink writes: the token in the sink's format. The bytes are
//! zeroed when dropped.

use a365_proto::{FileSink, SinkFormat};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::profile::Held;

/// The variable of the `env` format when the sink names none.
pub(super) const DEFAULT_VAR: &str = "A365_TOKEN";

/// A variable name a shell and `docker --env-file` take.
pub(super) fn check_var(sink: &FileSink) -> Result<(), String> {
    let Some(var) = &sink.var else {
        return Ok(());
    };
    if !a365_proto::is_variable_name(var) || var.len() > 128 {
        return Err(format!(
            "'{}' is not a variable name (letters, digits and _, not first a digit)",
            var.escape_default()
        ));
    }
    Ok(())
}

/// The file's content for `held`.
pub(super) fn render(sink: &FileSink, held: &Held) -> Result<Zeroizing<Vec<u8>>, String> {
    let token = held.secret.expose_secret();
    // A line-based format must not be split or extended by the token,
    // nor a shell that `source`s an env file run any of it: a bearer
    // token's characters only (RFC 6750's b64token).
    let one_line = !token.is_empty()
        // `~` first would be expanded by a shell that sources the file.
        && !token.starts_with('~')
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    let end = if sink.newline { "\n" } else { "" };
    let text = match sink.format {
        SinkFormat::Raw => Zeroizing::new(format!("{token}{end}")),
        SinkFormat::Header | SinkFormat::Env if !one_line => {
            return Err(format!(
                "the token of profile '{}' holds characters a bearer token does not (only \
                 letters, digits and -._~+/=): it is not written as a {} line",
                sink.profile,
                sink.format.as_str()
            ));
        }
        SinkFormat::Header => Zeroizing::new(format!("Authorization: Bearer {token}{end}")),
        SinkFormat::Env => {
            let var = sink.var.as_deref().unwrap_or(DEFAULT_VAR);
            let expiry = held
                .expires_at_ms
                .map(|ms| format!("{var}_EXPIRES_AT={}\n", ms.div_euclid(1000)))
                .unwrap_or_default();
            Zeroizing::new(format!("{var}={token}\n{expiry}"))
        }
        SinkFormat::Json => {
            let quoted = Zeroizing::new(serde_json::to_string(token).map_err(|e| e.to_string())?);
            // The other fields, with the token put first by hand: a JSON
            // value would keep a copy of it that is not zeroed.
            let rest = serde_json::json!({
                "expires_at": held.expires_at_ms.map(|ms| ms.div_euclid(1000)),
                "scopes": held.scopes,
                "profile": sink.profile,
            })
            .to_string();
            Zeroizing::new(format!(
                "{{\"token\":{},{}{end}",
                quoted.as_str(),
                rest.trim_start_matches('{')
            ))
        }
    };
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn held(token: &str) -> Held {
        Held {
            secret: SecretString::from(token),
            expires_at_ms: Some(1_900_000_000_500),
            scopes: vec!["openid".into()],
            obtained_at_ms: 0,
            assumed_lifetime_s: None,
        }
    }

    fn sink(format: SinkFormat, newline: bool) -> FileSink {
        FileSink {
            name: "s".into(),
            path: "/x".into(),
            profile: "p".into(),
            workspace: None,
            format,
            newline,
            var: None,
            group: None,
            command: None,
        }
    }

    fn text(sink: &FileSink, token: &str) -> Result<String, String> {
        render(sink, &held(token)).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn formats() {
        assert_eq!(text(&sink(SinkFormat::Raw, true), "t.k").unwrap(), "t.k\n");
        assert_eq!(text(&sink(SinkFormat::Raw, false), "t.k").unwrap(), "t.k");
        assert_eq!(
            text(&sink(SinkFormat::Header, true), "t.k").unwrap(),
            "Authorization: Bearer t.k\n"
        );
        let mut env = sink(SinkFormat::Env, false);
        assert_eq!(
            text(&env, "t.k").unwrap(),
            "A365_TOKEN=t.k\nA365_TOKEN_EXPIRES_AT=1900000000\n"
        );
        env.var = Some("NEXAR_TOKEN".into());
        assert!(text(&env, "t.k").unwrap().starts_with("NEXAR_TOKEN=t.k\n"));
        let json: serde_json::Value =
            serde_json::from_str(&text(&sink(SinkFormat::Json, true), "t\"k").unwrap()).unwrap();
        assert_eq!(json["token"], "t\"k");
        assert_eq!(json["expires_at"], 1_900_000_000);
        assert_eq!(json["scopes"][0], "openid");
    }

    #[test]
    fn a_token_that_would_break_a_line_is_not_written_as_one() {
        for format in [SinkFormat::Header, SinkFormat::Env] {
            for bad in ["t\nEVIL=1", "$(reboot)", "x;y", "x y", "~root"] {
                let err = text(&sink(format, true), bad).unwrap_err();
                assert!(err.contains("bearer token") && !err.contains(bad), "{err}");
            }
        }
        assert!(text(&sink(SinkFormat::Raw, true), "a b").is_ok());
    }

    #[test]
    fn variable_names() {
        let mut s = sink(SinkFormat::Env, true);
        for good in ["NEXAR_TOKEN", "_x1"] {
            s.var = Some(good.into());
            assert!(check_var(&s).is_ok(), "{good}");
        }
        for bad in ["1X", "A-B", "A B", "", "A=B"] {
            s.var = Some(bad.into());
            assert!(check_var(&s).is_err(), "{bad}");
        }
    }
}
