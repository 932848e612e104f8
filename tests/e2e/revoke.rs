//! `a365 remove` ends the credential at the provider (RFC 7009 for
//! refresh tokens, a delete for Designer Cloud tokens) unless
//! `--keep-remote`, and deletes the local secrets whether or not that
//! worked, saying which.

use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::Env;

fn server() -> TokenServer {
    TokenServer::start(ServerConfig::default()).unwrap()
}

/// Adds `work` with the server's revocation endpoint; the refresh token
/// held after the first (rotating) exchange.
fn add_with_revocation(env: &Env, server: &TokenServer) -> String {
    let url = server.revocation_url();
    let (_, out) = env.try_add_refresh("work", server, &["--revocation-url", &url]);
    out.ok();
    env.stored_refresh_token("work").unwrap()
}

fn revocations(server: &TokenServer) -> Vec<a365_token_server::RecordedRequest> {
    let all = server.recorded();
    all.into_iter()
        .filter(|r| r.grant_type == "revocation")
        .collect()
}

#[test]
fn remove_revokes_the_refresh_token_at_the_provider() {
    let server = server();
    let env = Env::new();
    let _agent = env.start_agent();
    let held = add_with_revocation(&env, &server);
    assert!(server.is_refresh_token_valid(&held));

    let out = env.a365(&["remove", "work"]).ok();
    assert!(
        out.stderr
            .contains("its refresh token was revoked at 127.0.0.1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&held), "no token in the message");
    let sent = revocations(&server);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].refresh_token.as_deref(), Some(held.as_str()));
    assert_eq!(sent[0].client_id.as_deref(), Some("test-client"));
    assert_eq!(sent[0].status, 200);
    assert!(
        !server.is_refresh_token_valid(&held),
        "dead at the provider"
    );
    assert!(!env.credential_file("work").exists(), "and gone here");
    env.a365(&["token", "work"]).code(4);
}

#[test]
fn keep_remote_leaves_the_refresh_token_valid() {
    let server = server();
    let env = Env::new();
    let _agent = env.start_agent();
    let held = add_with_revocation(&env, &server);
    let out = env.a365(&["remove", "work", "--keep-remote"]).ok();
    assert!(!out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(revocations(&server).is_empty());
    assert!(server.is_refresh_token_valid(&held));
    assert!(!env.credential_file("work").exists());
}

/// A revocation endpoint that fails (500) or never answers: the local
/// secrets are deleted anyway, and the message says the token is still
/// valid at the provider and why.
#[test]
fn a_failed_revocation_still_removes_the_profile_and_says_so() {
    let server = server();
    let env = Env::new();
    let agent = env.spawn_agent(&["--http-timeout", "2"]);
    agent.wait_ready(&env.socket);
    add_with_revocation(&env, &server);
    server.set_fault(Fault::Status(500), Some(1));
    let out = env.a365(&["remove", "work"]).ok();
    assert!(out.stderr.contains("warning: revoking"), "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    assert!(out.stderr.contains("stays valid"), "{}", out.stderr);
    env.a365(&["token", "work"]).code(4);

    let held = add_with_revocation(&env, &server);
    server.set_fault(Fault::Hang, None);
    let out = env.a365(&["remove", "work"]).ok();
    server.clear_fault();
    assert!(out.stderr.contains("warning: revoking"), "{}", out.stderr);
    assert!(server.is_refresh_token_valid(&held));
    env.a365(&["token", "work"]).code(4);
}

#[test]
fn without_a_revocation_endpoint_remove_says_the_token_stays_valid() {
    let server = server();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    let out = env.a365(&["remove", "work"]).ok();
    assert!(
        out.stderr.contains("no revocation endpoint is known"),
        "{}",
        out.stderr
    );
    assert!(revocations(&server).is_empty());
}

/// The wrong client secret at the revocation endpoint is reported as such.
#[test]
fn a_revocation_endpoint_that_refuses_the_client_is_named() {
    let server = server();
    let other = TokenServer::start(ServerConfig {
        clients: vec![("test-client".into(), "another-secret".into())],
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let url = other.revocation_url();
    env.try_add_refresh("work", &server, &["--revocation-url", &url])
        .1
        .ok();
    let out = env.a365(&["remove", "work"]).ok();
    assert!(
        out.stderr.contains("rejected the client id or secret"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--client-auth basic"), "{}", out.stderr);
}

#[test]
fn remove_deletes_the_designer_cloud_token() {
    let server = server();
    let env = Env::new();
    let _agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    crate::providers::add_designer(&env, &server, &pasted);
    let current = env.token("dc");
    assert!(server.is_designer_token_live(&current));
    let out = env.a365(&["remove", "dc"]).ok();
    assert!(
        out.stderr.contains("was deleted in Designer Cloud"),
        "{}",
        out.stderr
    );
    assert!(!server.is_designer_token_live(&current));
}

/// Settings that cannot apply are refused at `add` (exit 8).
#[test]
fn a_revocation_url_is_checked_when_added() {
    let server = server();
    let env = Env::new();
    let _agent = env.start_agent();
    let (_, out) = env.try_add_refresh(
        "work",
        &server,
        &[
            "--revocation-url",
            "http://revoke.example/connect/revocation",
        ],
    );
    let out = out.code(8);
    assert!(out.stderr.contains("plain http"), "{}", out.stderr);
    let out = env
        .a365_with_stdin(
            &[
                "add",
                "cc",
                "--kind",
                "client-credentials",
                "--realm",
                "nexar",
                "--client-id",
                "id",
                "--revocation-url",
                "https://identity.nexar.com/connect/revocation",
                "--secrets-from",
                "-",
            ],
            br#"{"client_secret":"s"}"#,
        )
        .code(8);
    assert!(
        out.stderr.contains("revocation_url is for"),
        "{}",
        out.stderr
    );
}
