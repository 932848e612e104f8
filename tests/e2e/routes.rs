//! Proxy routes (`a365 proxy`): the real agent forwards to the token
//! server's mock API (`/nexar/…` answers a bad token as Nexar does, with
//! a GraphQL error and status 200; `/altium/…` with 401), adding the
//! profile's token; real curl, Python `requests` and a Node GraphQL
//! client go through it unchanged but for the URL.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use a365_token_server::ServerConfig;

use crate::harness::{Env, OtherUser, Out, Session, require_root, set_mode, skip};

/// `a365 proxy add NAME --profile work --upstream UPSTREAM EXTRA…`; the
/// route's URL.
fn add_route(env: &Env, name: &str, upstream: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "proxy",
        "add",
        name,
        "--profile",
        "work",
        "--upstream",
        upstream,
    ];
    args.extend_from_slice(extra);
    let out = env.a365(&args).ok();
    assert!(
        out.stderr.contains("point your tool at http://127.0.0.1:"),
        "{out:#?}"
    );
    route(env, name)["url"].as_str().unwrap().to_owned()
}

/// `a365 proxy list NAME --json`'s entry.
fn route(env: &Env, name: &str) -> serde_json::Value {
    env.a365(&["proxy", "list", name, "--json"]).ok().json()[0].clone()
}

fn curl(args: &[&str]) -> Out {
    Out::from(
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl"),
    )
}

/// The body and status of a curl run with `-w '\n%{http_code}'`.
fn answer(out: &Out) -> (String, u16) {
    let (body, status) = out.stdout.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_owned(), status.trim().parse().unwrap_or(0))
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip(&format!("{tool} is not installed"));
    }
    found
}

/// A session (token server, agent, profile `work`) with the route `name`
/// to the mock API `api` (`nexar`, `altium`, or "" for the server's root):
/// the session, the upstream and the route's URL; `None` without curl.
fn routed(api: &str, name: &str, extra: &[&str]) -> Option<(Session, String, String)> {
    if !have("curl") {
        return None;
    }
    let s = Session::start(ServerConfig::default());
    let upstream = match api {
        "" => format!("http://{}/", s.server.addr()),
        api => format!("http://{}/{api}/", s.server.addr()),
    };
    let url = add_route(&s.env, name, &upstream, extra);
    Some((s, upstream, url))
}

#[test]
fn a_request_carries_the_profiles_token_and_nothing_of_the_clients() {
    let Some((s, upstream, url)) = routed("nexar", "api", &["--header", "X-Extra: from-the-route"])
    else {
        return;
    };
    let out = curl(&[
        "-H",
        "Authorization: Bearer the-clients-own",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "X-Hop: 1",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"query":"{ supSearch { hits } }"}"#,
        &format!("{url}graphql?x=1"),
    ]);
    let (body, status) = answer(&out.ok());
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let echo = &echo["data"];
    // The upstream accepted the profile's token: the client's never went.
    assert_eq!(echo["path"], "/nexar/graphql");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["authorization_headers"], 1);
    assert_eq!(echo["x_extra"], "from-the-route");
    assert_eq!(echo["host"], s.server.addr().to_string());
    assert_eq!(echo["body_len"], 34);
    let listed = route(&s.env, "api");
    assert_eq!(listed["served"], 1);
    assert_eq!(listed["replays"], 0);
    // The route outlives the agent: config.toml keeps it, at the same port.
    let text = std::fs::read_to_string(s.env.config_file()).unwrap();
    assert!(
        text.contains("[[proxy]]") && text.contains("name = \"api\""),
        "{text}"
    );
    // Its log names the route and never a header's value.
    let log = s.agent.log();
    assert!(!log.contains("the-clients-own") && !log.contains(&s.env.token("work")));
    // Replaced without --listen, it keeps its address: the tool's URL stays.
    s.env
        .a365(&[
            "proxy",
            "add",
            "api",
            "--profile",
            "work",
            "--upstream",
            &upstream,
            "--replace",
        ])
        .ok();
    assert_eq!(route(&s.env, "api")["url"], url.as_str());
    let (_, status) = answer(&curl(&[&url]));
    assert_eq!(status, 200, "served again at once");
    // `status` and `doctor` show it; `proxy remove` stops it.
    let status = s.env.a365(&["status"]).ok().stdout;
    assert!(
        status.contains("proxy routes") && status.contains(&url),
        "{status}"
    );
    let doctor = s.env.a365(&["doctor"]).ok().stdout;
    let expected = format!("ok    proxy api: {url} forwards to {upstream}");
    assert!(doctor.contains(&expected), "{expected:?} in:\n{doctor}");
    s.env.a365(&["proxy", "remove", "api"]).ok();
    let (_, status) = answer(&curl(&[&url]));
    assert_eq!(status, 0, "the route no longer listens");
    let out = s.env.a365(&["proxy", "remove", "api"]).code(1);
    assert!(
        out.stderr.contains("no proxy route named 'api'"),
        "{}",
        out.stderr
    );
}

