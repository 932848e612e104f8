//! Designer Cloud beyond renewal: the first API token made from a user's
//! name and password (used once, never kept), tokens tagged `a365:<profile>`,
//! a token created but never saved found and deleted, and the profile's own
//! headers on every request.

use std::process::Stdio;
use std::time::Duration;

use a365_token_server::{DESIGNER_USER, DesignerCreate, ServerConfig, TokenServer};

use crate::harness::{Env, bin, wait_until};

fn add_with_password(env: &Env, server: &TokenServer, password: &str) -> crate::harness::Out {
    let base = server.base_url();
    env.a365_with_stdin(
        &[
            "add",
            "dc",
            "--kind",
            "designer-cloud",
            "--base-url",
            &base,
            "--username",
            DESIGNER_USER.0,
            "--header",
            "x-alteryx-workspace-gid=ws-42",
            "--renew-lifetime",
            "1h",
            "--secrets-from",
            "-",
        ],
        format!(r#"{{"password":"{password}"}}"#).as_bytes(),
    )
}

#[test]
fn the_first_token_comes_from_a_username_and_password_used_once() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let out = add_with_password(&env, &server, DESIGNER_USER.1).ok();
    assert!(out.stderr.contains("added"), "{}", out.stderr);
    let first = env.token("dc");
    assert!(server.is_designer_token_live(&first));
    env.a365(&["refresh", "dc"]).ok();
    let second = env.token("dc");
    assert_ne!(second, first);

    let creates = server.designer_creates();
    assert_eq!(creates.len(), 2, "{creates:?}");
    assert_eq!(
        creates[0],
        DesignerCreate {
            description: Some("a365:dc".into()),
            workspace_gid: Some("ws-42".into()),
            basic: true,
        }
    );
    // A renewal's token also carries the tag saved before its create.
    let renewal = creates[1].description.as_deref().unwrap();
    let tag = renewal.strip_prefix("a365:dc #").expect(renewal);
    assert!(tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(creates[1].workspace_gid.as_deref(), Some("ws-42"));
    assert!(!creates[1].basic);
    // The first token is known by id, so it is deleted once replaced.
    assert!(wait_until(Duration::from_secs(5), || {
        !server.is_designer_token_live(&first)
    }));
    let stored = std::fs::read_to_string(env.credential_file("dc")).unwrap();
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    for kept in [&stored, &config] {
        assert!(
            !kept.contains(DESIGNER_USER.1),
            "the password is never kept"
        );
        assert!(!kept.contains(DESIGNER_USER.0), "nor the user name");
    }
    assert!(
        config.contains(r#"headers = { x-alteryx-workspace-gid = "ws-42" }"#),
        "{config}"
    );
}

#[test]
fn a_wrong_password_is_named_and_nothing_is_kept() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let out = add_with_password(&env, &server, "not-the-password").code(5);
    assert!(
        out.stderr.contains("refused the username or password"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-password"));
    env.a365(&["token", "dc"]).code(4);
}

#[test]
fn headers_are_checked_when_added() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let (_, out) = env.try_add_refresh("work", &server, &["--header", "x-a=b"]);
    assert!(
        out.code(8)
            .stderr
            .contains("headers are for designer-cloud")
    );
    let (_, out) = env.try_add_refresh("work", &server, &["--username", "me"]);
    let out = out.code(2);
    assert!(
        out.stderr.contains("designer-cloud profile only"),
        "{}",
        out.stderr
    );
    let base = server.base_url();
    for (header, says) in [
        ("Authorization=Bearer x", "sets itself"),
        ("x-api-key=k", "looks like a secret"),
    ] {
        let out = env
            .a365_with_stdin(
                &[
                    "add",
                    "dc",
                    "--kind",
                    "designer-cloud",
                    "--base-url",
                    &base,
                    "--header",
                    header,
                    "--secrets-from",
                    "-",
                ],
                br#"{"access_token":"t"}"#,
            )
            .code(8);
        assert!(out.stderr.contains(says), "{header}: {}", out.stderr);
    }
}

fn stored(env: &Env) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(env.credential_file("dc")).unwrap()).unwrap()
}

/// What a crash between a renewal's create and its save leaves.
struct Crashed {
    /// The token saved before the crash.
    first: String,
    /// The id of the token created but never saved.
    orphan: String,
    tag: String,
}

/// An agent renews `dc` once; then a create succeeds at the server, its
/// answer never comes, and the agent is killed meanwhile: the new token is
/// nowhere on this machine. No agent runs afterwards.
fn crash_mid_create(env: &Env, server: &TokenServer) -> Crashed {
    let agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    crate::providers::add_designer(env, server, &pasted);
    let first = env.token("dc");
    assert!(
        wait_until(Duration::from_secs(5), || stored(env)
            .get("creating")
            .is_none()),
        "the first renewal's tag is cleared once nothing is left behind"
    );
    let before = server.designer_live_ids();
    server.hold_designer_creates(true);
    let mut refresh = env
        .command(bin("a365"))
        .args(["refresh", "dc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || server
        .designer_tokens_created()
        == 2));
    let orphans: Vec<String> = server
        .designer_live_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    let tag = stored(env)["creating"].as_str().unwrap().to_owned();
    let creates = server.designer_creates();
    assert_eq!(
        creates.last().unwrap().description.as_deref(),
        Some(format!("a365:dc #{tag}").as_str()),
        "the tag was saved before the create was sent"
    );
    drop(agent.kill());
    let _ = refresh.wait();
    server.hold_designer_creates(false);
    Crashed {
        first,
        orphan: orphans[0].clone(),
        tag,
    }
}

