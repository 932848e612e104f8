//! The provider kinds against the local server: Nexar client credentials,
//! the browser login (PKCE, loopback redirect), Designer Cloud renewal,
//! scopes, and Gov Cloud's `secure=1`.

use std::process::Stdio;
use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, bin, free_port, jwt_payload, skip, wait_until};

fn server(lifetime_secs: u64) -> TokenServer {
    TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(lifetime_secs),
        ..ServerConfig::default()
    })
    .unwrap()
}

fn add(env: &Env, args: &[&str], secrets: &str) -> crate::harness::Out {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--secrets-from", "-"]);
    env.a365_with_stdin(&all, secrets.as_bytes())
}

#[test]
fn client_credentials_are_cached_reused_across_restarts_and_refreshed_early() {
    let server = server(3600);
    let env = Env::new();
    let agent = env.start_agent();
    add(
        &env,
        &[
            "supply",
            "--kind",
            "client-credentials",
            "--token-url",
            &server.token_url(),
            "--client-id",
            "test-client",
            "--scope",
            "supply.domain",
        ],
        r#"{"client_secret":"test-secret"}"#,
    )
    .ok();
    let token = env.token("supply");
    for _ in 0..5 {
        assert_eq!(env.token("supply"), token);
    }
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 1, "one token request for six clients");
    assert_eq!(recorded[0].grant_type, "client_credentials");
    assert_eq!(recorded[0].scope.as_deref(), Some("supply.domain"));

    // A restart (even a crash) reuses the stored token: Nexar's rate limit
    // is never spent on a restart.
    drop(agent.kill());
    let _agent = env.start_agent();
    assert_eq!(env.token("supply"), token);
    assert_eq!(server.requests(), 1);

    // Short-lived tokens are renewed before they expire.
    server.set_lifetime(Duration::from_secs(3));
    env.a365(&["refresh", "supply"]).ok();
    let first = env.token("supply");
    let exp = jwt_payload(&first)["exp"].as_i64().unwrap();
    assert!(wait_until(Duration::from_secs(4), || server.requests() >= 3));
    let renewed = server.last_access_token().unwrap();
    assert!(jwt_payload(&renewed)["iat"].as_i64().unwrap() <= exp);
}

/// A script `home/NAME` of `text`, executable: a `$BROWSER`. `a365 login`
/// gives a browser a private page that forwards to the launcher (a
/// `file:` URL): the script is run on the launcher that page names, as a
/// browser follows it, and what it was given is kept in `home/NAME.argv`.
fn script(env: &Env, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let inner = env.path(&format!("home/{name}.inner"));
    std::fs::write(&inner, text).unwrap();
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = env.path(&format!("home/{name}"));
    let outer = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv}\ncase \"$1\" in\n\
         file:*) url=$(python3 -c 'import html, re, sys, urllib.request\n\
         page = urllib.request.urlopen(sys.argv[1]).read().decode()\n\
         print(html.unescape(re.search(\"url=([^\\\"]+)\\\"\", page).group(1)))' \"$1\") || exit 1 ;;\n\
         *) url=$1 ;;\nesac\nexec {inner} \"$url\"\n",
        argv = env.path(&format!("home/{name}.argv")).display(),
        inner = inner.display()
    );
    std::fs::write(&path, outer).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A `$BROWSER` that does what a browser does with the authorize URL:
/// follows the redirect to the agent's loopback listener.
fn browser_script(env: &Env) -> std::path::PathBuf {
    script(
        env,
        "browser",
        "#!/bin/sh\nexec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' \"$1\"\n",
    )
}

/// `a365 login design` with `browser` as `$BROWSER`.
fn login_with(env: &Env, browser: &std::path::Path) -> crate::harness::Out {
    crate::harness::Out::from(
        env.command(bin("a365"))
            .args(["login", "design", "--timeout", "20s"])
            .env("BROWSER", browser)
            .output()
            .unwrap(),
    )
}

