//! Reading secrets for `a365 add`: never from argv; from a JSON file or
//! stdin (`--secrets-from`), or a hidden prompt on a terminal.

use std::io::{IsTerminal, Read};
use std::path::Path;

use a365_proto::{Kind, SecretField, Secrets, WireSecret};
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::exit::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    access_token: Option<SecretString>,
    password: Option<SecretString>,
}

/// The most `--secrets-from` reads: secrets are a few KiB, and
/// `/dev/zero` must not fill the memory.
pub const MAX_SECRETS_BYTES: u64 = 64 * 1024;

/// Reads `--secrets-from FILE|-`, at most [`MAX_SECRETS_BYTES`]: a JSON
/// object, or for a kind with one secret that secret alone. A file others
/// can read gets a warning: its secrets may already be copied.
pub fn from_file(path: &Path, kind: Kind) -> Result<Secrets, Error> {
    let (what, buf) = read_bounded(path)?;
    let is_json = buf.trim_ascii_start().starts_with(b"{");
    match (is_json, kind.facts().secrets) {
        (false, [only]) => raw(&buf, only.field),
        (false, _) => Err(
            "not a JSON object: a file holding the secret alone serves kinds with one secret \
             (static, client-credentials, designer-cloud); this kind needs {\"client_secret\": \
             \"…\", \"refresh_token\": \"…\"}"
                .to_owned(),
        ),
        (true, _) => parse(&buf),
    }
    .map_err(|e| Error::Usage(format!("secrets from {what}: {e}")))
}

/// The one secret `--update-secret` replaces, from `--secrets-from`: the
/// secret alone, or a JSON object holding it (and nothing else).
pub fn from_file_one(path: &Path, field: SecretField) -> Result<Secrets, Error> {
    let (what, buf) = read_bounded(path)?;
    let secrets = match buf.trim_ascii_start().starts_with(b"{") {
        true => parse(&buf),
        false => raw(&buf, field),
    }
    .map_err(|e| Error::Usage(format!("secrets from {what}: {e}")))?;
    let (wanted, others) = match field {
        SecretField::ClientSecret => (
            &secrets.client_secret,
            [&secrets.refresh_token, &secrets.access_token],
        ),
        SecretField::RefreshToken => (
            &secrets.refresh_token,
            [&secrets.client_secret, &secrets.access_token],
        ),
        SecretField::AccessToken => (
            &secrets.access_token,
            [&secrets.client_secret, &secrets.refresh_token],
        ),
    };
    if wanted.is_none() || others.iter().any(|o| o.is_some()) || secrets.password.is_some() {
        return Err(Error::Usage(format!(
            "secrets from {what}: it must hold the {} alone",
            label_of(field)
        )));
    }
    Ok(secrets)
}

/// Where `field` goes in `secrets`.
fn slot(secrets: &mut Secrets, field: SecretField) -> &mut Option<WireSecret> {
    match field {
        SecretField::AccessToken => &mut secrets.access_token,
        SecretField::ClientSecret => &mut secrets.client_secret,
        SecretField::RefreshToken => &mut secrets.refresh_token,
    }
}

/// How a secret is named in messages.
fn label_of(field: SecretField) -> &'static str {
    match field {
        SecretField::ClientSecret => "client secret",
        SecretField::RefreshToken => "refresh token",
        SecretField::AccessToken => "access token",
    }
}

/// `--secrets-from FILE|-`'s bytes (and how to name where they came from).
fn read_bounded(path: &Path) -> Result<(String, Zeroizing<Vec<u8>>), Error> {
    // Sized once: growing would leave unzeroed copies behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRETS_BYTES as usize + 1));
    let (what, result) = if path == Path::new("-") {
        let stdin = std::io::stdin().lock();
        (
            "standard input".to_owned(),
            stdin.take(MAX_SECRETS_BYTES + 1).read_to_end(&mut buf),
        )
    } else {
        let shown = path.display().to_string();
        let read = std::fs::File::open(path).and_then(|file| {
            warn_if_shared(path, &file);
            file.take(MAX_SECRETS_BYTES + 1).read_to_end(&mut buf)
        });
        (shown, read)
    };
    result.map_err(|e| Error::Usage(format!("cannot read secrets from {what}: {e}")))?;
    if buf.len() as u64 > MAX_SECRETS_BYTES {
        return Err(Error::Usage(format!(
            "secrets from {what}: more than {} KiB, which no secret needs: is it the right file?",
            MAX_SECRETS_BYTES / 1024
        )));
    }
    Ok((what, buf))
}

