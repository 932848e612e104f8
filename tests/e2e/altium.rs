//! Altium 365 sign-in as Altium specifies it (altium-auth SPEC §4, the
//! desktop-apps guide), against our token server as a mock Altium
//! Identity: two of them, the commercial cloud and the Gov Cloud, with
//! the built-in realms pointed at them by `[realms.*]` in config.toml. The
//! browser (`tests/oidc/browser.py`) follows the authorize URL to the
//! AuthComplete page; the agent gets the code by polling ActionWait.

use std::path::Path;
use std::process::Command;

use a365_token_server::{MockWorkspace, ServerConfig, TokenServer};

use crate::harness::{Env, Out, bin, jwt_payload};

/// The public client of the tests (a real one is registered with Altium).
const CLIENT: &str = "a365-test-desktop";

/// A confidential client of the tests, and its secret.
const CONFIDENTIAL: &str = "a365-test-service";
const CONFIDENTIAL_SECRET: &str = "s3cret-of-the-service";

/// The mock clouds and the environment whose config.toml points the
/// built-in realms at them.
struct Clouds {
    commercial: TokenServer,
    gov: TokenServer,
    env: Env,
}

/// The user's workspaces: one on each cloud.
fn workspaces() -> Vec<MockWorkspace> {
    vec![
        MockWorkspace {
            id: "ws-design".into(),
            name: "Design".into(),
            gov: false,
        },
        MockWorkspace {
            id: "ws-secure".into(),
            name: "Secure".into(),
            gov: true,
        },
    ]
}