#[test]
fn a_token_created_but_never_saved_is_deleted_after_the_crash() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    // Tokens of the same user this agent must never touch: one of another
    // machine's profile of the same name, and one described like ours
    // without a tag.
    let lifetime = Some(Duration::from_secs(600));
    let (_, theirs) = server.issue_designer_token_described(lifetime, "a365:dc #00000000000000ff");
    let (_, untagged) = server.issue_designer_token_described(lifetime, "a365:dc");
    let Crashed { first, orphan, .. } = crash_mid_create(&env, &server);

    let _agent = env.start_agent();
    assert_eq!(env.token("dc"), first, "the saved token is served");
    assert!(
        wait_until(Duration::from_secs(8), || !server
            .designer_live_ids()
            .contains(&orphan)),
        "the token created but never saved is deleted"
    );
    assert!(wait_until(Duration::from_secs(5), || stored(&env)
        .get("creating")
        .is_none()));
    assert_eq!(
        server.designer_tokens_created(),
        2,
        "nothing new is created"
    );
    let live = server.designer_live_ids();
    assert!(
        live.contains(&theirs) && live.contains(&untagged),
        "{live:?}"
    );
    assert!(server.is_designer_token_live(&first));
    assert_eq!(env.token("dc"), first);
}

/// A deployment without the listing (404): the agent says once what it
/// could not look for, forgets the tag instead of asking forever, and
/// serves on.
#[test]
fn without_the_listing_the_tag_is_dropped_with_one_warning() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let Crashed {
        first, orphan, tag, ..
    } = crash_mid_create(&env, &server);
    server.fail_designer_listing(Some(404));
    let agent = env.start_agent();
    assert_eq!(env.token("dc"), first);
    assert!(wait_until(Duration::from_secs(5), || stored(&env)
        .get("creating")
        .is_none()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.token("dc"), first);
    let (_, log) = agent.terminate();
    let warned = format!("described \"a365:dc #{tag}\"");
    assert_eq!(log.matches(&warned).count(), 1, "{log}");
    assert!(
        server.designer_live_ids().contains(&orphan),
        "nothing was deleted blind"
    );
}

/// `a365 remove` while a tag is pending and the listing fails: the current
/// token is still deleted, and the message names the description of the
/// token that may be left.
#[test]
fn remove_with_a_pending_tag_names_what_may_be_left() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let Crashed { first, tag, .. } = crash_mid_create(&env, &server);
    server.fail_designer_listing(Some(500));
    let _agent = env.start_agent();
    assert_eq!(env.token("dc"), first);
    assert!(
        stored(&env).get("creating").is_some(),
        "a 500 keeps the tag"
    );
    let out = env.a365(&["remove", "dc"]).ok();
    assert!(
        out.stderr
            .contains(&format!("described \"a365:dc #{tag}\"")),
        "{}",
        out.stderr
    );
    assert!(
        !server.is_designer_token_live(&first),
        "the current token is deleted"
    );
}

/// Over plain HTTP (loopback), `a365 add --username` says so before the
/// password leaves, and names what really travels there: the password and
/// the API token (not a client secret or refresh token).
#[test]
fn the_plain_http_note_comes_before_the_password_is_sent_and_names_it() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    // The create is answered never: whatever `add` printed by the time it
    // arrives was printed before the password was sent.
    server.hold_designer_creates(true);
    let base = server.base_url();
    let mut child = env
        .command(bin("a365"))
        .args([
            "add",
            "dc",
            "--kind",
            "designer-cloud",
            "--base-url",
            &base,
            "--username",
            DESIGNER_USER.0,
            "--secrets-from",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let password = format!(r#"{{"password":"{}"}}"#, DESIGNER_USER.1);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&said);
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    assert!(wait_until(Duration::from_secs(10), || !server
        .designer_creates()
        .is_empty()));
    // The note is written before the password is sent; the reader thread
    // may still be catching up with the pipe.
    wait_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&said.lock().unwrap()).contains("API token")
    });
    let before = String::from_utf8_lossy(&said.lock().unwrap()).into_owned();
    let _ = child.kill();
    let _ = child.wait();
    server.hold_designer_creates(false);
    assert!(
        before.contains("is plain HTTP")
            && before.contains("password")
            && before.contains("API token"),
        "the note, before the password was sent: {before:?}"
    );
    assert!(
        !before.contains("client secret") && !before.contains("refresh token"),
        "names what really travels: {before:?}"
    );
}
