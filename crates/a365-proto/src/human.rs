//! Durations for people, the same in the agent's messages and `a365`'s
//! table.

/// "3h 12m", "45s", "800ms", "-2m 5s"; every `i64` (no recursion for the
/// sign: `-i64::MIN` does not exist).
pub fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{sign}{text}")
}

/// What `a365 add` says, before any secret is read or sent, when a
/// profile's requests go over plain HTTP (allowed to loopback only): any
/// local user who listens on that port first receives what travels there,
/// named for the kind. `with_password`: a Designer Cloud `--username`,
/// whose password creates the first API token.
pub fn plain_http_note(kind: crate::Kind, url: &str, with_password: bool) -> String {
    use crate::Kind;
    let secrets = match kind {
        Kind::Refresh => "the client secret and refresh token",
        Kind::ClientCredentials => "the client secret",
        Kind::AuthorizationCode => "the client secret, the login's code and the refresh token",
        Kind::DesignerCloud if with_password => {
            "the password given to --username and the API tokens"
        }
        Kind::DesignerCloud => "the API tokens",
        Kind::Static => "the token",
    };
    format!(
        "Note: {url} is plain HTTP: any local user who listens on that port first receives \
         {secrets} (fine for tests on a machine of your own; use https otherwise)"
    )
}

/// Whether `c` is a Unicode format character (general category Cf): bidi
/// controls (U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C), zero-width
/// and invisible characters, tags. Printed as is, they make a name read
/// backwards or hide what it is; printers show them escaped.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// `text` with control and format characters escaped (`\u{202e}`): for
/// names a token server chose, such as the account a login ended in.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_format_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    /// An account name after a login: a bidi override would make
    /// "ann\u{202e}nimda" read "annadmin"; it is shown escaped.
    #[test]
    fn names_show_their_invisible_characters() {
        assert_eq!(
            super::visible("ann\u{202e}nimda\u{200b}\x1b"),
            r"ann\u{202e}nimda\u{200b}\u{1b}"
        );
        assert_eq!(super::visible("Zoë O'Brien"), "Zoë O'Brien");
    }

    #[test]
    fn every_i64_has_words() {
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(1500), "1s");
        assert_eq!(human_ms(-1500), "-1s");
        assert_eq!(human_ms(754_000), "12m 34s");
        assert_eq!(human_ms((3 * 3600 + 12 * 60 + 5) * 1000), "3h 12m");
        assert_eq!(human_ms(90_000_000), "1d 1h");
        assert_eq!(human_ms(i64::MIN), "-106751991167d 7h");
        assert_eq!(human_ms(i64::MAX), "106751991167d 7h");
    }
}