/// `a365 add design --kind authorization-code` redirecting to `redirect`.
fn add_login(
    env: &Env,
    server: &TokenServer,
    redirect: &str,
    extra: &[&str],
) -> crate::harness::Out {
    let token_url = server.token_url();
    let mut args = vec![
        "design",
        "--kind",
        "authorization-code",
        "--token-url",
        &token_url,
        "--client-id",
        "test-client",
        "--redirect-uri",
        redirect,
    ];
    args.extend_from_slice(extra);
    add(env, &args, r#"{"client_secret":"test-secret"}"#)
}

fn add_login_profile(env: &Env, server: &TokenServer, port: u16, extra: &[&str]) {
    let redirect = format!("http://127.0.0.1:{port}/login");
    let out = add_login(env, server, &redirect, extra).ok();
    assert!(out.stderr.contains("a365 login design"), "{}", out.stderr);
}

#[test]
fn a_browser_login_gets_a_token_and_a_refresh_token() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    let out = env.a365(&["token", "design"]).code(5);
    assert!(out.stderr.contains("a365 login design"), "{}", out.stderr);

    let browser = browser_script(&env);
    let out = login_with(&env, &browser).ok();
    // The URL printed and given to the browser is the agent's one-time
    // launcher: no state or challenge on any command line.
    assert!(
        out.stderr
            .contains(&format!("http://127.0.0.1:{port}/start/")),
        "prints the launcher: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("code_challenge"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("logged in as user-of-test-client: profile"),
        "{}",
        out.stderr
    );
    let token = env.token("design");
    let scopes = jwt_payload(&token)["scope"].clone();
    assert_eq!(
        scopes,
        serde_json::json!([
            "openid",
            "profile",
            "email",
            "design.domain",
            "user.access",
            "offline_access"
        ])
    );
    let grants: Vec<_> = server
        .recorded()
        .into_iter()
        .map(|r| r.grant_type)
        .collect();
    assert_eq!(grants, ["authorization_code"]);
    // offline_access brought a refresh token: a forced refresh uses it.
    env.a365(&["refresh", "design"]).ok();
    assert_eq!(server.recorded()[1].grant_type, "refresh_token");
    // The port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

/// The server grants `offline_access` only with `prompt=consent` (OpenID
/// Connect Core §11), which a365 sends by default (the test above got its
/// refresh token so). A profile whose authorize URL names its own `prompt`
/// keeps it, gets no refresh token, and is told at once why.
#[test]
fn a_login_without_consent_for_offline_access_says_so_at_once() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    let authorize = server
        .token_url()
        .replace("/connect/token", "/connect/authorize?prompt=login");
    add_login_profile(&env, &server, port, &["--authorize-url", &authorize]);
    let out = login_with(&env, &browser_script(&env)).ok();
    assert!(
        out.stderr.contains(
            "the provider granted no refresh token although offline_access was asked for"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("consent page"), "{}", out.stderr);
    let token = env.token("design");
    let scopes = jwt_payload(&token)["scope"].clone();
    assert!(
        !scopes
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "offline_access"),
        "{scopes}"
    );
}

