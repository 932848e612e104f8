//! The library server, over real sockets: grants, client authentication,
//! JWTs. Faults are in `faults.rs`.
// Test helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod http;

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};
use http::{
    ID, SECRET, basic, client_credentials, jwt_header, jwt_payload, post, post_with, raw, refresh,
    start,
};

#[test]
fn refresh_rotates_and_the_old_token_is_dead_forever() {
    let server = start();
    assert!(server.token_url().starts_with("http://127.0.0.1:"));
    assert!(server.token_url().ends_with("/connect/token"));
    let old = server.issue_refresh_token(ID);
    assert!(server.is_refresh_token_valid(&old));

    let reply = refresh(&server, &old);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = reply.json();
    let new = body["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        body["scope"],
        "openid a365:requirements a365:workspace:6f1c2a7e-3b4d-4c5e-9f80-1a2b3c4d5e6f"
    );
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(server.last_access_token().as_deref(), Some(access));
    assert!(!server.is_refresh_token_valid(&old));
    assert!(server.is_refresh_token_valid(new));

    let again = refresh(&server, &old);
    assert_eq!(again.status, 400);
    assert_eq!(again.error(), "invalid_grant");
    assert!(again.json()["error_description"].is_string());
    // The new one still works, once.
    assert_eq!(refresh(&server, new).status, 200);
    assert_eq!(refresh(&server, new).error(), "invalid_grant");

    let recorded = server.recorded();
    assert_eq!(server.requests(), 4);
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400, 200, 400]);
    assert_eq!(recorded[1].refresh_token.as_deref(), Some(old.as_str()));
    assert_eq!(recorded[0].grant_type, "refresh_token");
    assert_eq!(recorded[0].client_id.as_deref(), Some(ID));
}

#[test]
fn without_rotation_the_refresh_token_stays_and_is_not_returned() {
    let server = TokenServer::start(ServerConfig {
        rotate: false,
        ..ServerConfig::default()
    })
    .unwrap();
    let rt = server.issue_refresh_token(ID);
    for _ in 0..2 {
        let reply = refresh(&server, &rt);
        assert_eq!(reply.status, 200);
        assert!(reply.json().get("refresh_token").is_none());
    }
    assert!(server.is_refresh_token_valid(&rt));
}

#[test]
fn bad_clients_are_invalid_client() {
    let server = TokenServer::start(ServerConfig {
        clients: vec![(ID.into(), SECRET.into()), ("other".into(), "pw".into())],
        ..ServerConfig::default()
    })
    .unwrap();
    let rt = server.issue_refresh_token(ID);
    let fields = |id, secret| {
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", id),
            ("client_secret", secret),
        ]
    };
    for (id, secret) in [(ID, "wrong"), ("nobody", SECRET)] {
        let reply = post(server.addr(), &fields(id, secret));
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(reply.error(), "invalid_client");
    }
    // Another client's refresh token is not a grant for this one.
    let reply = post(server.addr(), &fields("other", "pw"));
    assert_eq!(reply.error(), "invalid_grant");
    assert!(
        server.is_refresh_token_valid(&rt),
        "failures consume nothing"
    );

    // HTTP Basic works as well as form fields.
    let reply = post_with(
        server.addr(),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        &[basic(ID, SECRET)],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = post_with(
        server.addr(),
        &[("grant_type", "client_credentials")],
        &[basic(ID, "wrong")],
    );
    assert_eq!(reply.error(), "invalid_client");
}

#[test]
fn malformed_requests_are_rejected_and_still_counted() {
    let server = start();
    let auth = [("client_id", ID), ("client_secret", SECRET)];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields = auth.to_vec();
        fields.extend_from_slice(extra);
        post(server.addr(), &fields)
    };
    let reply = with(&[("grant_type", "password")]);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "unsupported_grant_type")
    );
    let reply = with(&[]);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "invalid_request")
    );
    let reply = with(&[("grant_type", "refresh_token")]);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "invalid_request")
    );
    let bytes = raw(
        server.addr(),
        "application/json",
        "{}",
        &[],
        Duration::from_secs(5),
    )
    .unwrap();
    let reply = http::parse(&bytes);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "invalid_request")
    );
    let reply = post(server.addr(), &[("grant_type", "client_credentials")]);
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (401, "invalid_client")
    );
    assert_eq!(server.requests(), 5);
}

#[test]
fn access_tokens_are_jwts_with_exp_iat_plus_lifetime_and_a_scope_array() {
    let server = start();
    server.set_lifetime(Duration::from_secs(90));
    let reply = client_credentials(&server);
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["expires_in"], 90);
    assert!(
        body.get("refresh_token").is_none(),
        "client credentials: no RT"
    );
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        jwt_header(token),
        serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "a365-test"})
    );
    let claims = jwt_payload(token);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 90);
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((iat - now).abs() <= 5);
    assert_eq!(
        claims["iss"].as_str().unwrap(),
        format!("http://{}", server.addr())
    );
    assert_eq!(claims["client_id"], ID);
    assert!(claims["sub"].is_string());
    assert_eq!(
        claims["scope"],
        serde_json::json!([
            "openid",
            "a365:requirements",
            "a365:workspace:6f1c2a7e-3b4d-4c5e-9f80-1a2b3c4d5e6f"
        ])
    );

    // Asked-for scopes win; every token is distinct.
    let reply = post(
        server.addr(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ID),
            ("client_secret", SECRET),
            ("scope", "supply.domain extra"),
        ],
    );
    let body = reply.json();
    assert_eq!(body["scope"], "supply.domain extra");
    let second = body["access_token"].as_str().unwrap();
    let claims2 = jwt_payload(second);
    assert_eq!(
        claims2["scope"],
        serde_json::json!(["supply.domain", "extra"])
    );
    assert_ne!(claims["jti"], claims2["jti"]);
    assert_ne!(token, second);
}

#[test]
fn secure_is_recorded() {
    let server = start();
    post(
        server.addr(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ID),
            ("client_secret", SECRET),
            ("secure", "1"),
        ],
    );
    client_credentials(&server);
    let recorded = server.recorded();
    assert!(recorded[0].secure);
    assert!(!recorded[1].secure);
}

#[test]
fn loopback_only_and_usable_from_async_code() {
    let refused = TokenServer::start(ServerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..ServerConfig::default()
    });
    assert!(refused.is_err());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async { TokenServer::start(ServerConfig::default()) });
    let server = server.unwrap();
    assert_eq!(client_credentials(&server).status, 200);
    drop(server);
}