/// Nexar's GraphQL `AuthExpiredToken` (status 200) makes exactly one
/// refresh and one replay; `watch` hears of it.
#[test]
fn an_expired_graphql_answer_makes_one_refresh_and_one_replay() {
    let Some((s, _, url)) = routed("nexar", "nexar", &[]) else {
        return;
    };
    let mut watch = s
        .env
        .command(crate::harness::bin("a365"))
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let token_requests = s.server.requests();
    let api_calls = s.server.api_calls();
    s.server.expire_access_tokens();
    let out = curl(&["--data", r#"{"query":"{ a }"}"#, &url]);
    let (body, status) = answer(&out.ok());
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"method\":\"POST\""),
        "the replay's answer: {body}"
    );
    assert_eq!(
        s.server.requests(),
        token_requests + 1,
        "exactly one refresh"
    );
    assert_eq!(
        s.server.api_calls(),
        api_calls + 2,
        "the request and one replay"
    );
    assert_eq!(route(&s.env, "nexar")["replays"], 1);
    // The refresh's event, then the replay's.
    let event = {
        use std::io::BufRead;
        let lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
        lines
            .map_while(Result::ok)
            .take(5)
            .find(|l| l.contains("\"replayed\""))
            .unwrap_or_default()
    };
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        event.contains("\"replayed\"") && event.contains("AuthExpiredToken"),
        "{event}"
    );
}

/// Altium's 401 makes one refresh and one replay; a refusal again within
/// moments makes no second refresh: the upstream's answer is passed on.
#[test]
fn a_401_makes_one_replay_and_a_second_refusal_is_passed_on() {
    let Some((s, _, url)) = routed("altium", "a365", &[]) else {
        return;
    };
    let token_requests = s.server.requests();
    s.server.expire_access_tokens();
    let (body, status) = answer(&curl(&[&format!("{url}projects")]).ok());
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.server.requests(), token_requests + 1);
    s.server.expire_access_tokens();
    let out = curl(&["-D", "-", &format!("{url}projects")]);
    let (body, status) = answer(&out.ok());
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("invalid_token"),
        "passed on as it came: {body}"
    );
    assert_eq!(s.server.requests(), token_requests + 1, "no second refresh");
    assert_eq!(route(&s.env, "a365")["replays"], 1);
}

/// A 2 MiB upload streams to the upstream, and is never replayed.
#[test]
fn a_large_upload_streams_and_is_not_replayed() {
    let Some((s, _, url)) = routed("nexar", "up", &[]) else {
        return;
    };
    let file = s.env.path("upload.bin");
    std::fs::write(&file, vec![b'x'; 2 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let (body, status) = answer(&curl(&["--data-binary", &data, &url]).ok());
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("\"body_len\":{}", 2 << 20)),
        "{body}"
    );
    let token_requests = s.server.requests();
    s.server.expire_access_tokens();
    let (body, status) = answer(&curl(&["--data-binary", &data, &url]).ok());
    assert_eq!(status, 200);
    assert!(
        body.contains("AuthExpiredToken"),
        "passed on, not replayed: {body}"
    );
    assert_eq!(s.server.requests(), token_requests, "no refresh for it");
    assert_eq!(route(&s.env, "up")["replays"], 0);
}