#[test]
fn a_wrong_state_is_ignored_and_an_abandoned_login_times_out_and_frees_the_port() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);

    // Started without a browser: read the URL from its output.
    let mut login = env
        .command(bin("a365"))
        .args(["login", "design", "--no-browser", "--timeout", "20s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(login.stderr.take().unwrap());
    let mut url = String::new();
    while !url.contains("/start/") {
        url.clear();
        std::io::BufRead::read_line(&mut stderr, &mut url).unwrap();
    }
    let url = url.trim().to_owned();
    // Someone else hits the redirect with a made-up state: refused, and
    // the login goes on.
    let forged = http_get(port, "/login?code=forged&state=not-the-state");
    assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
    let status = std::process::Command::new(browser_script(&env))
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(login.wait().unwrap().success());
    assert!(env.token("design").len() > 20);

    // Nobody comes back: the login ends after its timeout, and says so.
    let out = env
        .a365(&["login", "design", "--no-browser", "--timeout", "1s"])
        .code(6);
    assert!(
        out.stderr.contains("not finished within 1 s"),
        "{}",
        out.stderr
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpListener::bind((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the port is free again"
    );
}

/// The server checks the agent's `code_verifier` against the challenge of
/// the authorize URL: a browser that swaps the challenge (as a stolen code
/// would be redeemed with another verifier) makes the exchange fail, with
/// a clear error and no token.
#[test]
fn a_code_verifier_that_does_not_match_is_rejected_by_the_server() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    let browser = script(
        &env,
        "swapping-browser",
        "#!/bin/sh\nexec python3 -c '\nimport re, sys, urllib.request, urllib.error\nclass Stay(urllib.request.HTTPRedirectHandler):\n    def redirect_request(self, *a, **k):\n        return None\ntry:\n    urllib.request.build_opener(Stay).open(sys.argv[1], timeout=10)\nexcept urllib.error.HTTPError as e:\n    url = e.headers[\"Location\"]\nurl = re.sub(\"code_challenge=[^&]*\", \"code_challenge=\" + \"A\" * 43, url)\ntry:\n    urllib.request.urlopen(url, timeout=10).read()\nexcept Exception:\n    pass\n' \"$1\"\n",
    );
    let out = login_with(&env, &browser);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("logged in"), "{}", out.stderr);
    eprintln!("exit {}: {}", out.code, out.stderr);
    // It names what was rejected: the login's code, not a refresh token.
    assert!(
        out.stderr.contains("authorization code (invalid_grant"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("refresh token"), "{}", out.stderr);
    let grants: Vec<_> = server
        .recorded()
        .into_iter()
        .map(|r| (r.grant_type, r.status))
        .collect();
    assert_eq!(grants, [("authorization_code".to_owned(), 400)]);
    assert!(server.last_access_token().is_none());
    env.a365(&["token", "design"]).code(5);
}

#[test]
fn without_offline_access_an_expired_login_asks_to_log_in_again() {
    let server = server(2);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(
        &env,
        &server,
        port,
        &["--scope", "openid", "--scope", "design.domain"],
    );
    let browser = browser_script(&env);
    login_with(&env, &browser);
    crate::harness::wait_past_exp(&env.token("design"));
    let out = env.a365(&["token", "design"]).code(5);
    assert!(
        out.stderr.contains("log in again with `a365 login design`"),
        "{}",
        out.stderr
    );
    assert_eq!(server.requests(), 1, "no refresh without a refresh token");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

pub(crate) fn add_designer(env: &Env, server: &TokenServer, token: &str) {
    add(
        env,
        &[
            "dc",
            "--kind",
            "designer-cloud",
            "--base-url",
            &server.base_url(),
            "--renew-lifetime",
            "1h",
        ],
        &format!(r#"{{"access_token":"{token}"}}"#),
    )
    .ok();
}

#[test]
fn designer_cloud_creates_the_new_token_before_deleting_the_old() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    add_designer(&env, &server, &pasted);
    // Renewed at once, so that the agent knows the token's id and expiry.
    assert_eq!(server.designer_tokens_created(), 1);
    let first = env.token("dc");
    assert_ne!(first, pasted);
    assert!(server.is_designer_token_live(&first));

    env.a365(&["refresh", "dc"]).ok();
    assert_eq!(server.designer_tokens_created(), 2);
    let second = env.token("dc");
    assert_ne!(second, first);
    assert!(
        wait_until(Duration::from_secs(5), || !server
            .is_designer_token_live(&first)),
        "the replaced token is deleted"
    );
    assert!(server.is_designer_token_live(&second));
    assert_eq!(server.designer_tokens_deleted().len(), 1);
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["kind"], "designer-cloud");
    assert!(status[0]["next_refresh_at"].is_i64());
}

#[test]
fn a_crash_between_create_and_delete_and_a_failed_delete_lose_nothing() {
    let server = server(3600);
    let env = Env::new();
    let agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(Some(Duration::from_secs(600)));
    add_designer(&env, &server, &pasted);
    let before = env.token("dc");

    // The delete never returns; kill -9 while it hangs.
    server.hold_designer_deletes(true);
    env.a365(&["refresh", "dc"]).ok();
    let renewed = env.token("dc");
    assert_ne!(renewed, before);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.credential_file("dc")).unwrap()).unwrap();
    assert_eq!(
        stored["access_token"],
        renewed.as_str(),
        "saved before the delete"
    );
    assert_eq!(stored["retired_token_ids"].as_array().unwrap().len(), 1);
    drop(agent.kill());

    server.hold_designer_deletes(false);
    server.fail_designer_deletes(1);
    let _agent = env.start_agent();
    assert_eq!(
        env.token("dc"),
        renewed,
        "the new token is served after the crash"
    );
    assert_eq!(server.designer_tokens_created(), 2, "and not renewed again");
    // The first delete after the restart fails with a 500; a later one works.
    assert!(
        wait_until(Duration::from_secs(8), || !server
            .is_designer_token_live(&before)),
        "the old token is deleted later"
    );
    assert_eq!(env.token("dc"), renewed);
}

