//! The provider-facing tests against node-oidc-provider (`tests/oidc/`), an
//! independent, OpenID-certified server that agrees with our client only
//! where the standards make it: the browser login through its own sign-in
//! and consent pages, refresh-token rotation, a restart without an
//! exchange, client credentials, a public PKCE client, and `invalid_grant`
//! once a replayed refresh token has revoked the grant. Our own token
//! server stays for fault injection.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::{Env, Out, bin, free_port, jwt_payload, skip};

/// The secrets of its clients (`tests/oidc/server.mjs`): reserved
/// characters and a space, which HTTP Basic must carry form-encoded.
const POST_SECRET: &str = "post+/:% secret";
const BASIC_SECRET: &str = "basic+/:% secret";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// An OpenID provider on a free loopback port (node-oidc-provider here,
/// django-oauth-toolkit in `dot.rs`); stopped when dropped.
pub(crate) struct Provider {
    child: Child,
    pub(crate) issuer: String,
    /// The redirect registered for its login clients.
    pub(crate) redirect: String,
    pub(crate) token_url: String,
    authorize_url: String,
    /// The secret of its client-credentials client, `cc-client`.
    cc_secret: &'static str,
}

impl Provider {
    /// `None` (with the reason) when Node or `npm ci --prefix tests/oidc`
    /// is missing, except under `CI=true`, which installs both.
    fn start() -> Option<Provider> {
        Provider::start_with(None)
    }

    /// Serving HTTPS with `tls` (certificate and key files) when given.
    fn start_with(tls: Option<(&Path, &Path)>) -> Option<Provider> {
        if !oidc_dir().join("node_modules/oidc-provider").exists() {
            skip("node-oidc-provider is not installed (npm ci --prefix tests/oidc)");
            return None;
        }
        let redirect = format!("http://127.0.0.1:{}/login", free_port());
        let mut node = Command::new("node");
        if let Some((cert, key)) = tls {
            node.env("TLS_CERT", cert).env("TLS_KEY", key);
        }
        node.arg(oidc_dir().join("server.mjs"));
        let provider = Provider::spawn(node, redirect, "cc+/:% secret");
        let issuer = provider.issuer.clone();
        Some(provider.at(format!("{issuer}/token"), format!("{issuer}/auth")))
    }

    /// Runs `command`, which prints `issuer=URL` once it listens; the
    /// token and authorize URLs are the caller's to set.
    pub(crate) fn spawn(
        mut command: Command,
        redirect: String,
        cc_secret: &'static str,
    ) -> Provider {
        let mut child = command
            .env("REDIRECT_URI", &redirect)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the provider's interpreter");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        reader.read_line(&mut line).unwrap();
        // Anything it prints later goes on to our stderr: a closed pipe
        // would end it with EPIPE.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::stderr()));
        let issuer = line
            .trim()
            .strip_prefix("issuer=")
            .unwrap_or_else(|| panic!("the provider said {line:?}"))
            .to_owned();
        Provider {
            child,
            token_url: String::new(),
            authorize_url: String::new(),
            issuer,
            redirect,
            cc_secret,
        }
    }

    /// Sets where its token and authorize endpoints are.
    pub(crate) fn at(mut self, token_url: String, authorize_url: String) -> Provider {
        self.token_url = token_url;
        self.authorize_url = authorize_url;
        self
    }

    /// Adds `design`, an authorization-code profile for `client`.
    pub(crate) fn add_login(&self, env: &Env, client: &str, secret: Option<&str>, extra: &[&str]) {
        let authorize = &self.authorize_url;
        let token_url = &self.token_url;
        let mut args = vec![
            "add",
            "design",
            "--kind",
            "authorization-code",
            "--token-url",
            token_url,
            "--authorize-url",
            authorize,
            "--redirect-uri",
            &self.redirect,
            "--client-id",
            client,
            "--scope",
            "openid",
            "--scope",
            "offline_access",
            "--secrets-from",
            "-",
        ];
        args.extend_from_slice(extra);
        let secrets = match secret {
            Some(s) => serde_json::json!({ "client_secret": s }).to_string(),
            None => "{}".into(),
        };
        env.a365_with_stdin(&args, secrets.as_bytes()).ok();
    }