/// A redirect reaches the client as it came; following it (to another
/// host name) the client carries no token.
#[test]
fn redirects_are_passed_to_the_client_without_the_token() {
    let Some((_s, _, url)) = routed("", "r", &[]) else {
        return;
    };
    let out = curl(&["-D", "-", "-o", "/dev/null", &format!("{url}redirect")]).ok();
    assert!(out.stdout.contains("302"), "{out:#?}");
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("location: http://localhost:")
    );
    let (body, status) = answer(&curl(&["-L", &format!("{url}redirect")]));
    assert_eq!(status, 401, "the other host got no token: {body}");
}

/// Another local user is refused on a TCP route (even with the route's
/// secret) and on a socket route (even one whose file lets them in), and
/// nothing reaches the upstream.
#[test]
fn another_user_is_refused_on_tcp_and_socket_routes() {
    if !require_root("switching users") || !have("curl") {
        return;
    }
    let s = Session::start(ServerConfig::default());
    let upstream = format!("http://{}/nexar/", s.server.addr());
    let url = add_route(&s.env, "tcp", &upstream, &[]);
    let secret = route(&s.env, "tcp")["secret"].as_str().unwrap().to_owned();
    let open = tempfile::Builder::new()
        .prefix("a365-route-")
        .tempdir()
        .unwrap();
    set_mode(open.path(), 0o755);
    let socket = open.path().join("route.sock");
    s.env
        .a365(&[
            "proxy",
            "add",
            "sock",
            "--profile",
            "work",
            "--upstream",
            &upstream,
            "--listen",
            &format!("unix:{}", socket.display()),
        ])
        .ok();
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let calls = s.server.api_calls();
    let other = OtherUser::create();
    let as_other = |args: &[&str]| {
        Out::from(
            other
                .command("curl")
                .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let (body, status) = answer(&as_other(&[&url]));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("another user"), "{body}");
    let header = format!("x-a365-route-secret: {secret}");
    let (_, status) = answer(&as_other(&["-H", &header, &url]));
    assert_eq!(
        status, 403,
        "the secret does not make another user the owner"
    );
    // The socket file (0600) keeps them out; opened up, the peer check does.
    let sock = socket.display().to_string();
    let (_, status) = answer(&as_other(&["--unix-socket", &sock, "http://route/"]));
    assert_eq!(status, 0, "the socket file refuses another user");
    set_mode(&socket, 0o666);
    let (body, status) = answer(&as_other(&["--unix-socket", &sock, "http://route/"]));
    assert_eq!(status, 403, "{body}");
    assert_eq!(s.server.api_calls(), calls, "nothing was forwarded");
    assert!(route(&s.env, "tcp")["refused"].as_u64().unwrap() >= 2);
    // The owner is served on both.
    let (_, status) = answer(&curl(&["--unix-socket", &sock, "http://route/"]));
    assert_eq!(status, 200);
    let (_, status) = answer(&curl(&[&url]));
    assert_eq!(status, 200);
}

/// A route that wants its secret refuses a request without it, even the
/// owner's, and serves one with it.
#[test]
fn a_route_that_requires_its_secret_refuses_without_it() {
    let Some((s, _, url)) = routed("nexar", "locked", &["--require-secret"]) else {
        return;
    };
    let (body, status) = answer(&curl(&[&url]));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("x-a365-route-secret"), "{body}");
    let details = s.env.a365(&["proxy", "list", "locked"]).ok().stdout;
    let secret = details
        .lines()
        .find_map(|l| l.strip_prefix("secret       x-a365-route-secret: "))
        .unwrap_or_else(|| panic!("{details}"))
        .to_owned();
    let (body, status) = answer(&curl(&[
        "-H",
        &format!("x-a365-route-secret: {secret}"),
        &url,
    ]));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"secret_header\":false"),
        "the secret is not forwarded: {body}"
    );
    let file = s.env.path("state/a365/proxy/locked.secret");
    let mode = std::fs::metadata(file).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
}