/// A file holding one secret and nothing else (a line end may follow).
fn raw(bytes: &[u8], field: SecretField) -> Result<Secrets, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    if text.contains('\n') {
        return Err("more than one line: a file holding the secret alone holds one line".into());
    }
    let value = Some(WireSecret::new(SecretString::from(text.to_owned())));
    let mut secrets = Secrets::default();
    *slot(&mut secrets, field) = value;
    Ok(secrets)
}

/// Refuses characters the secret cannot hold: a bearer token is RFC
/// 6750's `b64token`; refresh tokens and client secrets are printable
/// ASCII (RFC 6749 Appendix A). Says where, never what.
pub fn check_characters(secrets: &Secrets) -> Result<(), Error> {
    let bearer = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let printable = |c: char| (' '..='~').contains(&c);
    for (what, field, allowed) in [
        (
            "access token",
            &secrets.access_token,
            &bearer as &dyn Fn(char) -> bool,
        ),
        ("refresh token", &secrets.refresh_token, &printable),
        ("client secret", &secrets.client_secret, &printable),
    ] {
        let Some(value) = field else { continue };
        if let Some((at, c)) = value
            .expose()
            .chars()
            .enumerate()
            .find(|(_, c)| !allowed(*c))
        {
            let class = match c {
                '\n' | '\r' => "a line break",
                ' ' | '\t' => "a space",
                c if c.is_control() => "a control character",
                c if !c.is_ascii() => "a non-ASCII character (a typographic quote or dash?)",
                _ => "a character a bearer token cannot hold",
            };
            return Err(Error::Usage(format!(
                "the {what} has {class} at position {}: was it copied whole, and only it?",
                at + 1
            )));
        }
    }
    Ok(())
}

/// Secrets in a file that others can read are no longer only ours.
fn warn_if_shared(path: &Path, file: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = file.metadata()
            && meta.is_file()
            && meta.mode() & 0o044 != 0
        {
            eprintln!(
                "a365: warning: {} is readable by other users (mode {:o}): they may have read these \
                 secrets. Delete it once the profile is added (`shred -u {}`), and keep secret \
                 files mode 600 (or pipe them: --secrets-from -)",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
}

/// Parses the JSON object; errors name fields and positions, never values.
fn parse(bytes: &[u8]) -> Result<Secrets, String> {
    let file: SecretsFile = serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // serde names an unknown field in backquotes; that is safe to show.
        match text.strip_prefix("unknown field ") {
            Some(rest) => format!(
                "unknown field {} (expected client_secret, refresh_token, access_token, password)",
                rest.split(',').next().unwrap_or("")
            ),
            None => format!(
                "expected a JSON object of strings (client_secret, refresh_token, access_token): \
                 error at line {} column {}",
                e.line(),
                e.column()
            ),
        }
    })?;
    Ok(Secrets {
        client_secret: file.client_secret.map(WireSecret::new),
        refresh_token: file.refresh_token.map(WireSecret::new),
        access_token: file.access_token.map(WireSecret::new),
        password: file.password.map(WireSecret::new),
        username: None,
    })
}

/// Prompts (hidden) for what `kind` needs, when stdin is a terminal; for
/// a Designer Cloud `username`, that user's password instead of a token.
pub fn prompt(kind: Kind, username: Option<&str>) -> Result<Secrets, Error> {
    require_terminal()?;
    let ask = |label: &str| ask_hidden(label).map(Some);

    let optional = |label: &str| -> Result<Option<WireSecret>, Error> {
        let value = Zeroizing::new(
            rpassword::prompt_password(format!("{label} (empty if none): "))
                .map_err(|e| Error::Usage(format!("cannot read {label}: {e}")))?,
        );
        Ok((!value.trim().is_empty())
            .then(|| WireSecret::new(SecretString::from(value.trim().to_owned()))))
    };
    let mut secrets = Secrets::default();
    if let Some(user) = username.filter(|_| kind.facts().takes_username) {
        secrets.password = ask(&format!(
            "Designer Cloud password for {user} (used once, not kept)"
        ))?;
        return Ok(secrets);
    }
    for asked in kind.facts().secrets {
        let value = match asked.optional {
            true => optional(asked.label)?,
            false => ask(asked.label)?,
        };
        *slot(&mut secrets, asked.field) = value;
    }
    Ok(secrets)
}

