//! The authorization-code grant with PKCE: `/connect/authorize` redirects
//! to the loopback redirect with a code, and the token endpoint redeems it
//! once, only with the right verifier and redirect.
#![allow(clippy::unwrap_used)]

mod http;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{ID, SECRET, get, post, start};
use sha2::Digest;

const REDIRECT: &str = "http://127.0.0.1:3999/login";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn authorize(server: &a365_token_server::TokenServer, scope: &str) -> String {
    authorize_with(server, scope, "consent")
}

fn authorize_with(server: &a365_token_server::TokenServer, scope: &str, prompt: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let query = http::form_encode(&[
        ("response_type", "code"),
        ("client_id", ID),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st4te"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("prompt", prompt),
        ("nonce", "n0nce"),
    ]);
    let reply = get(server.addr(), &format!("/connect/authorize?{query}"));
    assert_eq!(reply.status, 302, "{reply:?}");
    let location = reply.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    assert!(location.ends_with("&state=st4te"), "{location}");
    location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

fn redeem(server: &a365_token_server::TokenServer, code: &str, verifier: &str) -> http::Reply {
    post(
        server.addr(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", ID),
            ("client_secret", SECRET),
            ("code_verifier", verifier),
        ],
    )
}

#[test]
fn a_wrong_verifier_is_rejected_and_burns_the_code() {
    let server = start();
    let code = authorize(&server, "openid offline_access");
    let reply = redeem(
        &server,
        &code,
        "a-wrong-verifier-that-is-long-enough-to-be-valid-1234",
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), "invalid_grant");
    // Even the right verifier cannot use a code after a failed attempt.
    assert_eq!(redeem(&server, &code, VERIFIER).error(), "invalid_grant");
}

#[test]
fn the_right_verifier_gets_tokens_once_and_a_refresh_token_only_offline() {
    let server = start();
    let code = authorize(&server, "openid design.domain offline_access");
    let reply = redeem(&server, &code, VERIFIER);
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["scope"], "openid design.domain offline_access");
    assert!(server.is_refresh_token_valid(body["refresh_token"].as_str().unwrap()));
    assert_eq!(redeem(&server, &code, VERIFIER).error(), "invalid_grant");

    let code = authorize(&server, "openid");
    let body = redeem(&server, &code, VERIFIER).json();
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");

    // OpenID Connect Core §11: offline_access only with prompt=consent.
    let code = authorize_with(&server, "openid offline_access", "login");
    let body = redeem(&server, &code, VERIFIER).json();
    assert_eq!(body["scope"], "openid", "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[test]
fn authorize_refuses_plain_pkce_and_foreign_redirects() {
    let server = start();
    let query = http::form_encode(&[
        ("response_type", "code"),
        ("client_id", ID),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", VERIFIER),
        ("code_challenge_method", "plain"),
    ]);
    let reply = get(server.addr(), &format!("/connect/authorize?{query}"));
    assert_eq!(reply.status, 302);
    assert!(
        reply
            .header("location")
            .unwrap()
            .contains("error=invalid_request")
    );
    let query = http::form_encode(&[
        ("response_type", "code"),
        ("client_id", ID),
        ("redirect_uri", "https://evil.example/cb"),
    ]);
    assert_eq!(
        get(server.addr(), &format!("/connect/authorize?{query}")).status,
        400
    );
}

/// An `openid` request without a `nonce` is refused, saying why.
#[test]
fn an_openid_request_without_a_nonce_is_refused() {
    let server = start();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let query = http::form_encode(&[
        ("response_type", "code"),
        ("client_id", ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "st4te"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let reply = get(server.addr(), &format!("/connect/authorize?{query}"));
    assert_eq!(reply.status, 302, "{reply:?}");
    let location = reply.header("location").unwrap();
    assert!(
        location.contains("error=invalid_request") && location.contains("nonce+required"),
        "{location}"
    );
}