/// A Gov Cloud token (it carries `secure`) is never sent to an upstream
/// outside the Gov Cloud: 421, nothing forwarded; and a route from a
/// Gov profile to a commercial upstream is refused when added.
#[test]
fn a_gov_token_is_never_sent_across_the_partition() {
    if !have("curl") {
        return;
    }
    let s = Session::start(ServerConfig {
        gov: true,
        ..ServerConfig::default()
    });
    let upstream = format!("http://{}/nexar/", s.server.addr());
    let url = add_route(&s.env, "gov", &upstream, &[]);
    let calls = s.server.api_calls();
    let (body, status) = answer(&curl(&[&url]));
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("Gov Cloud"), "{body}");
    assert_eq!(s.server.api_calls(), calls);

    let env = Env::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.config_file(),
        "[profiles.g]\nkind = \"refresh\"\nrealm = \"altium365-gov\"\nclient_id = \"c\"\n",
    )
    .unwrap();
    let _agent = env.start_agent();
    let out = env
        .a365(&[
            "proxy",
            "add",
            "x",
            "--profile",
            "g",
            "--upstream",
            "https://api.nexar.com/graphql/",
        ])
        .code(8);
    assert!(out.stderr.contains("Gov Cloud"), "{}", out.stderr);
    assert!(
        !std::fs::read_to_string(env.config_file())
            .unwrap()
            .contains("[[proxy]]")
    );
}

/// Bad routes get clear errors and nothing is kept.
#[test]
fn bad_routes_are_refused_with_a_reason() {
    let s = Session::start(ServerConfig::default());
    let env = &s.env;
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "proxy",
                "add",
                "x",
                "--profile",
                "work",
                "--upstream",
                "http://api.nexar.com/",
            ],
            "plain http",
        ),
        (
            &[
                "proxy",
                "add",
                "x",
                "--profile",
                "work",
                "--upstream",
                "https://h/",
                "--listen",
                "0.0.0.0:1",
            ],
            "loopback only",
        ),
        (
            &[
                "proxy",
                "add",
                "x",
                "--profile",
                "nobody",
                "--upstream",
                "https://h/",
            ],
            "no profile named",
        ),
        (
            &["proxy", "add", "other", "--profile", "work"],
            "not a known API",
        ),
        (
            &[
                "proxy",
                "add",
                "x",
                "--profile",
                "work",
                "--upstream",
                "https://h/",
                "--header",
                "Authorization: x",
            ],
            "set by the route",
        ),
        (
            &["proxy", "add", "altium", "--profile", "work"],
            "--workspace",
        ),
    ];
    for (args, says) in cases {
        let out = env.a365(args);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    let listed = env.a365(&["proxy", "list", "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 0);
    // A port in use: refused, and the route of that name is not kept.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let out = env.a365(&[
        "proxy",
        "add",
        "x",
        "--profile",
        "work",
        "--upstream",
        "https://h/",
        "--listen",
        &listen,
    ]);
    assert!(out.stderr.contains("cannot listen"), "{}", out.stderr);
}