#[test]
fn a_designer_token_that_never_expires_is_not_renewed() {
    let server = server(3600);
    server.designer_tokens_never_expire(true);
    let env = Env::new();
    let _agent = env.start_agent();
    let (pasted, _) = server.issue_designer_token(None);
    add_designer(&env, &server, &pasted);
    let status = env.a365(&["status", "--json"]).ok().json();
    assert!(status[0]["expires_at"].is_null(), "{status}");
    assert!(status[0]["next_refresh_at"].is_null(), "{status}");
    assert!(env.a365(&["token", "dc"]).ok().stdout.trim().len() > 10);
    assert_eq!(server.designer_tokens_created(), 1);
}

#[test]
fn a_workspace_scope_passes_for_its_workspace_only() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    let ws = "a365:workspace:6f1c2a7e-3b4d-4c5e-9f80-1a2b3c4d5e6f";
    env.a365(&["token", "work", "--scope", ws]).ok();
    let other = "a365:workspace:00000000-0000-0000-0000-000000000000";
    let out = env.a365(&["token", "work", "--scope", other]).code(7);
    assert!(
        out.stderr.contains(other) && out.stderr.contains(ws),
        "{}",
        out.stderr
    );
}

#[test]
fn gov_cloud_sends_secure_and_is_never_mixed_with_commercial() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    for (name, flag) in [("gov", Some("--secure")), ("commercial", None)] {
        let rt = server.issue_refresh_token("test-client");
        let url = server.token_url();
        let mut args = vec![
            name,
            "--kind",
            "refresh",
            "--token-url",
            &url,
            "--client-id",
            "test-client",
        ];
        args.extend(flag);
        add(
            &env,
            &args,
            &format!(r#"{{"client_secret":"test-secret","refresh_token":"{rt}"}}"#),
        )
        .ok();
    }
    let recorded = server.recorded();
    assert!(recorded[0].secure, "secure=1 for the Gov profile");
    assert!(!recorded[1].secure, "no secure=1 for the commercial one");

    // The Gov flag to a commercial endpoint, or a login that would send the
    // secret across clouds, is refused before anything is sent.
    let out = add(
        &env,
        &[
            "mixed",
            "--kind",
            "refresh",
            "--token-url",
            "https://auth.altium.com/connect/token",
            "--client-id",
            "c",
            "--secure",
        ],
        r#"{"client_secret":"s","refresh_token":"r"}"#,
    )
    .code(8);
    assert!(
        out.stderr.contains("Gov Cloud") && out.stderr.contains("auth.altium.com"),
        "{}",
        out.stderr
    );
    let out = add(
        &env,
        &[
            "mixed",
            "--kind",
            "authorization-code",
            "--realm",
            "altium365-gov",
            "--authorize-url",
            "https://auth.altium.com/connect/authorize",
            "--client-id",
            "c",
        ],
        r#"{"client_secret":"s"}"#,
    )
    .code(8);
    assert!(
        out.stderr.contains("different Altium clouds"),
        "{}",
        out.stderr
    );
    assert_eq!(server.requests(), 2);
}

