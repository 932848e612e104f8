//! Writes the committed seed corpus: `cargo run --example seed_corpus` in
//! fuzz/. Real-looking inputs, a few KB in all: binary frames and JSON lines
//! made by our own encoder, token endpoint answers and JWTs.

use std::path::Path;

use a365_proto::codec::{encode_request, encode_response};
use a365_proto::{
    AddProfile, Encoding, ErrorKind, Event, EventKind, Kind, ProfileSpec, ProfileStatus, Request,
    Response, Secrets, StoreKind, TokenReply, TokenRequest, WireSecret,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;

fn secret(s: &str) -> WireSecret {
    WireSecret::new(SecretString::from(s.to_owned()))
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "token",
            Request::Token(TokenRequest {
                profile: Some("work".into()),
                min_valid_ms: 300_000,
                scopes: vec!["a365:requirements".into(), "design.read".into()],
                workspace: None,
            }),
        ),
        ("status", Request::Status),
        (
            "add",
            Request::AddProfile(AddProfile {
                name: "gov".into(),
                spec: ProfileSpec {
                    kind: Kind::Refresh,
                    realm: Some("altium365-gov".into()),
                    client_id: Some("cid-123".into()),
                    scopes: vec!["openid".into(), "offline_access".into()],
                    secure: Some(true),
                    store: Some(StoreKind::File),
                    ..Default::default()
                },
                secrets: Secrets {
                    client_secret: Some(secret("s3cr3t")),
                    refresh_token: Some(secret("rt-0001")),
                    access_token: None,
                    ..Secrets::default()
                },
                replace: false,
                check_only: false,
                shared: false,
            }),
        ),
        (
            "refresh",
            Request::Refresh {
                profile: Some("nexar".into()),
            },
        ),
        (
            "login",
            Request::Login {
                profile: "design".into(),
                timeout_ms: 120_000,
                select_workspace: None,
            },
        ),
        (
            "migrate",
            Request::MigrateStore {
                to: StoreKind::Keyring,
                profile: None,
            },
        ),
        ("watch", Request::Watch { profile: None }),
    ]
}

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "token",
            Response::Token(TokenReply {
                profile: "work".into(),
                token: secret("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
                expires_at: Some(1_800_003_600),
                scopes: vec!["a365:workspace:0b6e3f1a-5c1d-4c7e-9f00-1234567890ab".into()],
            }),
        ),
        (
            "status",
            Response::Status(vec![ProfileStatus {
                name: "work".into(),
                kind: Kind::ClientCredentials,
                realm: Some("nexar".into()),
                token_url: None,
                state: "fresh".into(),
                expires_at: Some(1_800_003_600),
                next_refresh_at: Some(1_800_002_700),
                scopes: vec!["supply.domain".into()],
                workspace: None,
                last_error: None,
                store: "keyring".into(),
                scopes_not_granted: vec![],
                is_default: true,
                rotates: None,
                account: None,
                refreshed_by: None,
                client_auth: None,
                assumed_lifetime_secs: None,
                budget: vec![a365_proto::BudgetWindow {
                    secs: 1,
                    limit: 2,
                    used: 1,
                }],
            }]),
        ),
        (
            "error",
            Response::error(
                ErrorKind::NeedsReauth,
                "create a new token in Admin → Developer",
            ),
        ),
        (
            "pong",
            Response::Pong {
                protocol: 2,
                agent_version: "0.1.0".into(),
                pid: 4242,
            },
        ),
        (
            "event",
            Response::Event(Event {
                profile: "work".into(),
                kind: EventKind::Refreshed,
                expires_at: Some(1_800_003_600),
                message: "a new token is being served".into(),
            }),
        ),
    ]
}

fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(claims.as_bytes())
    )
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let wire = root.join("wire");
    let tokens = root.join("token_response");
    for dir in [&wire, &tokens] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
    }

    // One connection per request, and one carrying several in a row.
    let mut binary_stream = Vec::new();
    let mut json_stream = Vec::new();
    for (name, request) in requests() {
        for (encoding, tag) in [(Encoding::Binary, "bin"), (Encoding::Json, "json")] {
            let bytes = encode_request(&request, encoding).expect("encodes");
            if matches!(name, "token" | "add" | "login" | "migrate") {
                std::fs::write(wire.join(format!("request-{name}.{tag}")), &bytes[..])?;
            }
            match encoding {
                Encoding::Binary => binary_stream.extend_from_slice(&bytes),
                Encoding::Json => json_stream.extend_from_slice(&bytes),
            }
        }
    }
    std::fs::write(wire.join("requests.bin"), &binary_stream)?;
    std::fs::write(wire.join("requests.json"), &json_stream)?;
    for (name, response) in responses() {
        for (encoding, tag) in [(Encoding::Binary, "bin"), (Encoding::Json, "json")] {
            let bytes = encode_response(&response, encoding).expect("encodes");
            std::fs::write(wire.join(format!("response-{name}.{tag}")), &bytes[..])?;
        }
    }
    // What plugins write by hand, and what a stranger might send.
    for (name, bytes) in [
        (
            "hand-token.json",
            &b"{\"version\":1,\"request\":{\"token\":{}}}\n"[..],
        ),
        (
            "version-5.json",
            b"{\"version\":5,\"request\":\"status\"}\n",
        ),
        ("version-5.bin", &[0, 0, 0, 2, 5, 1]),
        // JSON of version 1 still decodes; binary of version 1 does not.
        ("version-1.bin", &[0, 0, 0, 2, 1, 1]),
        ("http.txt", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ] {
        std::fs::write(wire.join(name), bytes)?;
    }

    let access = jwt(
        r#"{"iss":"https://auth.altium.com","exp":1800003600,"iat":1800000000,"client_id":"cid-123","scope":["openid","a365:requirements","a365:workspace:0b6e3f1a-5c1d-4c7e-9f00-1234567890ab"]}"#,
    );
    let nexar = jwt(r#"{"exp":1800086400,"scope":"supply.domain design.read"}"#);
    let answers: Vec<(&str, String)> = vec![
        (
            "refresh-rotated",
            format!(
                "200\n{{\"access_token\":\"{access}\",\"expires_in\":3600,\"token_type\":\"Bearer\",\
                 \"refresh_token\":\"rt-0002\",\"scope\":\"openid a365:requirements\"}}"
            ),
        ),
        (
            "client-credentials-no-expires-in",
            format!("200\n{{\"access_token\":\"{nexar}\",\"token_type\":\"Bearer\"}}"),
        ),
        (
            "opaque",
            "200\n{\"access_token\":\"opaque-0123456789\",\"expires_in\":299.5}".into(),
        ),
        (
            "invalid-grant",
            "400\n{\"error\":\"invalid_grant\",\"error_description\":\"refresh token already used\"}"
                .into(),
        ),
        (
            "invalid-client",
            "401\n{\"error\":\"invalid_client\"}".into(),
        ),
        ("unauthorized-empty", "401\n".into()),
        ("invalid-scope", "400\n{\"error\":\"invalid_scope\"}".into()),
        ("rate-limited", "429 7\n{\"error\":\"slow_down\"}".into()),
        (
            "bad-gateway",
            "502 Wed, 21 Oct 2026 07:28:00 GMT\n<html><body>Bad Gateway</body></html>".into(),
        ),
        (
            "designer-cloud-created",
            format!(
                "201\n{{\"tokenValue\":\"{nexar}\",\"tokenInfo\":{{\"tokenId\":\"tok-17\",\
                 \"expiredAt\":\"2027-02-14T08:00:00Z\",\"description\":\"a365 renewal\"}}}}"
            ),
        ),
        (
            "designer-cloud-listed",
            "200\n{\"data\":[{\"tokenId\":\"tok-17\",\"description\":\"a365:dc #7\",\
             \"createdAt\":\"2027-01-15T08:00:00Z\",\"expiredAt\":\"2027-02-14T08:00:00Z\",\
             \"lastUsed\":null},{\"tokenId\":18,\"description\":\"\"}]}"
                .to_owned(),
        ),
        ("bare-jwt", access.clone()),
        // Regressions: times no clock reaches (exp once overflowed the agent's
        // arithmetic).
        (
            "far-times",
            r#"{"exp":-1e300,"iat":1e300,"scope":["openid"]}"#.into(),
        ),
        (
            "far-expires-in",
            "200\n{\"access_token\":\"x\",\"expires_in\":1e300}".into(),
        ),
        (
            "bare-claims",
            r#"{"exp":1.8e9,"iat":1799996400,"scope":"a365:workspace:abc design.read"}"#.into(),
        ),
    ];
    for (name, text) in answers {
        std::fs::write(tokens.join(name), text)?;
    }
    Ok(())
}