/// Python `requests` and a Node GraphQL client (graphql-request), given
/// only the route's URL.
#[test]
fn python_requests_and_a_node_graphql_client_work_through_a_route() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/dot/.venv/bin/python");
    let node_client = root.join("tests/clients/node_modules/graphql-request");
    if !python.exists() {
        skip("Python requests is not installed (tests/dot/.venv: see .ci/run)");
        return;
    }
    if !node_client.exists() {
        skip("graphql-request is not installed (npm ci --prefix tests/clients)");
        return;
    }
    let s = Session::start(ServerConfig::default());
    let upstream = format!("http://{}/nexar/", s.server.addr());
    let url = add_route(&s.env, "nexar", &upstream, &[]);
    let script = "import requests, sys\n\
                  r = requests.post(sys.argv[1], json={'query': '{ a }'}, timeout=20)\n\
                  r.raise_for_status()\n\
                  print(r.json()['data']['authorization_headers'])\n";
    let out = Out::from(
        Command::new(&python)
            .args(["-c", script, &url])
            .output()
            .unwrap(),
    );
    assert_eq!(out.ok().stdout.trim(), "1");
    s.server.expire_access_tokens();
    let js = "import { request, gql } from 'graphql-request';\n\
              const data = await request(process.argv[1], gql`{ method }`);\n\
              console.log(data.method);\n";
    let out = Out::from(
        Command::new("node")
            .current_dir(root.join("tests/clients"))
            .args(["--input-type=module", "-e", js, &url])
            .output()
            .unwrap(),
    );
    // Replayed after the expiry: the client saw only the good answer.
    assert_eq!(out.ok().stdout.trim(), "POST");
    assert_eq!(route(&s.env, "nexar")["replays"], 1);
}

/// A web page cannot use a route: one reaching the port under its own
/// name (DNS rebinding) is refused by its `Host`, one of another origin by
/// its `Origin`; an allowed origin (a browser-based IDE) is served.
#[test]
fn a_web_page_is_refused_unless_its_origin_is_allowed() {
    let Some((s, _, url)) = routed("nexar", "ide", &["--allow-origin", "https://ide.example"])
    else {
        return;
    };
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let calls = s.server.api_calls();
    let rebound = format!("Host: attacker.example:{port}");
    let (body, status) = answer(&curl(&["-H", &rebound, &url]));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("attacker.example"), "{body}");
    let (body, status) = answer(&curl(&["-H", "Origin: https://evil.example", &url]));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--allow-origin"), "{body}");
    assert_eq!(s.server.api_calls(), calls, "nothing was forwarded");
    let (body, status) = answer(&curl(&["-H", "Sec-Fetch-Site: cross-site", &url]));
    assert_eq!(status, 403, "an image or script of another site: {body}");
    let (_, status) = answer(&curl(&["-H", "Origin: https://ide.example", &url]));
    assert_eq!(status, 200);
    let out = curl(&["-D", "-", "-H", "Origin: https://ide.example", &url]).ok();
    let head = out.stdout.to_ascii_lowercase();
    assert!(head.contains("content-security-policy: sandbox"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let (_, status) = answer(&curl(&["-H", &format!("Host: localhost:{port}"), &url]));
    assert_eq!(status, 200);
}

/// An HTTPS upstream is verified with the same CAs as token requests: a
/// certificate from a CA made in the test is refused (502, nothing
/// forwarded with the token), and trusted once the profile's `ca_file`
/// names the CA, with no restart and no new route.
#[test]
fn an_https_upstream_is_verified_with_the_profiles_cas() {
    if !have("curl") || !have("openssl") {
        return;
    }
    let s = Session::start(ServerConfig::default());
    let (ca, cert, key) = crate::oidc::make_ca(&s.env);
    let port = crate::harness::free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let url = add_route(&s.env, "tls", &format!("https://127.0.0.1:{port}/"), &[]);
    let (body, status) = answer(&curl(&[&url]));
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("certificate") || body.contains("did not answer"),
        "{body}"
    );
    s.env
        .a365(&["set", "work", "ca_file", &ca.display().to_string()])
        .ok();
    let (body, status) = answer(&curl(&[&url]));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("s_server"), "openssl's page: {body}");
    let _ = server.kill();
    let _ = server.wait();
}