/// A hidden answer; an empty one (a paste that did not arrive) is asked
/// again, so that the next paste does not land in the shell.
fn ask_hidden(label: &str) -> Result<WireSecret, Error> {
    for _ in 0..3 {
        let value = Zeroizing::new(
            rpassword::prompt_password(format!("{label}: "))
                .map_err(|e| Error::Usage(format!("cannot read {label}: {e}")))?,
        );
        if !value.trim().is_empty() {
            return Ok(WireSecret::new(SecretString::from(value.trim().to_owned())));
        }
        eprintln!(
            "a365: {label} is empty; paste it again (nothing shows while you type; Ctrl-C \
                 stops)"
        );
    }
    Err(Error::Usage(format!("{label} is empty, three times")))
}

/// `--update-secret`'s one secret, asked for hidden.
pub fn prompt_one(field: SecretField, label: &str) -> Result<Secrets, Error> {
    require_terminal()?;
    let value = Some(ask_hidden(&format!("New {}", label.to_lowercase()))?);
    let mut secrets = Secrets::default();
    *slot(&mut secrets, field) = value;
    Ok(secrets)
}

/// What people paste: a token with the `Bearer ` of the header it was
/// copied from, or with spaces and a line end around it. Both are removed
/// (a stored `Bearer ` would be sent as `Bearer Bearer …`); what was
/// removed is said, never the token.
pub fn tidy(secrets: &mut Secrets) -> Vec<String> {
    let mut notes = Vec::new();
    for (what, field) in [
        ("access token", &mut secrets.access_token),
        ("refresh token", &mut secrets.refresh_token),
        ("client secret", &mut secrets.client_secret),
    ] {
        let Some(value) = field.as_ref() else {
            continue;
        };
        let text = value.expose();
        let mut tidied = text.trim();
        if what != "client secret"
            && tidied.len() > 7
            && tidied.is_char_boundary(7)
            && tidied[..7].eq_ignore_ascii_case("bearer ")
        {
            tidied = tidied[7..].trim_start();
            notes.push(format!(
                "removed a leading 'Bearer ' from the {what}: only the token itself is stored"
            ));
        } else if tidied.len() != text.len() {
            notes.push(format!("removed spaces or line ends around the {what}"));
        }
        if tidied.len() != text.len() {
            let kept = WireSecret::new(SecretString::from(tidied.to_owned()));
            *field = Some(kept);
        }
    }
    notes
}

/// Secrets are prompted for only on a terminal.
pub fn require_terminal() -> Result<(), Error> {
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Error::Usage(
        "no terminal to prompt for secrets: pass them with --secrets-from FILE (or - for stdin), \
         a JSON object like {\"client_secret\": \"…\", \"refresh_token\": \"…\"}"
            .into(),
    ))
}

/// Asks for a plain (not secret) value on the terminal; `None` if empty.
pub fn ask_plain(label: &str) -> Result<Option<String>, Error> {
    use std::io::Write;
    eprint!("{label}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::Usage(format!("cannot read {label}: {e}")))?;
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_bearer_prefix_and_spaces_are_removed_and_said() {
        let mut s =
            parse(br#"{"access_token":"Bearer eyJ.a.b\n","refresh_token":" rt-1 "}"#).unwrap();
        let notes = tidy(&mut s);
        assert_eq!(s.access_token.as_ref().unwrap().expose(), "eyJ.a.b");
        assert_eq!(s.refresh_token.as_ref().unwrap().expose(), "rt-1");
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("'Bearer '") && !notes[0].contains("eyJ"));
        // A client secret may start with anything: only spaces go.
        let mut s = parse(br#"{"client_secret":"bearer secret"}"#).unwrap();
        assert!(tidy(&mut s).is_empty());
        assert_eq!(s.client_secret.as_ref().unwrap().expose(), "bearer secret");
        let mut s = parse(br#"{"access_token":"Bearer"}"#).unwrap();
        assert!(tidy(&mut s).is_empty());
    }

    #[test]
    fn reads_the_known_fields() {
        let s = parse(br#"{"client_secret":"cs","refresh_token":"rt"}"#).unwrap();
        assert_eq!(s.client_secret.unwrap().expose(), "cs");
        assert_eq!(s.refresh_token.unwrap().expose(), "rt");
        assert!(s.access_token.is_none());
    }

    #[test]
    fn unknown_fields_are_named_and_values_never_shown() {
        let err = parse(br#"{"client_secret":"hunter2","refresh":"hunter3"}"#).unwrap_err();
        assert!(err.contains("`refresh`"), "{err}");
        assert!(!err.contains("hunter"), "{err}");
        let err = parse(br#"{"client_secret": 12345678}"#).unwrap_err();
        assert!(!err.contains("12345678"), "{err}");
        let err = parse(b"not json hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
