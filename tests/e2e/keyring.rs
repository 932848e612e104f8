//! The OS keyring store, against a real Secret Service (gnome-keyring on a
//! private session bus): default when it answers, never silently, rotation
//! through it, restarts from it, removal from it, and migration out of it.

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, wait_until};

fn server() -> TokenServer {
    TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(3600),
        ..ServerConfig::default()
    })
    .unwrap()
}

fn field(item: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(item).ok()?;
    value[name].as_str().map(str::to_owned)
}

#[test]
fn the_keyring_is_the_default_and_holds_rotated_tokens_across_restarts() {
    let Some(env) = Env::with_keyring() else {
        return;
    };
    let server = server();
    let agent = env.start_agent();
    // The log is read by a thread: give it a moment to catch up.
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .log()
            .contains("default store for new profiles store=keyring")),
        "{}",
        agent.log()
    );
    let (rt, out) = env.try_add_refresh("work", &server, &[]);
    let out = out.ok();
    assert!(
        out.stderr.contains("in the OS keyring (Secret Service"),
        "add says where the secret went: {}",
        out.stderr
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["store"], "keyring");

    // The exchange rotated the refresh token: the keyring item holds the
    // new one and the cached access token; no file was written.
    let item = env.keyring_item("work").expect("a keyring item");
    let stored_rt = field(&item, "refresh_token").unwrap();
    assert_ne!(stored_rt, rt);
    assert!(server.is_refresh_token_valid(&stored_rt));
    let token = env.token("work");
    assert_eq!(
        field(&item, "access_token").as_deref(),
        Some(token.as_str())
    );
    assert!(!env.credential_file("work").exists());
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(config.contains("store = \"keyring\""), "{config}");

    // A forced refresh rotates again, through the keyring.
    env.a365(&["refresh", "work"]).ok();
    let rotated = field(&env.keyring_item("work").unwrap(), "refresh_token").unwrap();
    assert_ne!(rotated, stored_rt);
    assert!(server.is_refresh_token_valid(&rotated));
    let token = env.token("work");

    // A restart serves the cached token from the keyring: no new request.
    let requests = server.requests();
    drop(agent.kill());
    let _agent = env.start_agent();
    assert_eq!(env.token("work"), token);
    assert_eq!(server.requests(), requests);

    // Removal deletes the keyring item.
    env.a365(&["remove", "work"]).ok();
    assert_eq!(env.keyring_item("work"), None);
}

#[test]
fn migrating_to_files_and_back_loses_nothing() {
    let Some(env) = Env::with_keyring() else {
        return;
    };
    let server = server();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    env.add_refresh("ci", &server);
    let token = env.token("work");
    let rt = field(&env.keyring_item("work").unwrap(), "refresh_token").unwrap();

    let out = env.a365(&["store", "migrate", "--to", "file"]).ok();
    assert!(
        out.stderr.contains("moved ci, work to the file store"),
        "{}",
        out.stderr
    );
    assert_eq!(env.keyring_item("work"), None, "the old copy is deleted");
    assert_eq!(env.keyring_item("ci"), None);
    assert_eq!(
        env.stored_refresh_token("work").as_deref(),
        Some(rt.as_str())
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["store"] == "file")
    );
    assert_eq!(env.token("work"), token, "still served, no new request");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(config.starts_with("store = \"file\""), "{config}");

    // New profiles follow the new default.
    env.add_refresh("new", &server);
    assert!(env.credential_file("new").exists());

    // One profile back to the keyring; a refresh then rotates it there.
    env.a365(&["store", "migrate", "--to", "keyring", "work"])
        .ok();
    assert!(!env.credential_file("work").exists());
    env.a365(&["refresh", "work"]).ok();
    let item = env.keyring_item("work").unwrap();
    assert!(server.is_refresh_token_valid(&field(&item, "refresh_token").unwrap()));
    assert!(
        env.credential_file("ci").exists(),
        "others stay where they were"
    );
}

#[test]
fn without_a_keyring_files_are_the_default_and_the_log_says_why() {
    let server = server();
    let env = Env::new();
    let agent = env.start_agent();
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .log()
            .contains("no OS keyring answered")),
        "{}",
        agent.log()
    );
    let (_, out) = env.try_add_refresh("work", &server, &[]);
    let out = out.ok();
    assert!(
        out.stderr
            .contains("in a plain file readable by your user only, not encrypted (")
            && out.stderr.contains("no OS keyring answered"),
        "{}",
        out.stderr
    );
    // Asking for the keyring explicitly is a clear error, not a fallback.
    let out = env
        .a365_with_stdin(
            &[
                "add",
                "other",
                "--kind",
                "static",
                "--store",
                "keyring",
                "--secrets-from",
                "-",
            ],
            br#"{"access_token":"tok"}"#,
        )
        .code(8);
    assert!(
        out.stderr
            .contains("cannot keep secrets in the keyring store")
            && out.stderr.contains("--store file"),
        "{}",
        out.stderr
    );
    let out = env.a365(&["store", "migrate", "--to", "keyring"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("nothing") || out.stderr.contains("cannot move"),
        "{}",
        out.stderr
    );
    assert!(env.credential_file("work").exists());
}
