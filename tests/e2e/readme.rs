//! What the README promises about settings and signals, each shown once:
//! `default_profile` and `A365_PROFILE`, `--secure`/`--no-secure`,
//! `expires_soon_days`, `--renew-lifetime`, and SIGHUP.

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, jwt_payload, now_secs, set_mode, wait_until};

/// `a365 token` without a name: `A365_PROFILE`, else `default_profile`,
/// else the only profile; with several and neither, it asks which.
#[test]
fn which_profile_a_token_comes_from() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("one", &server);
    let one = env.token("one");
    let only = env.a365(&["token"]).ok();
    assert_eq!(only.stdout.trim_end(), one, "the only profile");
    env.add_refresh("two", &server);
    let two = env.token("two");
    let out = env.a365(&["token"]).code(4);
    assert!(out.stderr.contains("which profile?"), "{}", out.stderr);
    let picked = crate::harness::Out::from(
        env.command(crate::harness::bin("a365"))
            .arg("token")
            .env("A365_PROFILE", "two")
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(picked.stdout.trim_end(), two, "A365_PROFILE");

    // default_profile in config.toml (read at start).
    drop(agent);
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    std::fs::write(
        env.config_file(),
        format!("default_profile = \"one\"\n{config}"),
    )
    .unwrap();
    let _agent = env.start_agent();
    assert_eq!(env.a365(&["token"]).ok().stdout.trim_end(), one);
    let status = env.a365(&["status", "--json"]).ok().json();
    let default: Vec<_> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["is_default"] == true)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(default, ["one"]);
}

/// `secure=1` goes with every token request of a profile added with
/// `--secure`, and `--no-secure` (the later flag wins) turns it off.
#[test]
fn secure_and_no_secure() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    for (name, flags, secure) in [
        ("on", &["--secure"][..], true),
        ("off", &["--secure", "--no-secure"], false),
    ] {
        env.try_add_refresh(name, &server, flags).1.ok();
        let last = server.recorded().pop().unwrap();
        assert_eq!(last.secure, secure, "{name}");
    }
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.contains("secure = true") && config.contains("secure = false"),
        "{config}"
    );
}

/// `expires_soon_days`: a static token is announced that many days
/// before it expires, not earlier.
#[test]
fn expires_soon_days_sets_when_a_static_token_is_announced() {
    let env = Env::new();
    let log = env.path("home/events.log");
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.config_file(),
        format!(
            "expires_soon_days = 2\non_event = 'printf \"%s %s\\n\" \"$A365_EVENT\" \"$A365_PROFILE\" >> {}'\n",
            log.display()
        ),
    )
    .unwrap();
    set_mode(&env.config_file(), 0o600);
    let _agent = env.start_agent();
    let add_static = |name: &str, days: i64| {
        let exp = now_secs() as i64 + days * 86_400;
        let payload = crate::events::base64_url(&format!(r#"{{"exp":{exp}}}"#));
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        env.a365_with_stdin(
            &["add", name, "--kind", "static", "--secrets-from", "-"],
            format!(r#"{{"access_token":"{token}"}}"#).as_bytes(),
        )
        .ok();
    };
    add_static("later", 3);
    add_static("soon", 1);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("expires-soon soon"))
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("expires-soon later"), "{text}");
}

/// `--renew-lifetime`: a renewed Designer Cloud token lives that long.
#[test]
fn renew_lifetime_sets_the_lifetime_of_renewed_designer_tokens() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    env.a365_with_stdin(
        &[
            "add",
            "dc",
            "--kind",
            "designer-cloud",
            "--base-url",
            &server.base_url(),
            "--renew-lifetime",
            "2h",
            "--secrets-from",
            "-",
        ],
        format!(r#"{{"access_token":"{pasted}"}}"#).as_bytes(),
    )
    .ok();
    let status = env.a365(&["status", "--json"]).ok().json();
    let left = status[0]["expires_at"].as_i64().unwrap() - now_secs() as i64;
    assert!((7_100..=7_200).contains(&left), "expires in {left} s");
}

/// SIGHUP (a closed terminal) does not stop a backgrounded agent.
#[test]
fn sighup_is_ignored() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("work", &server);
    agent.signal(rustix::process::Signal::HUP);
    assert!(wait_until(Duration::from_secs(5), || agent
        .log()
        .contains("SIGHUP ignored")));
    let token = env.token("work");
    assert!(jwt_payload(&token)["exp"].as_i64().is_some());
    env.a365(&["ping"]).ok();
}

/// `a365 default PROFILE` sets the default profile at the top of
/// config.toml (never inside a profile's table), at once and after a
/// restart; `a365 default` names it.
#[test]
fn the_default_profile_is_set_by_command() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("one", &server);
    env.add_refresh("two", &server);
    assert_ne!(env.a365(&["default"]).code, 0, "none yet");
    let out = env.a365(&["default", "two"]).ok();
    assert!(
        out.stderr.contains("'two' is the default profile"),
        "{}",
        out.stderr
    );
    assert_eq!(env.a365(&["default"]).ok().stdout, "two\n");
    let two = env.token("two");
    assert_eq!(env.a365(&["token"]).ok().stdout.trim_end(), two);
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    let key = config.find("default_profile = \"two\"").expect("written");
    assert!(
        key < config.find('[').unwrap(),
        "above every table: {config}"
    );
    env.a365(&["default", "nope"]).code(4);
    drop(agent);
    let _agent = env.start_agent();
    assert_eq!(
        env.a365(&["token"]).ok().stdout.trim_end(),
        env.token("two")
    );
}
