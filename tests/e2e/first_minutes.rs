//! What a new user meets in the first ten minutes: an `add` interrupted
//! while it waits, a spent refresh token pasted again, a replacement the
//! server does not answer, a broken line in config.toml, one setting or
//! one secret changed alone, a corporate CA, a status that fits 80 columns.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, Out, bin, names, wait_until};

/// `a365 add NAME --kind refresh … --secrets-from -` with `rt`, started
/// and left running.
fn spawn_add(
    env: &Env,
    server: &TokenServer,
    name: &str,
    rt: &str,
    extra: &[&str],
) -> std::process::Child {
    let url = server.token_url();
    let mut child = env
        .command(bin("a365"))
        .args(["add", name, "--kind", "refresh", "--token-url", &url])
        .args(["--client-id", "test-client", "--secrets-from", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let secrets = serde_json::json!({"client_secret": "test-secret", "refresh_token": rt});
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(secrets.to_string().as_bytes()).unwrap();
    drop(stdin);
    child
}

/// Runs an `add` of `rt` that the server answers after 3 s, and presses
/// Ctrl-C (SIGINT) once the server has the request.
fn interrupted_add(env: &Env, server: &TokenServer, name: &str, rt: &str, extra: &[&str]) {
    server.set_fault(Fault::Delay(Duration::from_secs(3)), Some(1));
    let before = server.recorded().len();
    let mut child = spawn_add(env, server, name, rt, extra);
    assert!(wait_until(Duration::from_secs(10), || server
        .recorded()
        .len()
        > before));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the add was interrupted");
}

fn profiles(env: &Env) -> Vec<String> {
    let status = env.a365(&["status", "--json"]).ok().json();
    names(&status).into_iter().map(str::to_owned).collect()
}

#[test]
fn an_interrupted_add_keeps_only_what_succeeded_and_says_so() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let working_rt = env.add_refresh("work", &server);
    let config_before = std::fs::read_to_string(env.config_file()).unwrap();
    let stored = env.stored_refresh_token("work");
    assert_ne!(
        stored.as_deref(),
        Some(working_rt.as_str()),
        "rotated at add"
    );

    // A new profile whose token is refused after Ctrl-C: nothing is kept.
    interrupted_add(&env, &server, "new", "rt-nobody-issued", &[]);
    assert!(wait_until(Duration::from_secs(15), || !profiles(&env)
        .contains(&"new".to_owned())
        && env.a365(&["default", "work"]).stderr.contains("was undone")));
    assert!(!env.credential_file("new").exists());
    assert_eq!(
        std::fs::read_to_string(env.config_file())
            .unwrap()
            .matches("[profiles.")
            .count(),
        1
    );

    // A replacement refused after Ctrl-C: the working credential stays,
    // and nothing else changes the profile while its exchange is awaited.
    interrupted_add(&env, &server, "work", "rt-nobody-issued", &["--replace"]);
    let out = env.a365(&["set", "work", "scopes", "openid"]).code(6);
    assert!(
        out.stderr
            .contains("is waiting for the first exchange of a new credential"),
        "{out:?}"
    );
    assert!(wait_until(Duration::from_secs(15), || env
        .a365(&["default", "work"])
        .stderr
        .contains("keeps its earlier credential")));
    assert_eq!(env.stored_refresh_token("work"), stored);
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert_eq!(
        config.replace("default_profile = \"work\"\n", ""),
        config_before.replace("default_profile = \"work\"\n", "")
    );
    env.a365(&["refresh", "work"]).ok();

    // A new profile whose token comes after Ctrl-C: kept, and said.
    let good = server.issue_refresh_token("test-client");
    interrupted_add(&env, &server, "late", &good, &[]);
    assert!(wait_until(Duration::from_secs(15), || env
        .a365(&["default", "work"])
        .stderr
        .contains(
            "that was interrupted finished: its first exchange succeeded"
        )));
    assert!(profiles(&env).contains(&"late".to_owned()));
    env.token("late");
}

#[test]
fn a_spent_refresh_token_is_refused_before_it_is_sent() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let spent = env.add_refresh("work", &server);
    let working = env.stored_refresh_token("work").unwrap();
    let sent = server.recorded().len();
    for extra in [&[][..], &["--replace"][..]] {
        let name = if extra.is_empty() { "again" } else { "work" };
        let out = spawn_add(&env, &server, name, &spent, extra)
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{stderr}");
        assert!(
            stderr.contains("this refresh token is spent: profile 'work' sent it")
                && stderr.contains("Nothing was sent")
                && !stderr.contains(&spent),
            "{stderr}"
        );
    }
    assert_eq!(
        server.recorded().len(),
        sent,
        "the spent token was not sent"
    );
    assert_eq!(env.stored_refresh_token("work").unwrap(), working);
    assert!(!profiles(&env).contains(&"again".to_owned()));
}

