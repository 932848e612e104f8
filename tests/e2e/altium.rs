//! Altium 365 sign-in as Altium specifies it (altium-auth SPEC §4, the
//! desktop-apps guide), against our token server as a mock Altium
//! Identity: two of them, the commercial cloud and the Gov Cloud, with
//! the built-in realms pointed at them by `[realms.*]` in config.toml. The
//! browser (`tests/oidc/browser.py`) follows the authorize URL to the
//! AuthComplete page; the agent gets the code by polling ActionWait.

use std::path::Path;
use std::process::Command;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, Out, bin};

/// The public client of the tests (a real one is registered with Altium).
const CLIENT: &str = "a365-test-desktop";

/// The mock clouds and the environment whose config.toml points the
/// built-in realms at them.
struct Clouds {
    commercial: TokenServer,
    gov: TokenServer,
    env: Env,
}

fn clouds() -> Clouds {
    let config = || ServerConfig {
        public_clients: vec![CLIENT.into()],
        ..ServerConfig::default()
    };
    let commercial = TokenServer::start(config()).unwrap();
    let gov = TokenServer::start(config()).unwrap();
    let env = Env::new();
    let c = commercial.base_url();
    let realms = format!(
        "[realms.altium365]\nbase_url = \"{c}\"\nactionwait_url = \"{c}/await\"\n\
         auth_complete_url = \"{c}/api/AuthComplete\"\n\n\
         [realms.altium365-gov]\nbase_url = \"{g}\"\ngov = true\nactionwait_url = \"{c}/await\"\n\
         auth_complete_url = \"{c}/api/AuthComplete\"\n",
        g = gov.base_url()
    );
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(env.config_file(), realms).unwrap();
    Clouds {
        commercial,
        gov,
        env,
    }
}

/// `a365 add NAME` for the public client at `realm`.
fn add(env: &Env, name: &str, realm: &str) {
    env.a365_with_stdin(
        &[
            "add",
            name,
            "--kind",
            "authorization-code",
            "--realm",
            realm,
            "--client-id",
            CLIENT,
            "--scope",
            "openid",
            "--scope",
            "profile",
            "--scope",
            "offline_access",
            "--secrets-from",
            "-",
        ],
        b"{}",
    )
    .ok();
}

/// `a365 login NAME` with the test's browser and `extra` flags.
fn login(env: &Env, name: &str, extra: &[&str]) -> Out {
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/browser.py");
    let mut command = env.command(bin("a365"));
    command
        .args(["login", name])
        .args(extra)
        .env("BROWSER", browser);
    Out::from(command.output().unwrap())
}

/// The one token request `server` saw with `grant`.
fn request(server: &TokenServer, grant: &str) -> a365_token_server::RecordedRequest {
    let all: Vec<_> = server
        .recorded()
        .into_iter()
        .filter(|r| r.grant_type == grant)
        .collect();
    assert_eq!(all.len(), 1, "{grant}: {all:?}");
    all.into_iter().next().unwrap()
}

/// A commercial sign-in: ActionWait is polled with the login's state as
/// its wait token; the code is exchanged as a public client (client_id in
/// the body, no Basic, no secure) with the AuthComplete redirect; a
/// refresh sends no scope; a restart serves the stored token.
#[test]
fn a_commercial_sign_in_through_actionwait() {
    let Clouds {
        commercial, env, ..
    } = clouds();
    let agent = env.start_agent();
    add(&env, "a365", "altium365");
    let out = login(&env, "a365", &["--timeout", "30s"]).ok();
    assert!(
        out.stderr.contains("renewed with its refresh token"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&commercial.base_url()),
        "the URL is printed: {}",
        out.stderr
    );
    let code = request(&commercial, "authorization_code");
    assert_eq!(code.form["client_id"], CLIENT);
    assert_eq!(
        code.form["redirect_uri"],
        format!("{}/api/AuthComplete", commercial.base_url())
    );
    assert!(code.form.contains_key("code_verifier"));
    assert!(
        code.basic_pair.is_none() && !code.form.contains_key("secure"),
        "{code:?}"
    );
    let polls = commercial.actionwait_polls();
    assert!(
        !polls.is_empty() && polls.iter().all(|p| p == &polls[0]),
        "{polls:?}"
    );

    env.a365(&["refresh", "a365"]).ok();
    let refresh = request(&commercial, "refresh_token");
    assert!(
        !refresh.form.contains_key("scope"),
        "no scope (SPEC §5.3): {refresh:?}"
    );
    assert_eq!(refresh.form["client_id"], CLIENT);
    let held = env.token("a365");
    drop(agent.terminate());
    let _agent = env.start_agent();
    assert_eq!(env.token("a365"), held);
    assert_eq!(commercial.recorded().len(), 2, "no exchange at the restart");
}

/// A Gov Cloud sign-in: authorize on the Gov host, the AuthComplete page
/// and ActionWait of the commercial one (SPEC §4.2), and `secure=1` on the
/// code exchange and the refresh at the Gov token endpoint (SPEC §5.4).
#[test]
fn a_gov_sign_in_sends_secure_on_every_grant() {
    let Clouds {
        commercial,
        gov,
        env,
    } = clouds();
    let _agent = env.start_agent();
    add(&env, "gov", "altium365-gov");
    login(&env, "gov", &["--timeout", "30s"]).ok();
    assert_eq!(request(&gov, "authorization_code").form["secure"], "1");
    env.a365(&["refresh", "gov"]).ok();
    assert_eq!(request(&gov, "refresh_token").form["secure"], "1");
    assert!(
        commercial.recorded().is_empty(),
        "nothing sent to the commercial cloud"
    );
    assert!(!commercial.actionwait_polls().is_empty());
}

/// What ends a sign-in without a token: a 410 after a reconnect
/// ("cancelled"), an answer for another sign-in (the code is never
/// exchanged), and a sign-in nobody finishes (the overall timeout).
#[test]
fn sign_ins_that_end_without_a_token() {
    let Clouds {
        commercial, env, ..
    } = clouds();
    let _agent = env.start_agent();
    add(&env, "a365", "altium365");
    commercial.script_actionwait(vec![(408, String::new()), (410, String::new())]);
    let out = login(&env, "a365", &["--no-browser", "--timeout", "30s"]).code(6);
    assert!(out.stderr.contains("cancelled"), "{}", out.stderr);

    let stolen = r#"{"data":{"code":"attacker-code","state":"attacker-state"}}"#;
    commercial.script_actionwait(vec![(200, stolen.into())]);
    let out = login(&env, "a365", &["--no-browser", "--timeout", "30s"]).code(6);
    assert!(out.stderr.contains("State mismatch"), "{}", out.stderr);
    assert!(
        commercial.recorded().is_empty(),
        "the code was never exchanged"
    );

    let out = login(&env, "a365", &["--no-browser", "--timeout", "3s"]).code(6);
    assert!(
        out.stderr.contains("did not finish within 3s"),
        "{}",
        out.stderr
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "needs-reauth", "{status}");
}

/// `a365 login --help` says the browser can be on any device.
#[test]
fn login_help_names_signing_in_from_anywhere() {
    let out = Command::new(bin("a365"))
        .args(["login", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("any device") && help.contains("SSH session"),
        "{help}"
    );
}