#[test]
fn a_second_login_replaces_one_still_waiting() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    // The first login, as `a365 login` makes it: `login`, then
    // `login_wait` on the same connection, sent before the second starts
    // (written here by hand, so that the order is certain).
    use a365_proto::codec::{decode_response, encode_request};
    use a365_proto::{Encoding, Request, Response};
    use std::io::Write;
    let mut first = env.connect_raw();
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ask = |stream: &mut std::os::unix::net::UnixStream, request: Request| {
        stream
            .write_all(&encode_request(&request, Encoding::Binary).unwrap())
            .unwrap();
    };
    let answer = |stream: &mut std::os::unix::net::UnixStream| {
        let payload = a365_proto::frame::read_frame(stream).unwrap();
        decode_response(&payload, Encoding::Binary).unwrap()
    };
    let profile = "design".to_owned();
    ask(
        &mut first,
        Request::Login {
            profile: profile.clone(),
            timeout_ms: 30_000,
            select_workspace: None,
        },
    );
    assert!(matches!(answer(&mut first), Response::LoginUrl { .. }));
    ask(&mut first, Request::LoginWait { profile });
    let out = login_with(&env, &browser_script(&env)).ok();
    assert!(out.stderr.contains("logged in"), "{}", out.stderr);
    match answer(&mut first) {
        Response::Error(e) => {
            assert_eq!(e.kind, a365_proto::ErrorKind::Unavailable, "{}", e.message);
            assert!(e.message.contains("replaced by a newer"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
}

/// Another local user who reads the browser's command line (`/proc/PID/
/// cmdline`) and fetches the link first learns the authorize URL, but the
/// victim's own fetch then finds the link used, and the login is
/// abandoned loudly instead of finishing in the other user's account.
#[test]
fn a_login_link_opened_twice_abandons_the_login() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    // The "browser" records its arguments, lets someone else open the link
    // first (the race the attacker wins), then opens it itself.
    let argv = env.path("home/argv");
    let browser = script(
        &env,
        "racing-browser",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv}\nexec python3 -c '\nimport sys, urllib.request, urllib.error\nclass Stay(urllib.request.HTTPRedirectHandler):\n    def redirect_request(self, *a, **k):\n        return None\nfor who in (\"attacker\", \"victim\"):\n    try:\n        urllib.request.build_opener(Stay).open(sys.argv[1], timeout=10)\n    except urllib.error.HTTPError as e:\n        print(who, e.code, e.headers.get(\"Location\", \"\"))\n' \"$1\" > {argv}.seen\n",
            argv = argv.display()
        ),
    );
    let out = login_with(&env, &browser).code(6);
    assert!(out.stderr.contains("opened twice"), "{}", out.stderr);
    let given = std::fs::read_to_string(env.path("home/racing-browser.argv")).unwrap();
    let seen = std::fs::read_to_string(format!("{}.seen", argv.display())).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert!(
        lines[0].starts_with("attacker 302 ") && lines[0].contains("/connect/authorize?"),
        "{seen}"
    );
    assert_eq!(lines[1], "victim 410 ", "{seen}");
    // On the browser's command line: a private page, not even the
    // launcher (see the next test).
    assert!(given.starts_with("file:///"), "{given}");
    assert!(
        !given.contains("/start/")
            && !given.contains("state=")
            && !given.contains("code_challenge"),
        "{given}"
    );
    assert_eq!(server.requests(), 0, "no code was exchanged");
    env.a365(&["token", "design"]).code(5);
}