#[test]
fn a_replacement_the_server_does_not_answer_keeps_the_working_credential() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.spawn_agent(&["--http-timeout", "2"]);
    _agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let stored = env.stored_refresh_token("work");
    let token = env.token("work");
    server.set_fault(Fault::Status(503), None);
    let new_rt = server.issue_refresh_token("test-client");
    let out = spawn_add(&env, &server, "work", &new_rt, &["--replace"])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("the new credential got no token")
            && stderr.contains("keeps its earlier credential"),
        "{stderr}"
    );
    server.clear_fault();
    assert_eq!(env.stored_refresh_token("work"), stored);
    assert_eq!(
        env.token("work"),
        token,
        "the working token is still served"
    );
    // The new refresh token was not spent: it can be added now.
    spawn_add(&env, &server, "work", &new_rt, &["--replace"])
        .wait()
        .unwrap()
        .success()
        .then_some(())
        .expect("the replacement works once the server answers");
}

#[test]
fn a_broken_table_in_config_toml_costs_that_profile_only() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("a", &server);
    env.add_refresh("b", &server);
    agent.terminate();
    // What the old hint led to: a top-level key appended to the file lands
    // in the last table.
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(env.config_file())
        .unwrap();
    writeln!(config, "default_profile = \"a\"").unwrap();
    drop(config);
    let _agent = env.start_agent();
    env.token("a");
    let out = env.a365(&["token", "b"]).code(4);
    assert!(
        out.stderr.contains("profile 'b' is not served")
            && out
                .stderr
                .contains("[profiles.b], key default_profile: unknown field")
            && out
                .stderr
                .contains("`a365 default PROFILE` sets it for you")
            && out.stderr.contains("line "),
        "{out:?}"
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    let b = &status
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "b")
        .unwrap();
    assert_eq!(b["state"], "broken");
    let out = env.a365(&["status"]).ok();
    assert!(
        out.stdout.contains("b: ") && out.stdout.contains("broken"),
        "{out:?}"
    );
    let out = env.a365(&["doctor", "b"]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("not served"), "{out:?}");
    env.a365(&["default", "a"]).ok();
    env.a365(&["remove", "b"]).ok();
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(!config.contains("[profiles.b]"), "{config}");
    assert_eq!(profiles(&env), ["a"]);
}

#[test]
fn a_syntax_error_in_config_toml_names_its_line() {
    let env = Env::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.config_file(),
        "store = \"file\"\n[profiles.a\nkind = \"static\"\n",
    )
    .unwrap();
    let (status, log) = env.spawn_agent(&[]).wait(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        log.contains("config.toml") && log.contains("line 2"),
        "{log}"
    );
    // The first command starts the agent, and says why it could not.
    let out = Out::from(
        env.command(bin("a365"))
            .arg("status")
            .env_remove("A365_NO_AUTOSTART")
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("exited at start-up (exit status: 1): ")
            && out
                .stderr
                .contains("config.toml is not valid: line 2: unclosed table"),
        "{out:?}"
    );
}

#[test]
fn one_setting_or_one_secret_changes_alone() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    let sent = server.recorded().len();
    let out = env
        .a365(&["set", "work", "scopes", "openid, offline_access"])
        .ok();
    assert!(out.stderr.contains("its credential is kept"), "{out:?}");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.contains("scopes = [\"openid\", \"offline_access\"]"),
        "{config}"
    );
    env.token("work");
    assert_eq!(server.recorded().len(), sent, "no exchange for a setting");
    let out = env.a365(&["set", "work", "kind", "static"]).code(8);
    assert!(out.stderr.contains("changes: realm, token_url"), "{out:?}");
    let out = env
        .a365(&["set", "work", "token_url", "http://auth.example/token"])
        .code(8);
    assert!(out.stderr.contains("plain http"), "{out:?}");
    env.a365(&["set", "nope", "scopes", "x"]).code(4);

    // One secret: a new refresh token alone, in a file holding just it.
    let new_rt = server.issue_refresh_token("test-client");
    let out = env
        .a365_with_stdin(
            &[
                "add",
                "work",
                "--update-secret",
                "refresh-token",
                "--secrets-from",
                "-",
            ],
            format!("{new_rt}\n").as_bytes(),
        )
        .ok();
    assert!(
        out.stderr
            .contains("the secret is updated; a token was obtained"),
        "{out:?}"
    );
    assert!(
        !server.is_refresh_token_valid(&new_rt),
        "it was used (and rotated)"
    );
    let kept = env.stored_refresh_token("work");
    // A refused one: the profile keeps what it had.
    let out = env
        .a365_with_stdin(
            &[
                "add",
                "work",
                "--update-secret",
                "refresh-token",
                "--secrets-from",
                "-",
            ],
            b"rt-nobody-issued",
        )
        .code(5);
    assert!(
        out.stderr.contains("keeps its earlier credential"),
        "{out:?}"
    );
    assert_eq!(env.stored_refresh_token("work"), kept);
    env.a365(&["refresh", "work"]).ok();
    // Settings and secrets do not mix.
    let out = env
        .a365(&[
            "add",
            "work",
            "--update-secret",
            "client-secret",
            "--realm",
            "nexar",
        ])
        .code(2);
    assert!(out.stderr.contains("cannot be used with"), "{out:?}");
}

