//! Designer Cloud beyond renewal: the first API token made from a user's
//! name and password (used once, never kept), tokens tagged `a365:<profile>`,
//! and the profile's own headers on every request.

use a365_token_server::{DESIGNER_USER, DesignerCreate, ServerConfig, TokenServer};

use crate::harness::Env;

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

    let tagged = |basic| DesignerCreate {
        description: Some("a365:dc".into()),
        workspace_gid: Some("ws-42".into()),
        basic,
    };
    assert_eq!(server.designer_creates(), [tagged(true), tagged(false)]);
    // The first token is known by id, so it is deleted once replaced.
    assert!(crate::harness::wait_until(
        std::time::Duration::from_secs(5),
        || { !server.is_designer_token_live(&first) }
    ));
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
