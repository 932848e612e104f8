//! Whether an upstream's answer refuses the token, and whether a token may
//! go to an upstream at all (Altium's Gov Cloud and Commercial never mix).

/// Why an answer refuses the token (for the log and the event).
pub(crate) fn by_status(status: http::StatusCode) -> Option<&'static str> {
    (status == http::StatusCode::UNAUTHORIZED).then_some("401")
}

/// Nexar's answer to an expired or invalid token: a GraphQL error whose
/// `extensions.code` says so, whatever the HTTP status (often 200).
pub(crate) fn by_graphql(body: &[u8]) -> Option<&'static str> {
    const CODES: [&str; 2] = ["AuthExpiredToken", "AuthInvalidToken"];
    // Cheap first: almost every answer names neither.
    if !CODES
        .iter()
        .any(|c| body.windows(c.len()).any(|w| w == c.as_bytes()))
    {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    // An answer with data did something: sending it again could do it
    // twice (a mutation whose later field failed on its token).
    if value.get("data").is_some_and(|d| !d.is_null()) {
        return None;
    }
    let errors = value.get("errors")?.as_array()?;
    errors.iter().find_map(|e| {
        let code = e.get("extensions")?.get("code")?.as_str()?;
        CODES.into_iter().find(|c| *c == code)
    })
}

/// Whether `content_type` is JSON (GraphQL answers are
/// `application/json` or `application/graphql-response+json`).
pub(crate) fn is_json(content_type: Option<&http::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"))
}

/// A host of Altium's Gov Cloud.
pub(crate) fn is_gov_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "365-gov.altium.com" || host.ends_with(".365-gov.altium.com")
}

/// Whether `token` is a Gov Cloud token: it carries `secure`, or a Gov
/// token service issued it. A token that is not a JWT is not.
pub(crate) fn is_gov_token(token: &str) -> bool {
    a365_token::jwt::claims(token).is_some_and(|c| {
        c.secure
            || c.issuer
                .as_deref()
                .and_then(|iss| reqwest::Url::parse(iss).ok())
                .and_then(|u| u.host_str().map(is_gov_host))
                .unwrap_or(false)
    })
}

/// Why `token` must not go to an upstream that is (or is not) in the Gov
/// Cloud, if it must not.
pub(crate) fn partition(token: &str, gov_upstream: bool) -> Option<&'static str> {
    match (is_gov_token(token), gov_upstream) {
        (true, false) => Some(
            "the profile's token is an Altium Gov Cloud token, and this route's upstream is not \
             in the Gov Cloud: it is not sent there",
        ),
        (false, true) => Some(
            "this route's upstream is in Altium's Gov Cloud, and the profile's token is not a Gov \
             Cloud token: it is not sent there",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_token_errors() {
        let expired = br#"{"errors":[{"message":"x","extensions":{"code":"AuthExpiredToken"}}]}"#;
        assert_eq!(by_graphql(expired), Some("AuthExpiredToken"));
        let invalid = br#"{"data":null,"errors":[{"extensions":{"code":"AuthInvalidToken"}}]}"#;
        assert_eq!(by_graphql(invalid), Some("AuthInvalidToken"));
        // Named in data, not as an error code: not a refusal.
        assert_eq!(by_graphql(br#"{"data":{"s":"AuthExpiredToken"}}"#), None);
        assert_eq!(
            by_graphql(br#"{"errors":[{"extensions":{"code":"OTHER"}}]}"#),
            None
        );
        assert_eq!(by_graphql(b"AuthExpiredToken"), None);
        // Some of it was done: not sent again.
        let partial = br#"{"data":{"a":1},"errors":[{"extensions":{"code":"AuthExpiredToken"}}]}"#;
        assert_eq!(by_graphql(partial), None);
    }

    #[test]
    fn content_types() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/graphql-response+json"))));
        assert!(!is_json(Some(&v("text/html"))));
        assert!(!is_json(None));
    }

    #[test]
    fn gov_hosts() {
        assert!(is_gov_host("acme.365-gov.altium.com"));
        assert!(is_gov_host("auth.365-gov.altium.com."));
        assert!(!is_gov_host("acme.365.altium.com"));
        assert!(!is_gov_host("365-gov.altium.com.evil.example"));
        assert!(!is_gov_host("x365-gov.altium.com"));
    }
}