/// On a terminal, `a365 login` names the account that signed in and keeps
/// the new credential only when the user says so: a login finished in
/// someone else's browser, or with the wrong account, is not taken
/// silently.
#[test]
fn on_a_terminal_a_login_is_kept_only_when_the_user_says_so() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    let browser = browser_script(&env);
    let args = ["login", "design", "--timeout", "20s"];
    let vars = [("BROWSER", browser.as_path())];
    let prompt = "Keep this login for profile 'design'? [y/N]";
    let declined = crate::interactive::play_with(
        &env,
        &args,
        serde_json::json!([[prompt, "n"], ["not kept", null]]),
        &vars,
    );
    assert_eq!(declined.code, 0, "{}", declined.stdout);
    assert!(
        declined
            .stdout
            .contains("signed in as user-of-test-client. Keep this login"),
        "{}",
        declined.stdout
    );
    // Nothing was kept: the profile still waits for a login.
    env.a365(&["token", "design"]).code(5);
    let kept = crate::interactive::play_with(
        &env,
        &args,
        serde_json::json!([[prompt, "y"], ["logged in as", null]]),
        &vars,
    );
    assert_eq!(kept.code, 0, "{}", kept.stdout);
    assert!(env.token("design").len() > 20);
}

/// Another local user reads every command line (`/proc/PID/cmdline`):
/// the browser's shows only a page in the user's private runtime
/// directory, which they cannot read, so they cannot fetch the one-time
/// launcher first and log the profile into their own account.
#[test]
fn another_user_cannot_take_the_login_link_from_the_browsers_command_line() {
    if !crate::harness::require_root("read the browser's command line as another user") {
        return;
    }
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(&env, &server, port, &[]);
    let go = env.path("home/go");
    // The browser waits until the other user has had its look.
    let browser = script(
        &env,
        "watched-browser",
        &format!(
            "#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\n\
             exec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' \"$1\"\n",
            go = go.display()
        ),
    );
    let other = crate::harness::OtherUser::create();
    std::thread::scope(|scope| {
        let login = scope.spawn(|| login_with(&env, &browser));
        let argv = env.path("home/watched-browser.argv");
        assert!(wait_until(Duration::from_secs(10), || argv.exists()));
        let given = std::fs::read_to_string(&argv).unwrap();
        let given = given.trim();
        assert!(
            !given.contains("/start/") && !given.contains("state="),
            "the browser's command line carries the login link: {given}"
        );
        // What the command line names, the other user cannot read.
        let page = given.trim_start_matches("file://");
        let read = other.command("cat").arg(page).output().unwrap();
        assert!(!read.status.success(), "another user read the login page");
        assert!(!String::from_utf8_lossy(&read.stdout).contains("/start/"));
        std::fs::write(&go, "").unwrap();
        let out = login.join().unwrap().ok();
        assert!(out.stderr.contains("logged in as"), "{}", out.stderr);
        // The page is gone once the login is over.
        assert!(!std::path::Path::new(page).exists());
    });
}

/// `localhost` means both loopbacks to a browser: with `[::1]:PORT` taken
/// by someone else, the login refuses to start rather than let them
/// receive the code from an IPv6-first browser.
#[test]
fn a_localhost_redirect_with_either_loopback_taken_is_refused() {
    // Another test may be handed the same port number on 127.0.0.1 once
    // the squatter lets go: then the last login is tried on a new port.
    for _ in 0..3 {
        let Ok(squatter) = std::net::TcpListener::bind(("::1", 0)) else {
            skip("this machine has no IPv6 loopback");
            return;
        };
        let port = squatter.local_addr().unwrap().port();
        let server = server(3600);
        let env = Env::new();
        let _agent = env.start_agent();
        let redirect = format!("http://localhost:{port}/login");
        add_login(&env, &server, &redirect, &[]).ok();
        let out = env
            .a365(&["login", "design", "--no-browser", "--timeout", "2s"])
            .code(6);
        assert!(
            out.stderr.contains("cannot listen on") && out.stderr.contains("in use"),
            "{}",
            out.stderr
        );
        drop(squatter);
        // Free again: both loopbacks are bound, and a login through either works.
        let browser = browser_script(&env);
        let out = login_with(&env, &browser);
        if out.code == 6 && out.stderr.contains("in use") {
            continue;
        }
        out.ok();
        return;
    }
    panic!("the port was taken by others three times over");
}

