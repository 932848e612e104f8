//! Server-chosen text that may quote the request it answers: a token
//! server's `error_description` reaches the agent's log, `status`, `a365`'s
//! errors, `watch`, the event hook and the token socket, so a server that
//! echoes the form would spread the client secret to all of them. What the
//! request carried is cut out before anything is shown.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The shortest piece of a secret cut out wherever it appears (a shorter
/// secret is cut out whole).
const MIN_PIECE: usize = 8;
/// How much of the server's text is searched; more is never shown anyway.
const MAX_READ: usize = 1024;
/// What stands where a secret was.
const HIDDEN: &str = "[hidden]";

/// `text` with every piece of `sent` (the secrets the request carried)
/// that is `MIN_PIECE` bytes or longer, or a whole shorter secret, replaced
/// by `[hidden]` — also in their form-urlencoded and base64 forms, in any
/// case — then control characters escaped and the result cut to
/// `max_chars` characters.
pub fn describe(text: &str, sent: &[&str], max_chars: usize) -> String {
    let mut end = text.len().min(MAX_READ);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut hide = vec![false; end];
    if end < text.len() {
        // A secret cut in two by the limit leaves a piece too short to
        // recognise: drop what could be one.
        let from = end.saturating_sub(MIN_PIECE - 1);
        hide[from..].fill(true);
    }
    let bytes = &text.as_bytes()[..end];
    for secret in sent.iter().filter(|s| !s.is_empty()) {
        for form in forms(secret.as_bytes()) {
            mark(bytes, &form, &mut hide);
        }
    }
    let mut out = String::new();
    let mut hidden = false;
    for (at, c) in text[..end].char_indices() {
        if hide[at..at + c.len_utf8()].iter().any(|h| *h) {
            if !hidden {
                out.push_str(HIDDEN);
            }
            hidden = true;
            continue;
        }
        hidden = false;
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    match out.char_indices().nth(max_chars) {
        Some((at, _)) => {
            out.truncate(at);
            out.push('…');
            out
        }
        None => out,
    }
}

/// The forms a secret travels in: as is, form-urlencoded (`+` or `%20` for
/// a space), and base64 (standard and URL-safe) of each, at every byte
/// alignment, so that it is also found inside a longer encoded value such as
/// HTTP Basic's `base64(id:secret)`.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let encoded = form_urlencode(secret);
    let mut forms = vec![
        secret.to_vec(),
        encoded.replace('+', "%20").into_bytes(),
        encoded.clone().into_bytes(),
    ];
    for raw in [secret, encoded.as_bytes()] {
        for offset in 0..3 {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(raw);
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let text = engine.encode(&padded);
                // The first characters carry the padding's bits, the last
                // may carry the next byte's: only the middle is the secret's.
                let skip = if offset == 0 { 0 } else { 3 };
                let keep = text.len().saturating_sub(1);
                if keep > skip {
                    forms.push(text.as_bytes()[skip..keep].to_vec());
                }
            }
        }
    }
    forms.retain(|f| !f.is_empty());
    forms
}

/// `application/x-www-form-urlencoded`, as a form body carries a value.
fn form_urlencode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Marks in `hide` every run of `text` that is a piece of `form` at least
/// `MIN_PIECE` long (or all of a shorter `form`), in any ASCII case.
fn mark(text: &[u8], form: &[u8], hide: &mut [bool]) {
    let least = MIN_PIECE.min(form.len());
    for start in 0..text.len() {
        let mut longest = 0;
        for from in 0..form.len() {
            let same = text[start..]
                .iter()
                .zip(&form[from..])
                .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                .count();
            longest = longest.max(same);
        }
        if longest >= least {
            hide[start..start + longest].fill(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Sx9+/ q&Z%-s3cr3t.value";

    #[test]
    fn a_quoted_secret_is_hidden_in_every_form_and_the_rest_is_kept() {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("id:{SECRET}"));
        for quoted in [
            SECRET.to_owned(),
            SECRET.to_ascii_uppercase(),
            "Sx9%2B%2F+q%26Z%25-s3cr3t.value".to_owned(),
            "Sx9%2b%2f%20q%26z%25-s3cr3t.value".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(SECRET),
            base64::engine::general_purpose::URL_SAFE.encode(SECRET),
            basic,
            SECRET[3..14].to_owned(),
        ] {
            let text = format!("revoked by an administrator; secret={quoted}; ask them");
            let shown = describe(&text, &[SECRET, "rt-1234567890"], 200);
            assert!(
                shown.starts_with("revoked by an administrator; secret="),
                "{shown}"
            );
            // A base64 form may keep its last character (a few bits).
            assert!(
                shown.contains("[hidden]") && shown.ends_with("; ask them"),
                "{shown}"
            );
            for piece in SECRET
                .as_bytes()
                .windows(MIN_PIECE)
                .chain(quoted.as_bytes().windows(MIN_PIECE))
            {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!shown.contains(piece), "{quoted}: {shown}");
            }
        }
    }

    #[test]
    fn short_secrets_whole_control_characters_escaped_length_cut() {
        assert_eq!(
            describe("code abc used", &["abc"], 200),
            "code [hidden] used"
        );
        assert_eq!(
            describe("a\x1b[2J\r\nb", &[], 200),
            r"a\u{1b}[2J\u{d}\u{a}b"
        );
        let long = "x".repeat(5000);
        let shown = describe(&long, &[], 200);
        assert_eq!(shown.chars().count(), 201);
        assert!(shown.ends_with('…'));
        // A secret cut in two by the read limit leaves no short piece.
        let text = format!("{}{SECRET}", "y".repeat(MAX_READ - 5));
        let shown = describe(&text, &[SECRET], 2000);
        assert!(!shown.contains("Sx9+"), "{shown}");
        assert_eq!(describe("plain words", &[SECRET, ""], 200), "plain words");
    }
}
