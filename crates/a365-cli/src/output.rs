//! What `token` and `status` print.

use std::fmt::Write as _;

use a365_proto::{ProfileStatus, TokenReply};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::Format;

/// A value `cmd.exe` cannot be handed safely: it expands `%` and `!` and
/// has no quoting that stops it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {0} holds a character cmd.exe would interpret (\" % ! ^ or a control character): \
     use --format powershell or --format json"
)]
pub struct NotForCmd(&'static str);

/// The bytes `a365 token` writes to stdout, in a buffer zeroized on drop.
/// `var`: the variable the env, powershell and cmd formats set.
pub fn token(
    reply: &TokenReply,
    format: Format,
    var: &str,
) -> Result<Zeroizing<Vec<u8>>, NotForCmd> {
    let token = reply.token.expose();
    let mut out = Zeroizing::new(Vec::with_capacity(token.len() + 128));
    match format {
        Format::Raw => out.extend_from_slice(token.as_bytes()),
        Format::Header => {
            out.extend_from_slice(b"Authorization: Bearer ");
            out.extend_from_slice(token.as_bytes());
        }
        Format::Env => {
            // `eval "$(a365 token --format env)"`: every value in single
            // quotes, so nothing the agent sends means anything to the shell.
            let _ = write!(ExtendVec(&mut out), "export {var}=");
            shell_quote(&mut out, token.as_bytes());
            out.extend_from_slice(b"\nexport A365_PROFILE=");
            shell_quote(&mut out, reply.profile.as_bytes());
            if let Some(exp) = reply.expires_at {
                let _ = write!(ExtendVec(&mut out), "\nexport A365_TOKEN_EXPIRES_AT={exp}");
            }
        }
        Format::Powershell => {
            // Single-quoted strings: nothing inside expands; a quote
            // (PowerShell also takes the typographic ones) is doubled.
            let _ = write!(ExtendVec(&mut out), "$env:{var} = ");
            powershell_quote(&mut out, token);
            out.extend_from_slice(b"\n$env:A365_PROFILE = ");
            powershell_quote(&mut out, &reply.profile);
            if let Some(exp) = reply.expires_at {
                let _ = write!(
                    ExtendVec(&mut out),
                    "\n$env:A365_TOKEN_EXPIRES_AT = '{exp}'"
                );
            }
        }
        Format::Cmd => {
            for (what, value) in [("token", token), ("profile name", reply.profile.as_str())] {
                if value
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '"' | '%' | '!' | '^'))
                {
                    return Err(NotForCmd(what));
                }
            }
            let _ = write!(ExtendVec(&mut out), "set \"{var}={token}\"");
            let _ = write!(
                ExtendVec(&mut out),
                "\r\nset \"A365_PROFILE={}\"",
                reply.profile
            );
            if let Some(exp) = reply.expires_at {
                let _ = write!(
                    ExtendVec(&mut out),
                    "\r\nset \"A365_TOKEN_EXPIRES_AT={exp}\""
                );
            }
            out.push(b'\r');
        }
        Format::Json => {
            #[derive(Serialize)]
            struct Json<'a> {
                profile: &'a str,
                token: &'a str,
                expires_at: Option<i64>,
                expires_at_rfc3339: Option<String>,
                scopes: &'a [String],
            }
            let json = Json {
                profile: &reply.profile,
                token,
                expires_at: reply.expires_at,
                expires_at_rfc3339: reply.expires_at.and_then(rfc3339),
                scopes: &reply.scopes,
            };
            // Strings and numbers into a Vec: cannot fail.
            let _ = serde_json::to_writer(&mut *out, &json);
        }
    }
    out.push(b'\n');
    Ok(out)
}

/// `value` in PowerShell single quotes: each quote character doubled.
fn powershell_quote(out: &mut Vec<u8>, value: &str) {
    out.push(b'\'');
    let mut buf = [0u8; 4];
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.push(b'\'');
}

/// Writes all of `bytes` to stdout and flushes. A reader that went away
/// (`a365 status | head -1`) ends the command quietly and successfully,
/// as it does for `cat`; `print!` would panic.
pub fn to_stdout(bytes: &[u8]) -> Result<(), crate::exit::Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(crate::exit::Error::StdoutClosed)
        }
        Err(e) => Err(crate::exit::Error::Other(anyhow::anyhow!(
            "writing to standard output: {e}"
        ))),
    }
}