#[test]
fn pasted_junk_is_refused_and_a_raw_token_file_is_read() {
    let env = Env::new();
    let _agent = env.start_agent();
    let add_static = |name: &str, input: &[u8]| {
        env.a365_with_stdin(
            &["add", name, "--kind", "static", "--secrets-from", "-"],
            input,
        )
    };
    // A file (here stdin) holding the token alone, with a line end.
    let out = add_static("raw", b"  Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.\n").ok();
    assert!(
        out.stderr.contains("removed a leading 'Bearer '"),
        "{out:?}"
    );
    assert_eq!(env.token("raw"), "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.");
    // A typographic quote from a chat window, a line break inside.
    for (junk, said) in [
        ("\u{201c}eyJ.abc\u{201d}", "a non-ASCII character"),
        ("eyJ.a\nbc", "more than one line"),
        ("{\"access_token\": \"eyJ.a bc\"}", "a space at position 6"),
    ] {
        let out = add_static("junk", junk.as_bytes()).code(2);
        assert!(
            out.stderr.contains(said) && !out.stderr.contains("abc"),
            "{junk}: {out:?}"
        );
    }
    // Kinds with two secrets still want JSON, and say so.
    let out = env
        .a365_with_stdin(
            &[
                "add",
                "two",
                "--kind",
                "refresh",
                "--token-url",
                "https://auth.example/token",
                "--client-id",
                "c",
                "--secrets-from",
                "-",
            ],
            b"rt-raw",
        )
        .code(2);
    assert!(
        out.stderr.contains("this kind needs {\"client_secret\""),
        "{out:?}"
    );
}

#[test]
fn status_fits_80_columns_and_shows_one_profile_in_detail() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work-altium-production", &server);
    env.add_refresh("nexar-ci", &server);
    env.a365_with_stdin(
        &["add", "fixed", "--kind", "static", "--secrets-from", "-"],
        b"opaque-token",
    )
    .ok();
    let out = env.a365(&["status"]).ok();
    for line in out.stdout.lines() {
        assert!(line.chars().count() <= 80, "{line:?}\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains("secrets in plain files"),
        "{}",
        out.stdout
    );
    let wide = env.a365(&["status", "--wide"]).ok();
    assert!(
        wide.stdout.contains("ROTATES") && wide.stdout.contains("SCOPES"),
        "{}",
        wide.stdout
    );
    let one = env.a365(&["status", "nexar-ci"]).ok();
    assert!(
        one.stdout.contains("profile      nexar-ci")
            && one.stdout.contains("token URL    http://127.0.0.1")
            && one.stdout.contains("secrets      in a plain file"),
        "{}",
        one.stdout
    );
    assert!(!one.stdout.contains("work-altium"), "{}", one.stdout);
    env.a365(&["status", "nope"]).code(4);
}

#[test]
fn bash_completes_profile_names_from_the_agent() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    env.add_refresh("workshop", &server);
    env.add_refresh("nexar", &server);
    let script = env.path("a365.bash");
    std::fs::write(&script, env.a365(&["completions", "bash"]).ok().stdout).unwrap();
    let bin_dir = bin("a365").parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let complete = |words: &str| {
        let out = env
            .command("bash")
            .env("PATH", &path)
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _a365_with_profiles a365 \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
                 echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(complete("a365 token wo"), "work workshop");
    assert_eq!(complete("a365 status n"), "nexar");
    assert_eq!(complete("a365 remove x"), "");
}

/// A replacement is proven before anything is saved: an agent killed
/// while the new credential's first exchange is under way comes back
/// with the working one, as it was.
#[test]
fn an_agent_killed_while_a_replacement_is_proven_keeps_the_working_credential() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("work", &server);
    let stored = env.stored_refresh_token("work");
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    server.set_fault(Fault::Delay(Duration::from_secs(3)), Some(1));
    let before = server.recorded().len();
    let new_rt = server.issue_refresh_token("test-client");
    let mut child = spawn_add(
        &env,
        &server,
        "work",
        &new_rt,
        &["--replace", "--scope", "x"],
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .recorded()
        .len()
        > before));
    drop(agent.kill());
    let _ = child.wait();
    assert_eq!(env.stored_refresh_token("work"), stored);
    assert_eq!(std::fs::read_to_string(env.config_file()).unwrap(), config);
    let _agent = env.start_agent();
    env.token("work");
    env.a365(&["refresh", "work"]).ok();
}
