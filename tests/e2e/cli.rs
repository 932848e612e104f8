//! The command line's contract: exit codes and messages.

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, bin};

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    env.a365(&["token", "--format", "yaml"]).code(2);
    env.a365(&["frobnicate"]).code(2);
    // Secrets never come from argv, and without a terminal there is no prompt.
    let out = env
        .a365(&[
            "add",
            "x",
            "--kind",
            "refresh",
            "--realm",
            "altium365",
            "--client-id",
            "c",
        ])
        .code(2);
    assert!(out.stderr.contains("--secrets-from"), "{out:?}");
}

#[test]
fn no_agent_exits_3_and_says_how_to_start_one() {
    let env = Env::new();
    let out = env.a365(&["token", "work"]).code(3);
    assert!(
        out.stderr.contains(&env.socket.display().to_string()),
        "{out:?}"
    );
}

#[test]
fn unknown_profile_exits_4_and_lists_the_profiles() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.a365(&["token"]).code(4);
    env.add_refresh("work", &server);
    let out = env.a365(&["token", "play"]).code(4);
    assert!(
        out.stderr.contains("play") && out.stderr.contains("work"),
        "{out:?}"
    );
    // A365_PROFILE picks the profile.
    let mut cmd = env.command(crate::harness::bin("a365"));
    let out = cmd
        .args(["token"])
        .env("A365_PROFILE", "play")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn invalid_profiles_exit_8_with_the_reason() {
    let env = Env::new();
    let _agent = env.start_agent();
    let secrets = br#"{"client_secret":"s","refresh_token":"r"}"#;
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "add",
                "a",
                "--kind",
                "refresh",
                "--token-url",
                "http://example.com/token",
                "--client-id",
                "c",
            ],
            "https",
        ),
        (
            &[
                "add",
                "b",
                "--kind",
                "refresh",
                "--realm",
                "mars",
                "--client-id",
                "c",
            ],
            "unknown realm",
        ),
        (
            &[
                "add",
                "../c",
                "--kind",
                "refresh",
                "--realm",
                "altium365",
                "--client-id",
                "c",
            ],
            "profile name",
        ),
    ];
    for (args, reason) in cases {
        let out = env
            .a365_with_stdin(&[args, &["--secrets-from", "-"]].concat(), secrets)
            .code(8);
        assert!(out.stderr.contains(reason), "{reason}: {out:?}");
    }
    assert!(
        !env.config_file().exists()
            || !std::fs::read_to_string(env.config_file())
                .unwrap()
                .contains("[profiles.")
    );
}

#[test]
fn add_writes_the_config_and_remove_deletes_everything() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.config_file(),
        "# my comment\nstore = \"file\" # the default\n",
    )
    .unwrap();
    env.add_refresh("work", &server);
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.starts_with("# my comment\nstore = \"file\" # the default\n"),
        "{config}"
    );
    assert!(
        config.contains("[profiles.work]") && config.contains("client_id = \"test-client\""),
        "{config}"
    );
    assert!(
        !config.contains("test-secret"),
        "no secret in the config: {config}"
    );
    assert!(env.credential_file("work").exists());

    env.a365(&["remove", "work"]).ok();
    assert!(!env.credential_file("work").exists());
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.contains("# my comment") && !config.contains("[profiles.work]"),
        "{config}"
    );
    env.a365(&["token", "work"]).code(4);
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let env = Env::new();
    for (shell, marker) in [
        ("bash", "_a365()"),
        ("zsh", "#compdef a365"),
        ("fish", "complete -c a365"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = env.a365(&["completions", shell]).ok();
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(
            out.stdout.contains("login"),
            "{shell} knows the subcommands"
        );
    }
    let man = env.a365(&["man"]).ok();
    assert!(man.stdout.contains(".TH a365 1"), "{}", man.stdout);
    let dir = env.path("man");
    env.a365(&["man", "--out-dir", dir.to_str().unwrap()]).ok();
    assert!(dir.join("a365-token.1").exists());
    assert!(dir.join("a365-store-migrate.1").exists());
}