/// `value` in POSIX single quotes: `'` becomes `'\''`, nothing else is
/// special inside them.
fn shell_quote(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'\'');
    for &b in value {
        match b {
            b'\'' => out.extend_from_slice(b"'\\''"),
            b => out.push(b),
        }
    }
    out.push(b'\'');
}

/// Text from the agent or a token server (scopes, error messages, names),
/// safe to print on a terminal: control characters, which could move the
/// cursor, rewrite the title or fake a prompt, are shown escaped; so are
/// bidi controls and other invisible format characters (Unicode Cf), which
/// make a name read backwards or hide part of it.
/// `keep_newlines` for multi-line messages.
pub fn clean(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n')) || a365_proto::is_format_char(c)
    };
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A login URL is opened only if it is HTTPS, or plain HTTP to this
/// machine's loopback (the agent's own login launcher): never a `file:`,
/// `javascript:` or remote plain-HTTP URL, whoever sent it.
pub fn safe_login_url(url: &str) -> bool {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let lower = url.to_ascii_lowercase();
    let (https, rest) = match (
        lower.strip_prefix("https://"),
        lower.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    https
        || matches!(host, "localhost" | "::1")
        || host.split('.').count() == 4
            && host.starts_with("127.")
            && host.split('.').all(|n| n.parse::<u8>().is_ok())
}

/// `write!` into a zeroized buffer without an intermediate `String`.
struct ExtendVec<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ExtendVec<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

pub fn rfc3339(epoch_secs: i64) -> Option<String> {
    jiff::Timestamp::from_second(epoch_secs)
        .ok()
        .map(|t| t.to_string())
}

/// `status --json`: the agent's fields plus RFC 3339 expiry.
pub fn status_json(profiles: &[ProfileStatus]) -> String {
    let values: Vec<serde_json::Value> = profiles
        .iter()
        .map(|p| {
            let mut value = serde_json::to_value(p).unwrap_or_default();
            value["expires_at_rfc3339"] = p.expires_at.and_then(rfc3339).into();
            value
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&values).unwrap_or_else(|_| "[]".into());
    text.push('\n');
    text
}

/// `a365 workspaces`: one line per workspace; `*` marks those whose token
/// is held here (by the profile named last).
pub fn workspaces_table(list: &[a365_proto::Workspace]) -> String {
    if list.is_empty() {
        return "the signed-in user belongs to no workspace\n".into();
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|w| {
            [
                w.id.clone(),
                w.name.clone(),
                w.location.clone(),
                w.url.clone(),
                w.profile.clone().unwrap_or_else(|| "-".into()),
            ]
            .map(|cell| clean(&cell, false).into_owned())
        })
        .collect();
    let header = ["ID", "NAME", "LOCATION", "URL", "PROFILE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "3h 12m", "45s", "expired".
pub fn expires_in(secs: i64) -> String {
    match secs {
        ..=0 => "expired".into(),
        _ => a365_proto::human_ms(secs.saturating_mul(1000)),
    }
}

#[cfg(test)]
mod tests {
    use a365_proto::WireSecret;
    use secrecy::SecretString;

    use super::*;

    fn reply() -> TokenReply {
        TokenReply {
            profile: "work".into(),
            token: WireSecret::new(SecretString::from("tok")),
            expires_at: Some(1_900_000_000),
            scopes: vec!["openid".into()],
        }
    }

    #[test]
    fn token_formats() {
        assert_eq!(
            &token(&reply(), Format::Raw, "A365_TOKEN").unwrap()[..],
            b"tok\n"
        );
        assert_eq!(
            &token(&reply(), Format::Header, "A365_TOKEN").unwrap()[..],
            b"Authorization: Bearer tok\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&token(&reply(), Format::Json, "A365_TOKEN").unwrap()).unwrap();
        assert_eq!(json["token"], "tok");
        assert_eq!(json["expires_at"], 1_900_000_000);
        assert_eq!(json["expires_at_rfc3339"], "2030-03-17T17:46:40Z");
        assert_eq!(json["scopes"][0], "openid");
        assert_eq!(json["profile"], "work");
        let mut quoted = reply();
        quoted.token = WireSecret::new(SecretString::from("a'b"));
        assert_eq!(
            &token(&quoted, Format::Env, "A365_TOKEN").unwrap()[..],
            b"export A365_TOKEN='a'\\''b'\nexport A365_PROFILE='work'\nexport A365_TOKEN_EXPIRES_AT=1900000000\n"
        );
    }

    #[test]
    fn every_env_value_is_quoted_for_the_shell() {
        let mut hostile = reply();
        hostile.profile = "x'; touch /tmp/pwned; '".into();
        let out = token(&hostile, Format::Env, "A365_TOKEN").unwrap();
        let expected = concat!(
            "export A365_TOKEN='tok'\n",
            r"export A365_PROFILE='x'\''; touch /tmp/pwned; '\'''",
            "\nexport A365_TOKEN_EXPIRES_AT=1900000000\n"
        );
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }

    #[test]
    fn powershell_values_are_single_quoted_with_quotes_doubled() {
        let mut hostile = reply();
        hostile.profile = "x'; Remove-Item C:\\ -Recurse; \u{2019}$(calc)".into();
        let out = token(&hostile, Format::Powershell, "A365_TOKEN").unwrap();
        let expected = concat!(
            "$env:A365_TOKEN = 'tok'\n",
            "$env:A365_PROFILE = 'x''; Remove-Item C:\\ -Recurse; \u{2019}\u{2019}$(calc)'\n",
            "$env:A365_TOKEN_EXPIRES_AT = '1900000000'\n"
        );
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }

    #[test]
    fn cmd_lines_or_a_refusal() {
        let out = token(&reply(), Format::Cmd, "A365_TOKEN").unwrap();
        let nexar = token(&reply(), Format::Env, "NEXAR_TOKEN").unwrap();
        assert!(nexar.starts_with(b"export NEXAR_TOKEN='tok'"));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "set \"A365_TOKEN=tok\"\r\nset \"A365_PROFILE=work\"\r\nset \"A365_TOKEN_EXPIRES_AT=1900000000\"\r\n"
        );
        for bad in ["a%PATH%", "a!b!", "a\"&calc", "a^b", "a\nb"] {
            let mut hostile = reply();
            hostile.profile = bad.into();
            let err = token(&hostile, Format::Cmd, "A365_TOKEN")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("profile name") && err.contains("powershell"),
                "{err}"
            );
        }
    }

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        assert_eq!(
            clean("read\x1b]0;pwned\x07", false),
            r"read\u{1b}]0;pwned\u{7}"
        );
        assert_eq!(clean("a\nb\rc", true), "a\nb\\u{d}c");
        assert_eq!(clean("a\nb", false), r"a\u{a}b");
        assert!(matches!(
            clean("plain", false),
            std::borrow::Cow::Borrowed(_)
        ));
        // C1 controls (a one-byte CSI on some terminals) too.
        assert_eq!(clean("\u{9b}2J", false), r"\u{9b}2J");
        // Bidi controls and other invisible format characters (an account
        // name that reads backwards, or hides a character) are shown too.
        assert_eq!(clean("ann\u{202e}nimda", false), r"ann\u{202e}nimda");
        for c in [
            '\u{202a}',
            '\u{2066}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{61c}',
            '\u{200b}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            let shown = clean(&format!("a{c}b"), false).into_owned();
            assert_eq!(shown, format!("a{}b", c.escape_unicode()), "{c:?}");
        }
        assert_eq!(clean("Zoë Ωmega 日本", false), "Zoë Ωmega 日本");
    }

    #[test]
    fn only_https_or_loopback_login_urls_are_opened() {
        for good in [
            "https://identity.nexar.com/connect/authorize?x=1",
            "http://127.0.0.1:3000/start/abc",
            "http://localhost:3000/start/abc",
            "http://[::1]:3000/start/abc",
        ] {
            assert!(safe_login_url(good), "{good}");
        }
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://evil.example/login",
            "http://127.0.0.1.evil.example/",
            "http://localhost@evil.example/",
            "https://x/ --flag",
            "-oProxyCommand=x",
            "https://",
        ] {
            assert!(!safe_login_url(bad), "{bad}");
        }
    }

    #[test]
    fn expiry_in_words() {
        assert_eq!(expires_in(-5), "expired");
        assert_eq!(expires_in(45), "45s");
        assert_eq!(expires_in(754), "12m 34s");
        assert_eq!(expires_in(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(expires_in(90_000), "1d 1h");
    }
}