    /// `a365 add api`: a client-credentials profile for `cc-client`, scope
    /// `api`, with `extra` flags.
    pub(crate) fn add_client_credentials(&self, env: &Env, extra: &[&str]) -> Out {
        let token_url = &self.token_url;
        let mut args = vec![
            "add",
            "api",
            "--kind",
            "client-credentials",
            "--token-url",
            token_url,
            "--client-id",
            "cc-client",
            "--scope",
            "api",
            "--secrets-from",
            "-",
        ];
        args.extend_from_slice(extra);
        let secrets = serde_json::json!({ "client_secret": self.cc_secret }).to_string();
        env.a365_with_stdin(&args, secrets.as_bytes())
    }

    /// Spends `refresh_token` ourselves, as a second machine holding a copy
    /// would: the provider sees a replay and revokes the grant.
    pub(crate) fn replay(&self, client: &str, secret: &str, refresh_token: &str) -> u16 {
        use std::io::Write;
        // The refresh token on curl's stdin, never in its argv.
        let mut curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(&self.token_url)
            .args(["-d", "grant_type=refresh_token"])
            .args(["--data-urlencode", &format!("client_id={client}")])
            .args(["--data-urlencode", &format!("client_secret={secret}")])
            .args(["--data-urlencode", "refresh_token@-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = curl.stdin.take().unwrap();
        stdin.write_all(refresh_token.as_bytes()).unwrap();
        drop(stdin);
        let out = curl.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `a365 login design` with `tests/oidc/browser.py` as the browser: it
/// signs in and consents on the provider's own pages.
pub(crate) fn login(env: &Env) -> Out {
    Out::from(
        env.command(bin("a365"))
            .args(["login", "design", "--timeout", "30s"])
            .env("BROWSER", oidc_dir().join("browser.py"))
            .output()
            .unwrap(),
    )
}

/// The browser login yields a refresh token with the defaults (a365 sends
/// `prompt=consent` with `offline_access`); each refresh rotates it, the
/// new one stored before it is used; a restart serves the stored token
/// without an exchange.
fn login_refresh_restart(client: &str, secret: Option<&str>, extra: &[&str]) {
    let Some(provider) = Provider::start() else {
        return;
    };
    let env = Env::new();
    let agent = env.start_agent();
    provider.add_login(&env, client, secret, extra);
    let out = login(&env).ok();
    assert!(
        out.stderr
            .contains("renewed with its refresh token from now on"),
        "{}",
        out.stderr
    );
    let first_rt = env.stored_refresh_token("design").expect("a refresh token");
    let token = env.token("design");
    env.a365(&["refresh", "design"]).ok();
    let second_rt = env.stored_refresh_token("design").unwrap();
    assert_ne!(first_rt, second_rt, "the provider rotates refresh tokens");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["rotates"], true, "seen by the agent: {status}");
    let auth = secret.map(|_| {
        if extra.contains(&"basic") {
            "basic"
        } else {
            "post"
        }
    });
    assert_eq!(
        status[0]["client_auth"].as_str(),
        auth,
        "accepted at once: {status}"
    );
    let renewed = env.token("design");
    assert_ne!(renewed, token);
    // The old refresh token is spent: refreshing again uses the new one.
    env.a365(&["refresh", "design"]).ok();
    assert_ne!(env.stored_refresh_token("design").unwrap(), second_rt);
    let held = env.token("design");
    drop(agent.terminate());
    let _agent = env.start_agent();
    assert_eq!(
        env.token("design"),
        held,
        "served from the store, no exchange"
    );
}

#[test]
fn a_login_through_the_providers_pages_for_a_client_secret_post_client() {
    login_refresh_restart("post-client", Some(POST_SECRET), &[]);
}

#[test]
fn a_login_through_the_providers_pages_for_a_client_secret_basic_client() {
    login_refresh_restart(
        "basic-client",
        Some(BASIC_SECRET),
        &["--client-auth", "basic"],
    );
}

#[test]
fn a_login_through_the_providers_pages_for_a_public_pkce_client() {
    login_refresh_restart("public-client", None, &[]);
}

#[test]
fn client_credentials_from_the_provider_are_reused_across_restarts() {
    let Some(provider) = Provider::start() else {
        return;
    };
    let env = Env::new();
    let agent = env.start_agent();
    provider.add_client_credentials(&env, &[]).ok();
    let token = env.token("api");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["scopes"], serde_json::json!(["api"]), "{status}");
    drop(agent.terminate());
    let _agent = env.start_agent();
    assert_eq!(env.token("api"), token);
}

/// Another holder replays the refresh token the agent already spent: the
/// provider revokes the whole grant, and the agent's next refresh meets
/// `invalid_grant`, which it reports as "log in again" (exit 5) without
/// retrying a dead credential.
#[test]
fn a_replayed_refresh_token_revokes_the_grant_and_the_agent_asks_for_a_login() {
    if let Some(provider) = Provider::start() {
        replay_revokes_the_grant(&provider, "post-client", POST_SECRET);
    }
}

/// A login of `client`, a refresh, then the spent refresh token replayed
/// by another holder: the provider refuses it and revokes the grant, and
/// the agent's next refresh asks for a login (exit 5), never retried.
pub(crate) fn replay_revokes_the_grant(provider: &Provider, client: &str, secret: &str) {
    let env = Env::new();
    let _agent = env.start_agent();
    provider.add_login(&env, client, Some(secret), &[]);
    login(&env).ok();
    let spent = env.stored_refresh_token("design").unwrap();
    env.a365(&["refresh", "design"]).ok();
    assert_eq!(provider.replay(client, secret, &spent), 400);
    let out = env.a365(&["refresh", "design"]).code(5);
    assert!(out.stderr.contains("a365 login design"), "{}", out.stderr);
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "needs-reauth", "{status}");
}

/// `a365 remove` revokes the refresh token at the provider's RFC 7009
/// endpoint, authenticating as the profile's token requests do (HTTP
/// Basic for the basic client, which the provider enforces there too):
/// afterwards the provider refuses that refresh token.
#[test]
fn remove_revokes_the_refresh_token_at_the_providers_revocation_endpoint() {
    let Some(provider) = Provider::start() else {
        return;
    };
    for (client, secret, auth) in [
        ("post-client", POST_SECRET, "post"),
        ("basic-client", BASIC_SECRET, "basic"),
    ] {
        let env = Env::new();
        let _agent = env.start_agent();
        let revocation = format!("{}/token/revocation", provider.issuer);
        provider.add_login(
            &env,
            client,
            Some(secret),
            &["--client-auth", auth, "--revocation-url", &revocation],
        );
        login(&env).ok();
        let held = env.stored_refresh_token("design").unwrap();
        let out = env.a365(&["remove", "design"]).ok();
        assert!(
            out.stderr
                .contains("its refresh token was revoked at 127.0.0.1"),
            "{client}: {}",
            out.stderr
        );
        if auth == "post" {
            assert_eq!(provider.replay(client, secret, &held), 400, "revoked");
        }
    }
}

/// RFC 8707 resource indicators through `--authorize-param` and
/// `--token-param`: the provider issues JWT access tokens for that
/// audience at login, at every refresh, and to a client-credentials
/// client. An empty `prompt` sends none instead of `prompt=consent`, and
/// this provider then grants no refresh token, which the login says.
#[test]
fn resource_indicators_and_prompt_from_the_profiles_parameters() {
    let Some(provider) = Provider::start() else {
        return;
    };
    let resource = "https://api.test/designs";
    let authorize = format!("resource={resource}");
    let env = Env::new();
    let _agent = env.start_agent();
    provider.add_login(
        &env,
        "post-client",
        Some(POST_SECRET),
        &["--authorize-param", &authorize, "--token-param", &authorize],
    );
    login(&env).ok();
    assert_eq!(jwt_payload(&env.token("design"))["aud"], resource);
    env.a365(&["refresh", "design"]).ok();
    assert_eq!(jwt_payload(&env.token("design"))["aud"], resource);

    provider
        .add_client_credentials(&env, &["--token-param", &authorize])
        .ok();
    let claims = jwt_payload(&env.token("api"));
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["scope"], "api");