#[test]
fn format_env_is_safe_to_eval_in_a_shell() {
    let session = crate::harness::Session::start(a365_token_server::ServerConfig::default());
    let env = &session.env;
    let token = env.token("work");
    let out = env
        .command("sh")
        .args([
            "-c",
            &format!(
                "eval \"$({} token work --format env)\" && printf '%s|%s|%s' \"$A365_TOKEN\" \"$A365_PROFILE\" \"$A365_TOKEN_EXPIRES_AT\"",
                crate::harness::bin("a365").display()
            ),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<&str> = text.split('|').collect();
    assert_eq!(parts[0], token);
    assert_eq!(parts[1], "work");
    assert!(parts[2].parse::<i64>().unwrap() > 1_700_000_000);
}

/// More profiles than one message can describe: `status` pages through
/// them on one connection and shows every profile once, in name order; a
/// JSON plugin asking `status_page` gets pages within the line limit.
#[test]
fn status_shows_hundreds_of_profiles() {
    use std::io::{BufRead, Write};
    const PROFILES: usize = 600;
    let env = Env::new();
    let agent = env.start_agent();
    // A JWT that expires in 2100, with a few scopes to give each status weight.
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsInNjb3BlIjpbImEzNjU6cmVxdWlyZW1lbnRzIiwiYTM2NTp3b3Jrc3BhY2U6MTIzNDU2NzgtMTIzNC0xMjM0LTEyMzQtMTIzNDU2Nzg5YWJjIiwiZGVzaWduLnJlYWQiXX0.c2ln";
    let stream = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let mut reader = std::io::BufReader::new(&stream);
    for i in 0..PROFILES {
        let add = serde_json::json!({"version": 1, "request": {"add_profile": {
            "name": format!("profile-{i:04}-with-a-longish-name"),
            "spec": {"kind": "static", "realm": "altium365", "store": "memory"},
            "secrets": {"access_token": token},
        }}});
        (&stream).write_all(format!("{add}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("\"done\""), "{line}");
    }
    let status = env.a365(&["status", "--json"]).ok().json();
    let names = crate::harness::names(&status);
    let expected: Vec<String> = (0..PROFILES)
        .map(|i| format!("profile-{i:04}-with-a-longish-name"))
        .collect();
    assert_eq!(names, expected);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["is_default"] == false),
        "none is the default among many without a configured one"
    );
    assert_eq!(
        status[0]["workspace"],
        "12345678-1234-1234-1234-123456789abc"
    );
    let table = env.a365(&["status"]).ok().stdout;
    assert_eq!(
        table.lines().count(),
        PROFILES + 1,
        "a header and a line each"
    );

    // JSON mode: pages stay under the 64 KiB line limit, and chain.
    let mut after = serde_json::Value::Null;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let ask = serde_json::json!({"version": 1, "request": {"status_page": {"after": after}}});
        (&stream).write_all(format!("{ask}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.len() < a365_proto::MAX_FRAME, "{} bytes", line.len());
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        let page = &answer["response"]["status_page"];
        seen += page["profiles"].as_array().unwrap().len();
        pages += 1;
        if page["next"].is_null() {
            break;
        }
        after = page["next"].clone();
    }
    assert_eq!(seen, PROFILES);
    assert!(pages > 1, "{pages} pages");
    assert!(!agent.log().contains("over the limit"), "{}", agent.log());
}

/// `a365 status | head -1`: a reader that went away ends the command
/// quietly (exit 0), as with `cat`; it used to panic in `print!`.
#[test]
fn a_closed_stdout_is_a_quiet_success() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    for args in [
        &["status"][..],
        &["token", "work"],
        &["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .command(bin("a365"))
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// Both `--version`s name the release and the commit they were built from
/// (this checkout's HEAD), apart from the protocol version.
#[test]
fn versions_name_the_release_and_the_commit() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    for (binary, name) in [("a365", "a365"), ("a365-agent", "a365-agent")] {
        let out = std::process::Command::new(bin(binary))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.trim(),
            format!("{name} {} ({head})", env!("CARGO_PKG_VERSION")),
            "a binary built from another commit? rebuild"
        );
    }
}

/// A token copied from a header (`Bearer eyJ…`) or with a line end: what
/// is stored is the token alone, and `a365 add` says what it removed
/// (before, `a365 token` printed `Bearer eyJ…` and `--format header` a
/// doubled `Bearer Bearer`).
#[test]
fn a_pasted_bearer_prefix_is_removed_and_said() {
    let env = Env::new();
    let _agent = env.start_agent();
    let exp = crate::harness::now_secs() as i64 + 30 * 86_400;
    let payload = crate::events::base64_url(&format!(r#"{{"exp":{exp}}}"#));
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
    let out = env
        .a365_with_stdin(
            &["add", "ci", "--kind", "static", "--secrets-from", "-"],
            format!("{{\"access_token\":\"Bearer {token}\\n\"}}").as_bytes(),
        )
        .ok();
    assert!(
        out.stderr.contains("removed a leading 'Bearer '"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&token), "{}", out.stderr);
    assert_eq!(env.token("ci"), token);
    let header = env.a365(&["token", "ci", "--format", "header"]).ok();
    assert_eq!(
        header.stdout.trim_end(),
        format!("Authorization: Bearer {token}")
    );
}
