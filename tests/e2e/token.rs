//! Getting a token, in every format, and seeing it in `status`.

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, Session, jwt_payload, now_secs};

#[test]
fn add_a_refresh_profile_and_get_its_token() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());

    let token = env.a365(&["token", "work"]).ok();
    let issued = server
        .last_access_token()
        .expect("the server issued a token");
    assert_eq!(
        token.stdout,
        format!("{issued}\n"),
        "exactly the token and a newline"
    );
    assert_eq!(token.stderr, "");
    // The only profile is the default.
    assert_eq!(env.a365(&["token"]).ok().stdout, format!("{issued}\n"));

    let header = env.a365(&["token", "work", "--format", "header"]).ok();
    assert_eq!(header.stdout, format!("Authorization: Bearer {issued}\n"));

    let json = env.a365(&["token", "work", "--format", "json"]).ok().json();
    let claims = jwt_payload(&issued);
    assert_eq!(json["token"], issued.as_str());
    assert_eq!(json["profile"], "work");
    assert_eq!(json["expires_at"], claims["exp"]);
    let rfc3339 = json["expires_at_rfc3339"].as_str().unwrap();
    assert!(rfc3339.ends_with('Z') && rfc3339.contains('T'), "{rfc3339}");
    assert_eq!(json["scopes"], claims["scope"]);

    let status = env.a365(&["status", "--json"]).ok().json();
    let work = &status[0];
    assert_eq!(work["name"], "work");
    assert_eq!(work["kind"], "refresh");
    assert_eq!(work["state"], "fresh");
    assert_eq!(work["is_default"], true, "the only profile is the default");
    assert_eq!(work["expires_at"], claims["exp"]);
    assert_eq!(work["workspace"], "6f1c2a7e-3b4d-4c5e-9f80-1a2b3c4d5e6f");
    assert!(
        work["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "a365:requirements")
    );
    let exp = work["expires_at"].as_f64().unwrap();
    assert!(exp > now_secs() + 3000.0, "an hour-long token");
    assert_eq!(server.requests(), 1, "one exchange for all of that");

    let table = env.a365(&["status"]).ok().stdout;
    assert!(table.contains("work") && table.contains("fresh"), "{table}");
}

#[test]
fn exec_passes_the_token_in_the_environment_only() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let issued = server.last_access_token().unwrap();
    let out = env
        .a365(&[
            "exec",
            "work",
            "--",
            "sh",
            "-c",
            "printf '%s|%s' \"$A365_TOKEN\" \"$#\"",
            "x",
        ])
        .ok();
    assert_eq!(out.stdout, format!("{issued}|0"));
    let failing = env.a365(&["exec", "work", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failing.code, 7, "the command's exit status: {failing:?}");
}

#[test]
fn missing_scope_names_what_the_token_has() {
    let Session {
        server: _server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    env.a365(&["token", "--scope", "a365:requirements"]).ok();
    let out = env.a365(&["token", "--scope", "design.write"]).code(7);
    assert!(
        out.stderr.contains("design.write") && out.stderr.contains("a365:requirements"),
        "{out:?}"
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn static_profiles_serve_their_token_as_is() {
    let env = Env::new();
    let _agent = env.start_agent();
    // A JWT that expires in 2100.
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsInNjb3BlIjpbImEzNjU6cmVxdWlyZW1lbnRzIl19.c2ln";
    let secrets = format!(r#"{{"access_token":"{token}"}}"#);
    env.a365_with_stdin(
        &[
            "add",
            "lt",
            "--kind",
            "static",
            "--realm",
            "altium365",
            "--secrets-from",
            "-",
        ],
        secrets.as_bytes(),
    )
    .ok();
    assert_eq!(env.token("lt"), token);
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["expires_at"], 4_102_444_800i64);
    let refresh = env.a365(&["refresh", "lt"]).code(8);
    assert!(refresh.stderr.contains("static"), "{refresh:?}");

    // An expired one is refused at the door.
    let expired = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE2MDAwMDAwMDB9.c2ln";
    let secrets = format!(r#"{{"access_token":"{expired}"}}"#);
    let out = env
        .a365_with_stdin(
            &["add", "old", "--kind", "static", "--secrets-from", "-"],
            secrets.as_bytes(),
        )
        .code(8);
    assert!(out.stderr.contains("expired"), "{out:?}");
}

#[test]
fn secure_profiles_send_secure_1() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("plain", &server);
    let rt = server.issue_refresh_token("test-client");
    let secrets = format!(r#"{{"client_secret":"test-secret","refresh_token":"{rt}"}}"#);
    let url = server.token_url();
    env.a365_with_stdin(
        &[
            "add",
            "gov",
            "--kind",
            "refresh",
            "--token-url",
            &url,
            "--client-id",
            "test-client",
            "--secure",
            "--secrets-from",
            "-",
        ],
        secrets.as_bytes(),
    )
    .ok();
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    assert!(!recorded[0].secure, "secure=1 only where asked");
    assert!(recorded[1].secure, "secure=1 sent");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(config.contains("secure = true"), "{config}");
}

#[test]
fn the_memory_store_forgets_on_restart_and_says_so() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(env.config_file(), "store = \"memory\"\n").unwrap();
    let agent = env.start_agent();
    env.add_refresh("work", &server);
    env.a365(&["token", "work"]).ok();
    assert!(!env.credential_file("work").exists(), "nothing on disk");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["store"], "memory");
    agent.terminate();
    let _agent = env.start_agent();
    let out = env.a365(&["token", "work"]).code(5);
    assert!(out.stderr.contains("a365 add work --replace"), "{out:?}");
}

#[test]
fn a_guarantee_longer_than_tokens_live_costs_no_token_request() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    for _ in 0..5 {
        let out = env.a365(&["token", "work", "--min-valid", "2h"]).code(6);
        assert!(out.stderr.contains("cannot be met"), "{out:?}");
    }
    assert_eq!(
        server.requests(),
        1,
        "Nexar-style rate limits: nothing spent on a hopeless refresh"
    );
    env.a365(&["token", "work", "--min-valid", "30m"]).ok();
}