#[test]
fn a_redirect_path_that_reads_as_a_pattern_is_refused_at_add() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    for bad in [
        "http://127.0.0.1:3000/:code",
        "http://127.0.0.1:3000/*rest",
        "http://127.0.0.1:3000/cb?x=1",
    ] {
        let out = add_login(&env, &server, bad, &[]).code(8);
        assert!(
            out.stderr.contains("must be a plain path"),
            "{bad}: {}",
            out.stderr
        );
    }
    let out = env.a365(&["status", "--json"]).ok();
    assert_eq!(out.json().as_array().unwrap().len(), 0, "nothing was added");
}

/// A server that enforces HTTP Basic (as strict ones enforce the method a
/// client registered) answers the default, the secret in the form body,
/// with `invalid_client`: the message names `--client-auth basic`. With
/// it, the id and secret travel as HTTP Basic only (never also in the
/// body, which RFC 6749 §2.3 forbids), for the first exchange, every
/// refresh and after a restart (the method is kept in config.toml).
#[test]
fn client_auth_basic_for_a_server_that_enforces_it() {
    let server = TokenServer::start(ServerConfig {
        require_basic: true,
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    let (_, out) = env.try_add_refresh("work", &server, &[]);
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert!(
        out.stderr.contains("--client-auth basic"),
        "names the other method: {}",
        out.stderr
    );
    let (_, out) = env.try_add_refresh("work", &server, &["--replace", "--client-auth", "basic"]);
    let out = out.ok();
    assert!(
        out.stderr.contains("a token was obtained"),
        "{}",
        out.stderr
    );
    env.a365(&["refresh", "work"]).ok();
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(config.contains("client_auth = \"basic\""), "{config}");
    drop(agent.terminate());
    let _agent = env.start_agent();
    env.a365(&["refresh", "work"]).ok();
    let recorded = server.recorded();
    let ok: Vec<_> = recorded.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 3, "{recorded:?}");
    assert!(ok.iter().all(|r| r.basic), "{recorded:?}");
    assert!(
        !recorded[0].basic && recorded[0].status == 401,
        "{recorded:?}"
    );
}

/// A server that does not form-decode HTTP Basic (many do not) refuses a
/// secret with `+ / : %` and a space sent as RFC 6749 §2.3.1 says: the
/// agent asks once more with the id and secret as they are, keeps what
/// worked with the credential (`basic-raw` in status and doctor, also
/// after a restart) and sends only that from then on. A server that has
/// accepted the encoded form once is never asked the other way.
#[test]
fn http_basic_as_it_is_for_a_server_that_does_not_decode_it() {
    let secret = "a+b/c:d% e";
    let server = TokenServer::start(ServerConfig {
        basic_raw: true,
        clients: vec![("test-client".into(), secret.into())],
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    let basic = ["--client-auth", "basic"];
    let at = (secret, server.token_url());
    let (_, out) = env.try_add_refresh_with("work", &server, (at.0, &at.1), &basic);
    let out = out.ok();
    assert!(
        out.stderr.contains("a token was obtained"),
        "{}",
        out.stderr
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["client_auth"], "basic-raw", "{status}");
    let table = env.a365(&["status"]).ok().stdout;
    assert!(
        table.contains(
            "work: its server takes the client id and secret as HTTP Basic only as they are"
        ),
        "{table}"
    );
    drop(agent.terminate());
    let _agent = env.start_agent();
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["client_auth"], "basic-raw", "kept: {status}");
    env.a365(&["refresh", "work"]).ok();
    let doctor = env.a365(&["doctor", "work"]).ok().stdout;
    assert!(doctor.contains("client authentication: the id and secret are sent as HTTP Basic, as they are (basic-raw)"), "{doctor}");
    let recorded = server.recorded();
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [401, 200, 200],
        "one refusal, then as it is: {recorded:?}"
    );
    assert!(recorded.iter().all(|r| r.basic), "{recorded:?}");

    // The same secret at a server that decodes (RFC 6749): accepted at
    // once, and never sent the other way.
    let strict = TokenServer::start(ServerConfig {
        clients: vec![("test-client".into(), secret.into())],
        ..ServerConfig::default()
    })
    .unwrap();
    let token_url = strict.token_url();
    let (_, out) = env.try_add_refresh_with("strict", &strict, (secret, &token_url), &basic);
    out.ok();
    let status = env.a365(&["status", "--json"]).ok().json();
    let strict_status = status
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "strict")
        .unwrap();
    assert_eq!(strict_status["client_auth"], "basic", "{status}");
    assert_eq!(
        strict
            .recorded()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [200]
    );
}