    let env = Env::new();
    let _agent = env.start_agent();
    provider.add_login(
        &env,
        "post-client",
        Some(POST_SECRET),
        &["--authorize-param", "prompt="],
    );
    let out = login(&env).ok();
    assert!(
        out.stderr
            .contains("granted no refresh token although offline_access was asked"),
        "{}",
        out.stderr
    );
}

/// A CA made here and a certificate for 127.0.0.1 it signed: (CA
/// certificate, server certificate, server key).
pub(crate) fn make_ca(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    let dir = env.path("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -days 1 -subj /CN=a365-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -keyout ca.key -out ca.pem
openssl req $ec -subj /CN=127.0.0.1 -keyout server.key -out server.csr
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile ext -out server.pem"#;
    let made = Command::new("sh")
        .args(["-c", script])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian: apt-get install openssl)");
    assert!(made.success());
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// node-oidc-provider over HTTPS with a certificate from a CA made in the
/// test: untrusted, the agent refuses it with advice (ca_file) and sends
/// nothing; with the profile's `ca_file` naming the CA (set, then put in
/// place, with no restart), client credentials, the browser login and a
/// rotating refresh all work over TLS.
#[test]
fn tls_with_a_ca_made_in_the_test() {
    let env = Env::new();
    let (ca, cert, key) = make_ca(&env);
    let Some(provider) = Provider::start_with(Some((&cert, &key))) else {
        return;
    };
    assert!(
        provider.issuer.starts_with("https://"),
        "{}",
        provider.issuer
    );
    let _agent = env.start_agent();
    let out = provider.add_client_credentials(&env, &[]).ok();
    assert!(out.stderr.contains("no token yet"), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(out.stderr.contains("ca_file"), "{}", out.stderr);
    env.a365(&["token", "api"]).code(6);
    // Named before the file is there (still untrusted), then put in
    // place: the next request reads it, with no restart.
    let ca_file = env.path("corp-ca.pem");
    let ca_file_arg = ca_file.to_str().unwrap();
    env.a365(&["set", "api", "ca_file", ca_file_arg]).ok();
    env.a365(&["refresh", "api"]).code(6);
    std::fs::copy(&ca, &ca_file).unwrap();
    env.a365(&["refresh", "api"]).ok();
    assert!(env.token("api").len() > 20);
    // A bundle others can write is not trusted: they could add their CA.
    let writable = env.path("writable-ca.pem");
    std::fs::copy(&ca, &writable).unwrap();
    crate::harness::set_mode(&writable, 0o666);
    let out = env
        .a365(&["set", "api", "ca_file", writable.to_str().unwrap()])
        .ok();
    assert!(
        out.stderr
            .contains("warning: the file cannot be used now (others can write it (mode 666))"),
        "{out:?}"
    );
    env.a365(&["refresh", "api"]).code(6);
    env.a365(&["set", "api", "ca_file", ca_file_arg]).ok();
    env.a365(&["refresh", "api"]).ok();
    // The test's certificate lives one day: doctor warns (exit 0), naming
    // when, and still passes the chain.
    let out = env.a365(&["doctor", "api"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ok    api: TLS: 127.0.0.1's certificate chain is trusted")),
        "{}",
        out.stdout
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("warn  api: TLS: 127.0.0.1's certificate expires in ")
                && l.contains(" UTC);")
        ),
        "{}",
        out.stdout
    );

    provider.add_login(
        &env,
        "post-client",
        Some(POST_SECRET),
        &["--ca-file", ca_file_arg],
    );
    let out = Out::from(
        env.command(bin("a365"))
            .args(["login", "design", "--timeout", "30s"])
            .env("BROWSER", oidc_dir().join("browser.py"))
            // For the browser only: the agent trusts the CA by ca_file.
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        out.stderr.contains("renewed with its refresh token"),
        "{}",
        out.stderr
    );
    let first = env.stored_refresh_token("design").unwrap();
    env.a365(&["refresh", "design"]).ok();
    assert_ne!(env.stored_refresh_token("design").unwrap(), first);
}
