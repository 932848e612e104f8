//! Secrets never reach logs or output, and files holding them are private.

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, Session, wait_until};

#[test]
fn trace_logs_and_output_hold_no_secret_through_a_full_cycle() {
    full_cycle_at_trace(Env::new());
}

/// zbus logs D-Bus traffic at trace level: the keyring path must not leak
/// either (the Secret Service session is encrypted).
#[test]
fn trace_logs_hold_no_secret_with_the_keyring_store() {
    if let Some(env) = Env::with_keyring() {
        full_cycle_at_trace(env);
    }
}

fn full_cycle_at_trace(mut env: Env) {
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(2),
        ..ServerConfig::default()
    })
    .unwrap();
    env.rust_log = "trace".into();
    let agent = env.start_agent();
    let mut output = String::new();
    let mut secrets: Vec<String> = vec!["test-secret".into()];

    let rt = env.add_refresh("work", &server);
    secrets.push(rt);
    for args in [&["status"][..], &["status", "--json"], &["refresh", "work"]] {
        let out = env.a365(args).ok();
        output.push_str(&out.stdout);
        output.push_str(&out.stderr);
    }
    // Tokens printed on purpose go to stdout of `token`; its stderr stays clean.
    let out = env.a365(&["token", "work", "--min-valid", "0s"]).ok();
    output.push_str(&out.stderr);
    // Let a proactive refresh and rotation happen under trace logging.
    let requests = server.requests();
    assert!(wait_until(Duration::from_secs(5), || server.requests() >= requests + 2));
    let out = env.a365(&["remove", "work"]).ok();
    output.push_str(&out.stdout);
    output.push_str(&out.stderr);

    // A Designer Cloud token travels as a bearer header, renewed twice.
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    let out = env.a365_with_stdin(
        &[
            "add",
            "dc",
            "--kind",
            "designer-cloud",
            "--base-url",
            &server.base_url(),
            "--secrets-from",
            "-",
        ],
        format!(r#"{{"access_token":"{pasted}"}}"#).as_bytes(),
    );
    output.push_str(&out.stderr);
    secrets.push(pasted);
    secrets.push(env.token("dc"));
    output.push_str(&env.a365(&["refresh", "dc"]).ok().stderr);
    secrets.push(env.token("dc"));

    for record in server.recorded() {
        secrets.extend(record.refresh_token);
    }
    secrets.extend(server.issued_access_tokens());
    secrets.extend(server.issued_refresh_tokens());
    // Nor do the agent's command line and environment (what `ps e` shows).
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{}/{file}", agent.pid())).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret in the agent's {file}"
            );
        }
    }
    let (_, log) = agent.terminate();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the agent log holds a secret"
        );
        assert!(
            !output.contains(secret.as_str()),
            "client output holds a secret"
        );
    }
    // Every file in the user's world outside the stores (the config, the
    // socket directory, gnome-keyring's own runtime files).
    let stores = [
        env.path("state/a365/credentials"),
        env.path("home/data/keyrings"),
    ];
    let mut files = vec![env.dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if stores.contains(&path) {
            continue;
        }
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "a secret in {}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "the config was checked");
}

#[test]
fn the_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let Session {
        server: _server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let mode = std::fs::metadata(env.credential_file("work"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir = env.credential_file("work").parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn the_agent_allows_no_core_dump() {
    let env = Env::new();
    let agent = env.start_agent();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
}

#[test]
fn memory_is_locked_where_that_is_safe_and_the_log_says_which() {
    let env = Env::new();
    let agent = env.start_agent();
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // The log is read by a thread: wait until it holds the verdict.
    crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        agent.log().contains("memory locked (") || agent.log().contains("memory not locked (")
    });
    let log = agent.log();
    let unlimited = rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .is_none();
    if rustix::process::geteuid().is_root() || unlimited {
        assert!(log.contains("memory locked ("), "{log}");
        assert!(locked_kib > 0, "VmLck is 0");
    } else {
        assert!(
            log.contains("memory not locked (RLIMIT_MEMLOCK is"),
            "{log}"
        );
        assert_eq!(locked_kib, 0);
    }
}

/// `--secrets-from` reads at most 64 KiB (`/dev/zero` once reached 731 MB
/// in two seconds), and warns about a file others can read.
#[test]
fn secrets_from_is_capped_and_warns_about_a_file_others_can_read() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let token_url = server.token_url();
    let add = |file: &str| {
        env.a365(&[
            "add",
            "work",
            "--kind",
            "refresh",
            "--token-url",
            &token_url,
            "--client-id",
            "test-client",
            "--secrets-from",
            file,
        ])
    };
    let started = std::time::Instant::now();
    let out = add("/dev/zero").code(2);
    assert!(out.stderr.contains("more than 64 KiB"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(5));

    let file = env.path("home/secrets.json");
    let write = |file: &std::path::Path| {
        let rt = server.issue_refresh_token("test-client");
        let text = format!(r#"{{"client_secret":"test-secret","refresh_token":"{rt}"}}"#);
        std::fs::write(file, text).unwrap();
    };
    write(&file);
    crate::harness::set_mode(&file, 0o644);
    let out = add(file.to_str().unwrap()).ok();
    assert!(
        out.stderr.contains("readable by other users (mode 644)")
            && out.stderr.contains("shred -u"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("test-secret"), "{}", out.stderr);
    env.a365(&["remove", "work"]).ok();
    write(&file);
    crate::harness::set_mode(&file, 0o600);
    let out = add(file.to_str().unwrap()).ok();
    assert!(
        !out.stderr.contains("readable by other users"),
        "{}",
        out.stderr
    );
}

/// An agent started from inside `a365 exec` (an autostart) inherits
/// `A365_TOKEN`; it starts afresh without it, so its environment as the
/// kernel shows it (`/proc/PID/environ`) holds no token.
#[test]
fn an_inherited_a365_token_leaves_the_agent_environment() {
    if !crate::harness::require_root("read a non-dumpable process's environment") {
        return;
    }
    let env = Env::new();
    let mut cmd = env.command(crate::harness::bin("a365-agent"));
    cmd.env("A365_TOKEN", "inherited-token-7d1f");
    let agent = env.spawn_agent_command(cmd);
    agent.wait_ready(&env.socket);
    let environ = std::fs::read(format!("/proc/{}/environ", agent.pid())).unwrap();
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("inherited-token-7d1f"), "{text}");
    assert!(!text.contains("A365_TOKEN="), "{text}");
    assert!(
        text.contains("A365_AGENT_SOCK="),
        "the rest is kept: {text}"
    );
}