fn clouds() -> Clouds {
    let config = |gov: bool| ServerConfig {
        public_clients: vec![CLIENT.into()],
        clients: vec![(CONFIDENTIAL.into(), CONFIDENTIAL_SECRET.into())],
        gov,
        workspaces: workspaces(),
        ..ServerConfig::default()
    };
    let commercial = TokenServer::start(config(false)).unwrap();
    let gov = TokenServer::start(config(true)).unwrap();
    let env = Env::new();
    let c = commercial.base_url();
    let realms = format!(
        "[realms.altium365]\nbase_url = \"{c}\"\nactionwait_url = \"{c}/await\"\n\
         auth_complete_url = \"{c}/api/AuthComplete\"\napi_url = \"{c}/api/graphql\"\n\n\
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
    add_client(env, (name, realm), (CLIENT, None), &[]);
}

/// `a365 add NAME` at `realm` for `client` (with its secret, if it has
/// one) and `extra` flags.
fn add_client(
    env: &Env,
    (name, realm): (&str, &str),
    (client, secret): (&str, Option<&str>),
    extra: &[&str],
) {
    let mut args = vec![
        "add",
        name,
        "--kind",
        "authorization-code",
        "--realm",
        realm,
        "--client-id",
        client,
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "offline_access",
        "--secrets-from",
        "-",
    ];
    args.extend_from_slice(extra);
    let secrets = serde_json::json!({ "client_secret": secret }).to_string();
    env.a365_with_stdin(&args, secrets.as_bytes()).ok();
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

/// RFC 8693's grant type, as the mock records it.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `a365 token a365 --workspace WORKSPACE`: the token.
fn workspace_token(env: &Env, workspace: &str) -> String {
    let out = env.a365(&["token", "a365", "--workspace", workspace]).ok();
    out.stdout.trim().to_owned()
}

/// How many token exchanges `server` saw.
fn exchanges(server: &TokenServer) -> usize {
    server
        .recorded()
        .iter()
        .filter(|r| r.grant_type == TOKEN_EXCHANGE)
        .count()
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
/// the body, no Basic, no secure) with the AuthComplete redirect; the user
/// is named from userinfo; a refresh sends no scope; a restart serves the
/// stored token and still names the user.
#[test]
fn a_commercial_sign_in_through_actionwait() {
    let Clouds {
        commercial,
        gov: _gov,
        env,
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
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["account"], "ann.designer", "kept: {status}");
}

/// A Gov Cloud sign-in: authorize on the Gov host (with the login's
/// selectWorkspace, and never `secure`), the AuthComplete page and
/// ActionWait of the commercial one (SPEC §4.2), and `secure=1` on the
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
    let out = login(
        &env,
        "gov",
        &["--timeout", "30s", "--select-workspace", "optional"],
    )
    .ok();
    assert!(
        out.stderr.contains("&selectWorkspace=optional"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("secure="),
        "never on /authorize: {}",
        out.stderr
    );
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
        commercial,
        gov: _gov,
        env,
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

/// One sign-in, every workspace: the list, a commercial and a Gov
/// workspace's token by exchange (the Gov one at the Gov endpoint with
/// secure=1, the Commercial->Gov bridge), each kept and renewed as a
/// profile of its own, restored after a restart without an exchange,
/// refreshed where it was issued without scope; `remove` revokes the
/// sign-in's refresh token and every workspace's.
#[test]
fn one_sign_in_every_workspace() {
    let Clouds {
        commercial,
        gov,
        env,
    } = clouds();
    let agent = env.start_agent();
    add(&env, "a365", "altium365");
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let list = env.a365(&["workspaces", "a365", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[1]["gov"], true, "{list}");
    assert_eq!(list[1]["location"], "US GovCloud", "{list}");
    let table = env.a365(&["workspaces", "a365"]).ok().stdout;
    assert!(
        table.contains("Design") && table.contains("US GovCloud"),
        "{table}"
    );

    let design = workspace_token(&env, "Design");
    let claims = jwt_payload(&design);
    assert_eq!(claims["workspaceId"], "ws-design", "{claims}");
    let exchange = request(&commercial, TOKEN_EXCHANGE);
    assert!(
        exchange.form["scope"].contains("a365:workspace:ws-design"),
        "{exchange:?}"
    );
    assert_eq!(exchange.form["client_id"], CLIENT);
    assert!(!exchange.form.contains_key("secure"), "{exchange:?}");

    let secure = workspace_token(&env, "ws-secure");
    let claims = jwt_payload(&secure);
    assert_eq!(claims["secure"], "1", "{claims}");
    assert_eq!(claims["iss"], gov.base_url(), "{claims}");
    let bridge = request(&gov, TOKEN_EXCHANGE);
    assert_eq!(bridge.form["secure"], "1", "{bridge:?}");

    // Asked again, and after a restart: served, no exchange.
    assert_eq!(workspace_token(&env, "Design"), design);
    agent.kill();
    let _agent = env.start_agent();
    let restored = workspace_token(&env, "Design");
    assert_eq!(restored, design, "restored from the store");
    assert_eq!((exchanges(&commercial), exchanges(&gov)), (1, 1));

    // Its own refresh, where it was issued, without scope.
    env.a365(&["refresh", "a365.ws-ws-secure"]).ok();
    let refresh = request(&gov, "refresh_token");
    assert!(
        !refresh.form.contains_key("scope") && refresh.form["secure"] == "1",
        "{refresh:?}"
    );
    let renewed = workspace_token(&env, "Secure");
    assert_eq!(jwt_payload(&renewed)["workspaceId"], "ws-secure");
    let status = env.a365(&["status", "--json"]).ok().json();
    let names = crate::harness::names(&status);
    assert_eq!(
        names,
        ["a365", "a365.ws-ws-design", "a365.ws-ws-secure"],
        "{status}"
    );
    let list = env.a365(&["workspaces", "a365", "--json"]).ok().json();
    assert_eq!(list[0]["profile"], "a365.ws-ws-design", "{list}");

    let out = env.a365(&["remove", "a365"]).ok();
    assert!(
        out.stderr.matches("refresh token was revoked").count() >= 3,
        "{}",
        out.stderr
    );
    let revoked = |s: &TokenServer| {
        s.recorded()
            .iter()
            .filter(|r| r.path == "/connect/revocation")
            .count()
    };
    assert_eq!((revoked(&commercial), revoked(&gov)), (2, 1));
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status.as_array().unwrap().len(), 0, "{status}");
}

/// A workspace the user does not have, and a Gov workspace of a
/// deployment that names no Gov Cloud: clear errors, no exchange.
#[test]
fn workspaces_that_cannot_be_had() {
    let Clouds {
        commercial,
        gov: _gov,
        env,
    } = clouds();
    let _agent = env.start_agent();
    add(&env, "a365", "altium365");
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let out = env.a365(&["token", "a365", "--workspace", "Nope"]).code(4);
    assert!(
        out.stderr.contains("none of the workspaces") && out.stderr.contains("Design, Secure"),
        "{}",
        out.stderr
    );

    // A Dev tier of its own, without a Gov Cloud.
    let dev = TokenServer::start(ServerConfig {
        public_clients: vec![CLIENT.into()],
        workspaces: workspaces(),
        ..ServerConfig::default()
    })
    .unwrap();
    let d = dev.base_url();
    let mut config = std::fs::read_to_string(env.config_file()).unwrap();
    config.push_str(&format!(
        "\n[realms.dev]\nbase_url = \"{d}\"\nactionwait_url = \"{d}/await\"\n\
         auth_complete_url = \"{d}/api/AuthComplete\"\napi_url = \"{d}/api/graphql\"\n"
    ));
    std::fs::write(env.config_file(), config).unwrap();
    drop(_agent);
    let _agent = env.start_agent();
    add(&env, "dev", "dev");
    login(&env, "dev", &["--timeout", "30s"]).ok();
    let out = env.a365(&["token", "dev", "--workspace", "Secure"]).code(8);
    assert!(out.stderr.contains("names no Gov Cloud"), "{}", out.stderr);
    assert_eq!((exchanges(&dev), exchanges(&commercial)), (0, 0));
}

/// A profile's default workspace (`add --workspace`, by name): `a365
/// token` without `--workspace` gives that workspace's token, the name
/// resolved once; a new sign-in drops the earlier one's workspace tokens.
#[test]
fn a_default_workspace() {
    let Clouds {
        commercial,
        gov: _gov,
        env,
    } = clouds();
    let _agent = env.start_agent();
    add_client(
        &env,
        ("a365", "altium365"),
        (CLIENT, None),
        &["--workspace", "Design"],
    );
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let token = env.token("a365");
    assert_eq!(jwt_payload(&token)["workspaceId"], "ws-design");
    // Asked again by its name: served from the profile that holds it.
    assert_eq!(env.token("a365"), token);
    assert_eq!(exchanges(&commercial), 1);

    // A new sign-in (perhaps another account's): the workspace token of
    // the earlier one is revoked and gone; the next is exchanged anew.
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");
    assert!(
        commercial
            .recorded()
            .iter()
            .any(|r| r.path == "/connect/revocation"),
        "revoked"
    );
    let renewed = env.token("a365");
    assert_eq!(jwt_payload(&renewed)["workspaceId"], "ws-design");
    assert_eq!(exchanges(&commercial), 2);
}

/// The token-only socket (forwarded, bind-mounted) serves a workspace
/// token the agent holds, by its id, and never exchanges a new one.
#[test]
fn the_token_socket_serves_held_workspace_tokens_only() {
    let Clouds {
        commercial,
        gov: _gov,
        env,
    } = clouds();
    let token_socket = env.path("run").join("a365").join("token.sock");
    let agent = env.spawn_agent(&["--token-socket", token_socket.to_str().unwrap()]);
    agent.wait_ready(&env.socket);
    add(&env, "a365", "altium365");
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let on_token_socket = |workspace: &str| {
        Out::from(
            env.command(bin("a365"))
                .env("A365_AGENT_SOCK", &token_socket)
                .args(["token", "a365", "--workspace", workspace])
                .output()
                .unwrap(),
        )
    };
    let out = on_token_socket("ws-design").code(4);
    assert!(
        out.stderr.contains("only workspace tokens the agent holds"),
        "{}",
        out.stderr
    );
    let held = workspace_token(&env, "Design");
    let out = on_token_socket("ws-design").ok();
    assert_eq!(out.stdout.trim(), held);
    assert_eq!(
        exchanges(&commercial),
        1,
        "only the agent's own socket exchanged"
    );
}

/// A confidential client's secret stays on its cloud: its sign-in has
/// the token of a workspace on the same cloud, never one across the
/// Commercial->Gov bridge (SECURITY.md); its code exchange used HTTP
/// Basic (SPEC §2).
#[test]
fn a_confidential_client_does_not_cross_the_bridge() {
    let Clouds {
        commercial,
        gov,
        env,
    } = clouds();
    let _agent = env.start_agent();
    add_client(
        &env,
        ("a365", "altium365"),
        (CONFIDENTIAL, Some(CONFIDENTIAL_SECRET)),
        &[],
    );
    login(&env, "a365", &["--timeout", "30s"]).ok();
    let code = request(&commercial, "authorization_code");
    assert!(
        code.basic_pair.is_some() && !code.form.contains_key("client_id"),
        "{code:?}"
    );
    assert_eq!(
        jwt_payload(&workspace_token(&env, "Design"))["workspaceId"],
        "ws-design"
    );
    let out = env
        .a365(&["token", "a365", "--workspace", "Secure"])
        .code(8);
    assert!(
        out.stderr.contains("which stays on its own cloud"),
        "{}",
        out.stderr
    );
    assert!(
        gov.recorded().is_empty(),
        "nothing was sent to the Gov cloud"
    );
}