/// `status` says whether the provider rotates refresh tokens, from what
/// each refresh returned (never by replaying one), and whose token it is.
#[test]
fn status_shows_whether_refresh_tokens_rotate_and_whose_token_it_is() {
    for rotate in [true, false] {
        let server = TokenServer::start(ServerConfig {
            rotate,
            ..ServerConfig::default()
        })
        .unwrap();
        let env = Env::new();
        let agent = env.start_agent();
        env.add_refresh("work", &server);
        let status = env.a365(&["status", "--json"]).ok().json();
        assert_eq!(status[0]["rotates"], rotate, "{status}");
        assert_eq!(status[0]["account"], "user-of-test-client", "{status}");
        let table = env.a365(&["status", "--wide"]).ok().stdout;
        let expected = if rotate { " yes " } else { " no " };
        assert!(table.lines().nth(1).unwrap().contains(expected), "{table}");
        // Kept with the credential: a restart still knows it.
        drop(agent.terminate());
        let _agent = env.start_agent();
        let status = env.a365(&["status", "--json"]).ok().json();
        assert_eq!(status[0]["rotates"], rotate, "{status}");
        env.a365(&["refresh", "work"]).ok();
        let status = env.a365(&["status", "--json"]).ok().json();
        assert_eq!(status[0]["rotates"], rotate, "{status}");
    }
}

/// A login the provider refuses says why, in the provider's words (its
/// `error_description`, shown as text: no terminal escape gets through).
#[test]
fn a_refused_login_says_what_the_provider_said() {
    let server = server(3600);
    let env = Env::new();
    let _agent = env.start_agent();
    let port = free_port();
    add_login_profile(
        &env,
        &server,
        port,
        &["--authorize-param", "login_hint=refuse-me"],
    );
    let out = login_with(&env, &browser_script(&env));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("access_denied (the user declined"),
        "{out:?}"
    );
    assert!(!out.stderr.contains('\u{1b}'), "{out:?}");
}

/// `add --replace` with a credential the server refuses (a spent refresh
/// token, a mistyped secret) puts the working profile back as it was:
/// nothing that did not succeed replaces what works.
#[test]
fn a_refused_replacement_keeps_the_working_credential() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    let held = env.token("work");
    let working = env.stored_refresh_token("work").unwrap();
    server.set_fault(Fault::InvalidGrant, Some(1));
    let (_, out) = env.try_add_refresh("work", &server, &["--replace"]);
    let out = out.code(5);
    assert!(
        out.stderr
            .contains("nothing was replaced: profile 'work' keeps its earlier credential"),
        "{}",
        out.stderr
    );
    assert_eq!(env.stored_refresh_token("work").unwrap(), working);
    assert_eq!(env.token("work"), held, "still served");
    env.a365(&["refresh", "work"]).ok();
    assert_ne!(env.token("work"), held, "and still renewed");
}
