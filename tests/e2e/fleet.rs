//! Fleet mode against a real 3-member etcd cluster on loopback: several
//! real agents share one rotating refresh token. The token server counts
//! replays (a spent refresh token presented again), which a provider
//! like node-oidc-provider answers by revoking the whole grant.
//!
//! Needs `etcd` and `etcdctl` (Debian `etcd-server`, `etcd-client`):
//! skipped with a word without them, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::free_port;
use crate::harness::{Agent, Env, Out, set_mode, skip, wait_until};

/// A 3-member etcd cluster on loopback, in a temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial: String,
    tls: Option<Tls>,
}

/// Client TLS of the cluster: a CA made in the test, the members'
/// certificate, and a client certificate the members require.
struct Tls {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    /// A client certificate without a CommonName, for a member that logs
    /// in with a password (etcd's JSON gateway refuses a CN then).
    member: (PathBuf, PathBuf),
}

impl Tls {
    fn make(env: &Env) -> Tls {
        let (ca, _, _) = crate::oidc::make_ca(env);
        let dir = ca.parent().unwrap().to_owned();
        // etcd's JSON gateway reaches its own gRPC port with the member's
        // certificate as a client: it needs clientAuth too.
        let script = r#"set -e
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
    -keyout etcd.key -out etcd.csr
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >etcd.ext
openssl x509 -req -in etcd.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile etcd.ext -out etcd.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=a365-runner \
    -keyout client.key -out client.csr
printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile client.ext -out client.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /O=a365 \
    -keyout member.key -out member.csr
openssl x509 -req -in member.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile client.ext -out member.pem"#;
        let made = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success());
        set_mode(&dir.join("client.key"), 0o600);
        set_mode(&dir.join("member.key"), 0o600);
        Tls {
            ca,
            server: (dir.join("etcd.pem"), dir.join("etcd.key")),
            client: (dir.join("client.pem"), dir.join("client.key")),
            member: (dir.join("member.pem"), dir.join("member.key")),
        }
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

fn have(tool: &str, version: &str) -> bool {
    Command::new(tool)
        .arg(version)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Cluster {
    /// `None`, with the reason printed, where etcd is not installed.
    fn start() -> Option<Cluster> {
        Cluster::start_with(None)
    }

    fn start_with(tls: Option<Tls>) -> Option<Cluster> {
        if !(have("etcd", "--version") && have("etcdctl", "version")) {
            skip("etcd or etcdctl is not installed (Debian: etcd-server, etcd-client)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("a365-etcd-")
            .tempdir()
            .unwrap();
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("e{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir,
            members,
            initial,
            tls,
        };
        for i in 0..3 {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        Some(cluster)
    }

    fn start_member(&mut self, i: usize) {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut etcd = Command::new("etcd");
        if let Some(tls) = &self.tls {
            etcd.arg("--cert-file")
                .arg(&tls.server.0)
                .arg("--key-file")
                .arg(&tls.server.1)
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&tls.ca);
        }
        let child = etcd
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "a365-test",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client))
            .collect()
    }

    /// `etcdctl ARGS…` against the whole cluster.
    fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        self.etcdctl_command(args).output().unwrap()
    }

    fn etcdctl_command(&self, args: &[&str]) -> Command {
        let mut etcdctl = Command::new("etcdctl");
        if let Some(tls) = &self.tls {
            etcdctl
                .arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client.0.display()))
                .arg(format!("--key={}", tls.client.1.display()));
        }
        etcdctl
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["--command-timeout", "3s"])
            .args(args);
        etcdctl
    }

    fn wait_healthy(&self) {
        let ok = wait_until(Duration::from_secs(30), || {
            self.etcdctl(&["put", "a365-health", "ok"]).status.success()
        });
        assert!(ok, "etcd did not become healthy: {}", self.logs());
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                format!(
                    "--- {}\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value at `key`, as a writer of etcd reads it.
    fn get(&self, key: &str) -> String {
        let out = self.etcdctl(&["get", "--print-value-only", key]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    }

    /// Writes `value` at `key` as anyone with write access to etcd can.
    fn put(&self, key: &str, value: &str) {
        let out = self.etcdctl(&["put", key, value]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Everything under the fleet's prefix, as etcdctl prints it.
    /// Range calls the members have served, from their metrics.
    fn range_calls(&self) -> u64 {
        self.calls("Range")
    }

    /// How many gRPC calls of `method` the members handled so far (the
    /// JSON gateway's included).
    fn calls(&self, method: &str) -> u64 {
        use std::io::{Read, Write};
        let mut total = 0.0;
        for m in &self.members {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", m.client)) else {
                continue;
            };
            write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            total += text
                .lines()
                .filter(|l| {
                    l.starts_with("grpc_server_handled_total")
                        && l.contains(&format!("grpc_method=\"{method}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total as u64
    }

    fn dump(&self) -> String {
        let out = self.etcdctl(&["get", "--prefix", "a365/"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

const KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

/// One machine of the fleet: its own directories, socket and agent.
struct Machine {
    env: Env,
    agent: Option<Agent>,
}

impl Machine {
    fn refresher(cluster: &Cluster, name: &str) -> Machine {
        Machine::with(cluster, name, "refresher", "")
    }

    fn with(cluster: &Cluster, name: &str, role: &str, extra: &str) -> Machine {
        let env = Env::new();
        let key_line = match role {
            "refresher" if !extra.contains("key_file") => {
                let key: PathBuf = env.path("fleet.key");
                std::fs::write(&key, KEY).unwrap();
                set_mode(&key, 0o600);
                format!("key_file = {:?}\n", key.display().to_string())
            }
            "consumer" if !extra.contains("public_key") => {
                format!("{}\n", public_key_line(cluster))
            }
            _ => String::new(),
        };
        let insecure = match cluster.tls {
            Some(_) => "",
            None => "insecure_loopback = true\n",
        };
        let endpoints = cluster
            .endpoints()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sync = match extra.contains("sync_secs") {
            true => "",
            false => "sync_secs = 1\n",
        };
        let config = format!(
            "store = \"file\"\n[fleet]\netcd = [{endpoints}]\nmember = \"{name}\"\nrole = \"{role}\"\n\
             {key_line}{insecure}lease_secs = 5\n{sync}etcd_timeout_ms = 1000\n{extra}"
        );
        std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
        std::fs::write(env.config_file(), config).unwrap();
        let agent = env.spawn_agent(&["--http-timeout", "3", "--answer-wait", "3"]);
        agent.wait_ready(&env.socket);
        Machine {
            env,
            agent: Some(agent),
        }
    }

    /// Stops the agent and starts it again on `extra` settings.
    fn restart(&mut self, cluster: &Cluster, name: &str, extra: &str) {
        self.agent.take().unwrap().terminate();
        let fresh = Machine::with(cluster, name, "refresher", extra);
        std::fs::copy(fresh.env.config_file(), self.env.config_file()).unwrap();
        drop(fresh);
        let agent = self
            .env
            .spawn_agent(&["--http-timeout", "3", "--answer-wait", "3"]);
        agent.wait_ready(&self.env.socket);
        self.agent = Some(agent);
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().unwrap()
    }

    /// `a365 token work`, or the error it printed.
    fn token(&self) -> Result<String, String> {
        let out = self.env.a365(&["token", "work", "--min-valid", "0s"]);
        match out.code {
            0 => Ok(out.stdout.trim_end().to_owned()),
            _ => Err(out.stderr),
        }
    }

    fn status(&self) -> serde_json::Value {
        let out = self.env.a365(&["status", "--json"]).ok();
        let all = out.json();
        all.as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "work").cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    fn log(&self) -> String {
        self.agent().log()
    }
}

/// The `public_key = …` line for consumers of a fleet keyed with [`KEY`],
/// as `a365-agent --fleet-public-key` prints it on a refresher.
fn public_key_line(cluster: &Cluster) -> String {
    let env = Env::new();
    let key = env.path("fleet.key");
    std::fs::write(&key, KEY).unwrap();
    set_mode(&key, 0o600);
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    let endpoints = format!("{:?}", cluster.endpoints()[0]);
    std::fs::write(
        env.config_file(),
        format!(
            "[fleet]\netcd = [{endpoints}]\ninsecure_loopback = true\nkey_file = {:?}\n",
            key.display().to_string()
        ),
    )
    .unwrap();
    let out = Out::from(
        env.command(crate::harness::bin("a365-agent"))
            .arg("--fleet-public-key")
            .output()
            .unwrap(),
    )
    .ok();
    let line = out.stdout.trim().to_owned();
    assert!(line.starts_with("public_key = \""), "{line}");
    line
}

/// `a365 add work --shared` on `machine` against `server`.
fn share(machine: &Machine, server: &TokenServer) -> String {
    let (rt, out) = machine.env.try_add_refresh("work", server, &["--shared"]);
    assert_eq!(
        out.code,
        0,
        "{} {}\n{}",
        out.stdout,
        out.stderr,
        machine.log()
    );
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("added to the fleet"), "{said}");
    rt
}

fn server(lifetime_secs: u64, rotate: bool) -> TokenServer {
    TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(lifetime_secs),
        rotate,
        ..ServerConfig::default()
    })
    .unwrap()
}

/// A rotating provider, and refresher `a` serving the profile it shared.
fn one_member_sharing(cluster: &Cluster) -> (TokenServer, Machine) {
    let server = server(3600, true);
    let a = Machine::refresher(cluster, "a");
    share(&a, &server);
    all_serve(&[&a], &server, Duration::from_secs(10));
    (server, a)
}

fn refreshers(cluster: &Cluster, n: usize) -> Vec<Machine> {
    (0..n)
        .map(|i| Machine::refresher(cluster, &format!("m{i}")))
        .collect()
}

/// Over `secs`, tokens of 6 s are renewed at 4.2 to 4.5 s of their life:
/// about one token request per 4.5 s for the whole fleet, not one per
/// member.
fn one_request_per_expiry(server: &TokenServer, secs: u64) {
    let before = server.requests();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let sent = server.requests() - before;
    let elapsed = start.elapsed().as_secs_f64();
    let most = (elapsed / 4.2).ceil() as usize + 1;
    assert!(
        (2..=most).contains(&sent),
        "{sent} token requests in {elapsed:.1} s by the fleet (at most {most})"
    );
}

/// Every machine serves a token the server issued, within `timeout`.
fn all_serve(machines: &[&Machine], server: &TokenServer, timeout: Duration) {
    for m in machines {
        let ok = wait_until(timeout, || {
            m.token()
                .is_ok_and(|t| server.issued_access_tokens().contains(&t))
        });
        assert!(ok, "a member serves no token: {:?}\n{}", m.token(), m.log());
    }
}

#[test]
fn three_agents_share_one_rotating_credential_with_one_refresh_per_expiry() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(6, true);
    let machines = refreshers(&cluster, 3);
    let rt = share(&machines[0], &server);
    let refs: Vec<&Machine> = machines.iter().collect();
    all_serve(&refs, &server, Duration::from_secs(10));
    one_request_per_expiry(&server, 16);
    assert_eq!(server.replays(), 0, "a spent refresh token was sent again");
    all_serve(&refs, &server, Duration::from_secs(5));
    let status = machines[1].status();
    assert_eq!(status["store"], "fleet", "{status}");
    assert!(
        status["refreshed_by"]
            .as_str()
            .is_some_and(|m| m.starts_with('m')),
        "{status}"
    );
    assert_eq!(status["rotates"], true, "{status}");
    // Neither etcd nor any machine's disk holds a refresh token or the
    // client secret in the clear.
    let dump = cluster.dump();
    assert!(dump.contains("a365/secret/work"), "{dump}");
    for secret in server.issued_refresh_tokens().iter().chain([&rt]) {
        assert!(
            !dump.contains(secret.as_str()),
            "a refresh token is in etcd in the clear"
        );
    }
    assert!(
        !dump.contains("test-secret"),
        "the client secret is in etcd in the clear"
    );
    for m in &machines {
        assert!(
            !m.env.credential_file("work").exists(),
            "a member stored the credential locally"
        );
        let log = m.log();
        assert!(
            !log.contains("test-secret") && !log.contains(&rt),
            "a secret in a log"
        );
    }
}

#[test]
fn a_lock_holder_stalled_past_its_lease_never_causes_a_replay() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    share(&a, &server);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    let before = server.requests();
    // A sends its refresh; the answer takes 1 s, and A is stopped
    // (SIGSTOP: a GC pause, a laptop lid) for longer than its lease.
    server.set_fault(Fault::Delay(Duration::from_secs(1)), Some(1));
    let mut forced = a.env.refresh_in_background("work");
    assert!(wait_until(Duration::from_secs(5), || server.requests() > before));
    a.agent().signal(rustix::process::Signal::STOP);
    std::thread::sleep(Duration::from_secs(7));
    // B wants a fresh token now: it takes the lock once A's lease ended,
    // finds A's refresh in flight and does not send the spent token.
    let out = b.env.a365(&["refresh", "work"]);
    a.agent().signal(rustix::process::Signal::CONT);
    let _ = forced.wait();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.replays(), 0, "B replayed A's refresh token");
    assert_eq!(
        server.requests(),
        before + 1,
        "B sent a request:\n{}",
        b.log()
    );
    assert_eq!(out.code, 5, "B: {} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("never had its answer written"),
        "{}",
        out.stderr
    );
    // A, resumed, finds its request timed out (the answer is lost to it)
    // and takes the shared dead state; had it read the answer first, it
    // would have written it and revived the credential. Either way nobody
    // sends anything more, and nothing spent is sent again.
    let settled = wait_until(Duration::from_secs(10), || {
        let status = a.status();
        status["state"] == "needs-reauth"
            || (status["state"] == "fresh" && a.token().ok() == server.last_access_token())
    });
    assert!(
        settled,
        "A neither took the dead state nor revived it:\n{}",
        a.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.requests(),
        before + 1,
        "a request after the stall:\n{}",
        a.log()
    );
    assert_eq!(server.replays(), 0);
}

#[test]
fn invalid_grant_is_dead_for_every_member_and_nothing_more_is_sent() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    share(&a, &server);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    server.set_fault(Fault::InvalidGrant, None);
    let out = a.env.a365(&["refresh", "work"]);
    assert_eq!(out.code, 5, "{} {}", out.stdout, out.stderr);
    let sent = server.requests();
    // B learns it from the fleet, without a request of its own.
    let out = b.env.a365(&["refresh", "work"]);
    assert_eq!(out.code, 5, "{} {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("invalid_grant"), "{}", out.stderr);
    let status = b.status();
    assert_eq!(status["state"], "needs-reauth", "{status}");
    assert_eq!(server.requests(), sent, "B sent a dead refresh token");
}

#[test]
fn a_killed_lock_holder_blocks_the_fleet_for_at_most_its_lease() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // Refresh tokens that do not rotate: an answer lost with its member
    // is safe to ask again.
    let server = server(3600, false);
    let a = Machine::refresher(&cluster, "a");
    let mut b = Machine::refresher(&cluster, "b");
    share(&b, &server);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    // B dies while its request is at the server, holding the lock.
    server.set_fault(Fault::Delay(Duration::from_secs(2)), Some(1));
    let before = server.requests();
    let mut forced = b.env.refresh_in_background("work");
    assert!(wait_until(Duration::from_secs(5), || server.requests() > before));
    b.agent.take().unwrap().kill();
    let _ = forced.wait();
    let killed = Instant::now();
    let out = a.env.a365(&["refresh", "work"]);
    let waited = killed.elapsed();
    out.ok();
    // The lease is 5 s; A retries its lock every quarter second.
    assert!(
        waited < Duration::from_secs(8),
        "the fleet waited {waited:?}:\n{}",
        a.log()
    );
    assert_eq!(a.status()["refreshed_by"], "a");
}

#[test]
fn etcd_losing_a_member_goes_on_and_losing_quorum_keeps_serving() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let (server, a) = one_member_sharing(&cluster);
    cluster.stop_member(0);
    // Refreshes go on once the other two have a leader (within a second
    // when the one stopped led).
    let goes_on = wait_until(Duration::from_secs(10), || {
        a.env.a365(&["refresh", "work"]).code == 0
    });
    assert!(
        goes_on,
        "no refresh with one etcd member down:\n{}",
        a.log()
    );
    let token = a.token().unwrap();
    cluster.stop_member(1);
    // No quorum: the held token is served, a refresh says why it cannot.
    assert_eq!(a.token().unwrap(), token);
    let out = a.env.a365(&["refresh", "work"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("etcd"), "{}", out.stderr);
    assert_eq!(a.token().unwrap(), token);
    assert_eq!(server.replays(), 0);
    // `a365 doctor` says etcd is the trouble.
    let doctor = a.env.a365(&["doctor"]);
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert_eq!(doctor.code, 1, "{said}");
    let etcd_line = said
        .lines()
        .find(|l| l.contains("etcd: "))
        .unwrap_or_default();
    assert!(!etcd_line.contains("reached"), "{said}");
    // Back by itself once etcd is.
    cluster.start_member(0);
    cluster.start_member(1);
    cluster.wait_healthy();
    let back = wait_until(Duration::from_secs(60), || {
        a.env.a365(&["refresh", "work"]).code == 0
    });
    assert!(back, "no refresh after etcd recovered:\n{}", a.log());
    assert_eq!(server.replays(), 0);
}

#[test]
fn a_consumer_serves_the_shared_token_and_cannot_read_the_credential() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // Users and roles as the README shows them.
    let ctl = |args: &[&str]| {
        let out = cluster.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ctl(&["user", "add", "root:rootpw"]);
    ctl(&["role", "add", "a365-refresher"]);
    ctl(&[
        "role",
        "grant-permission",
        "a365-refresher",
        "--prefix=true",
        "readwrite",
        "a365/",
    ]);
    ctl(&["role", "add", "a365-consumer"]);
    ctl(&[
        "role",
        "grant-permission",
        "a365-consumer",
        "--prefix=true",
        "read",
        "a365/public/",
    ]);
    ctl(&["user", "add", "refresher:refresherpw"]);
    ctl(&["user", "grant-role", "refresher", "a365-refresher"]);
    ctl(&["user", "add", "consumer:consumerpw"]);
    ctl(&["user", "grant-role", "consumer", "a365-consumer"]);
    ctl(&["auth", "enable"]);
    let password = |env: &Env, pw: &str| {
        let path = env.path("etcd.password");
        std::fs::write(&path, format!("{pw}\n")).unwrap();
        set_mode(&path, 0o600);
        path.display().to_string()
    };
    let files = Env::new();
    let refresher_pw = password(&files, "refresherpw");
    let consumer_pw = files.path("consumer.password");
    std::fs::write(&consumer_pw, "consumerpw\n").unwrap();
    set_mode(&consumer_pw, 0o600);
    let consumer_pw = consumer_pw.display().to_string();
    let server = server(3600, true);
    let r = Machine::with(
        &cluster,
        "r",
        "refresher",
        &format!("user = \"refresher\"\npassword_file = {refresher_pw:?}\n"),
    );
    let c = Machine::with(
        &cluster,
        "c",
        "consumer",
        &format!("user = \"consumer\"\npassword_file = {consumer_pw:?}\n"),
    );
    let rt = share(&r, &server);
    all_serve(&[&r, &c], &server, Duration::from_secs(10));
    // A refresh on the refresher reaches the consumer.
    r.env.a365(&["refresh", "work"]).ok();
    let newest = server.last_access_token().unwrap();
    let c_token = c.token().unwrap();
    assert!(server.issued_access_tokens().contains(&c_token));
    // A consumer's refresh takes what the fleet holds: the newest token.
    c.env.a365(&["refresh", "work"]).ok();
    assert_eq!(c.token().as_deref(), Ok(newest.as_str()));
    // etcd itself refuses the consumer the sealed credential.
    let denied = cluster.etcdctl(&["--user", "consumer:consumerpw", "get", "a365/secret/work"]);
    assert!(!denied.status.success(), "a consumer read the credential");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"));
    let log = c.log();
    assert!(!log.contains(&rt) && !log.contains("test-secret"));
    // Its doctor checks etcd as it reads it, and no token endpoint.
    let doctor = c.env.a365(&["doctor"]);
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(said.contains("is a consumer"), "{said}");
    assert!(said.contains("etcd: reached"), "{said}");
    assert!(said.contains("never called here"), "{said}");
    // A consumer cannot add to the fleet.
    let (_, out) = c.env.try_add_refresh("other", &server, &["--shared"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("consumer"), "{}", out.stderr);
}

#[test]
fn tls_to_etcd_with_a_client_certificate() {
    let pki = Env::new();
    let tls = Tls::make(&pki);
    let (ca, cert, key) = (tls.ca.clone(), tls.client.0.clone(), tls.client.1.clone());
    let Some(cluster) = Cluster::start_with(Some(tls)) else {
        return;
    };
    assert!(cluster.endpoints()[0].starts_with("https://"));
    let server = server(3600, true);
    let with_cert = format!(
        "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let a = Machine::with(&cluster, "a", "refresher", &with_cert);
    share(&a, &server);
    all_serve(&[&a], &server, Duration::from_secs(10));
    a.env.a365(&["refresh", "work"]).ok();
    // Without a client certificate etcd refuses the handshake: a clear
    // error, and nothing is put in the fleet.
    let without = format!("ca = {:?}\n", ca.display().to_string());
    let b = Machine::with(&cluster, "b", "refresher", &without);
    let (_, out) = b.env.try_add_refresh("other", &server, &["--shared"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("etcd"), "{}", out.stderr);
    assert!(!cluster.dump().contains("a365/public/other"));
}

/// With polling all but off (`sync_secs` an hour), a profile shared on
/// one member reaches another through the etcd watch, and so does its
/// removal; a member whose watch is up reads nothing while idle.
#[test]
fn a_shared_profile_and_its_removal_reach_every_member_through_the_watch() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let a = Machine::with(&cluster, "a", "refresher", "sync_secs = 3600\n");
    let b = Machine::with(&cluster, "b", "refresher", "sync_secs = 3600\n");
    // Let b's watch be set up before anything is shared.
    assert!(wait_until(Duration::from_secs(5), || b
        .log()
        .contains("following the fleet's profiles with a watch")));
    share(&a, &server);
    let shared = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || b.token().is_ok()),
        "b never served the shared profile:\n{}",
        b.log()
    );
    let added = shared.elapsed();
    // Idle, with the watches up: no member reads anything.
    std::thread::sleep(Duration::from_secs(1));
    let before = cluster.range_calls();
    assert!(before > 0, "the members' metrics count no Range call");
    std::thread::sleep(Duration::from_secs(5));
    let idle_reads = cluster.range_calls() - before;
    a.env.a365(&["remove", "work"]).ok();
    let removed_at = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || b.token().is_err()),
        "b still serves a removed profile:\n{}",
        b.log()
    );
    let removed = removed_at.elapsed();
    println!(
        "through the watch: added in {added:?}, removed in {removed:?}, {idle_reads} reads in 5 s idle"
    );
    assert!(added < Duration::from_secs(2) && removed < Duration::from_secs(2));
    assert_eq!(idle_reads, 0, "an idle fleet reads etcd");
}

/// The README's fleet settings and etcd commands, run as written (paths
/// and endpoints swapped for the test's) against a cluster that serves
/// TLS, asks for client certificates and has authentication on.
#[test]
fn the_readme_fleet_block_works_with_tls_and_a_password() {
    let pki = Env::new();
    let tls = Tls::make(&pki);
    let (ca, cert, key) = (tls.ca.clone(), tls.client.0.clone(), tls.client.1.clone());
    let (member_cert, member_key) = tls.member.clone();
    let Some(cluster) = Cluster::start_with(Some(tls)) else {
        return;
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = |after: &str, fence: &str| -> String {
        let from = readme.find(after).unwrap();
        let start = from + readme[from..].find(fence).unwrap() + fence.len();
        let end = start + readme[start..].find("```").unwrap();
        readme[start..end].to_owned()
    };
    // The etcd commands, one by one, with the passwords they read.
    let dir = pki.path("readme");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, pw) in [
        ("runner.password", "runnerpw"),
        ("replica.password", "replicapw"),
        ("root.password", "rootpw"),
    ] {
        std::fs::write(dir.join(file), pw).unwrap();
        set_mode(&dir.join(file), 0o600);
    }
    let commands = block("Consumers see nothing but access tokens", "```sh\n");
    for line in commands
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let out = Command::new("sh")
            .args(["-c", line])
            .current_dir(&dir)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", cluster.endpoints().join(","))
            .env("ETCDCTL_CACERT", &ca)
            .env("ETCDCTL_CERT", &cert)
            .env("ETCDCTL_KEY", &key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The settings, with this test's files and endpoints.
    let env = Env::new();
    let fleet_key = env.path("fleet.key");
    std::fs::write(&fleet_key, KEY).unwrap();
    set_mode(&fleet_key, 0o600);
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let endpoints: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    let settings = block("### One credential for many machines", "```toml\n");
    let readme_endpoints = settings.lines().find(|l| l.starts_with("etcd = ")).unwrap();
    let settings = settings
        .replace(
            readme_endpoints,
            &format!("etcd = [{}]", endpoints.join(", ")),
        )
        .replace("\"/etc/a365/fleet.key\"", &path(&fleet_key))
        .replace("\"/etc/a365/etcd-ca.pem\"", &path(&ca))
        .replace("\"/etc/a365/runner.pem\"", &path(&member_cert))
        .replace("\"/etc/a365/runner.key\"", &path(&member_key))
        .replace(
            "\"/etc/a365/etcd.password\"",
            &path(&dir.join("runner.password")),
        );
    assert!(!settings.contains("/etc/a365"), "{settings}");
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(env.config_file(), format!("store = \"file\"\n{settings}")).unwrap();
    let agent = env.spawn_agent(&["--http-timeout", "3", "--answer-wait", "3"]);
    agent.wait_ready(&env.socket);
    let machine = Machine {
        env,
        agent: Some(agent),
    };
    let server = server(3600, true);
    share(&machine, &server);
    all_serve(&[&machine], &server, Duration::from_secs(10));
    machine.env.a365(&["refresh", "work"]).ok();
    assert!(cluster.dump().contains("a365/public/work"));
    // Two more machines with the same block (their own member names)
    // serve the shared profile: the operator's fleet of three.
    let settings = std::fs::read_to_string(machine.env.config_file()).unwrap();
    let member_line = settings
        .lines()
        .find(|l| l.starts_with("member = "))
        .unwrap()
        .to_owned();
    let others: Vec<Machine> = ["runner-8", "runner-9"]
        .iter()
        .map(|name| {
            let env = Env::new();
            let own = settings.replace(&member_line, &format!("member = \"{name}\""));
            std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
            std::fs::write(env.config_file(), own).unwrap();
            let agent = env.spawn_agent(&["--http-timeout", "3", "--answer-wait", "3"]);
            agent.wait_ready(&env.socket);
            Machine {
                env,
                agent: Some(agent),
            }
        })
        .collect();
    all_serve(
        &[&machine, &others[0], &others[1]],
        &server,
        Duration::from_secs(10),
    );
    assert_eq!(server.replays(), 0);
    let doctor = machine.env.a365(&["doctor"]);
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(said.contains("is a refresher"), "{said}");
    assert!(
        said.contains("etcd: reached, TLS and authentication accepted, 1 shared"),
        "{said}"
    );
    // A certificate with a CommonName and a password: refused at start,
    // saying why, instead of etcd's 400 on every request.
    let with_cn = Env::new();
    let settings = std::fs::read_to_string(machine.env.config_file())
        .unwrap()
        .replace(&path(&member_cert), &path(&cert))
        .replace(&path(&member_key), &path(&key));
    std::fs::create_dir_all(with_cn.config_file().parent().unwrap()).unwrap();
    std::fs::write(with_cn.config_file(), settings).unwrap();
    let out = with_cn
        .command(crate::harness::bin("a365-agent"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("CommonName"),
        "{stderr}"
    );
}

/// Nexar allows 2 token requests per second per client: fifty runners
/// fetching their own client-credentials token would be throttled.
#[test]
fn client_credentials_are_fetched_once_for_the_whole_fleet() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(6, false);
    let machines = refreshers(&cluster, 3);
    let url = server.token_url();
    let args = [
        "add",
        "work",
        "--kind",
        "client-credentials",
        "--token-url",
        &url,
        "--client-id",
        "test-client",
        "--shared",
        "--secrets-from",
        "-",
    ];
    machines[2]
        .env
        .a365_with_stdin(&args, br#"{"client_secret":"test-secret"}"#)
        .ok();
    let refs: Vec<&Machine> = machines.iter().collect();
    all_serve(&refs, &server, Duration::from_secs(10));
    one_request_per_expiry(&server, 14);
    assert!(
        server
            .recorded()
            .iter()
            .all(|r| r.grant_type == "client_credentials")
    );
    all_serve(&refs, &server, Duration::from_secs(5));
    assert!(!cluster.dump().contains("test-secret"));
}

#[test]
fn the_fleet_key_is_rotated_without_a_new_credential() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let mut a = Machine::refresher(&cluster, "a");
    let old_holder = Machine::refresher(&cluster, "old");
    share(&a, &server);
    all_serve(&[&a, &old_holder], &server, Duration::from_secs(10));
    let key_id = |dump: &str| {
        let at = dump.find("\"key_id\":\"").unwrap() + 10;
        dump[at..at + 16].to_owned()
    };
    let before = key_id(&cluster.dump());
    // The new key as key_file, the old one as previous_key_file.
    let new_key = a.env.path("fleet-2.key");
    std::fs::write(&new_key, [9u8; 32]).unwrap();
    set_mode(&new_key, 0o600);
    let old_key = a.env.path("fleet-1.key");
    std::fs::write(&old_key, KEY).unwrap();
    set_mode(&old_key, 0o600);
    let extra = format!(
        "key_file = {:?}\nprevious_key_file = {:?}\n",
        new_key.display().to_string(),
        old_key.display().to_string()
    );
    a.restart(&cluster, "a", &extra);
    // The refresh asked for may be answered by the restarted agent's first
    // look at the fleet, still under way: wait for the new seal.
    a.env.a365(&["refresh", "work"]).ok();
    wait_until(Duration::from_secs(10), || {
        key_id(&cluster.dump()) != before
    });
    let after = key_id(&cluster.dump());
    assert_ne!(
        before, after,
        "the credential was not sealed with the new key"
    );
    // A refresher still on the old key says which key it needs, and sends
    // nothing.
    let sent = server.requests();
    let out = old_holder.env.a365(&["refresh", "work"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&after), "{}", out.stderr);
    assert_eq!(server.requests(), sent);
    assert_eq!(server.replays(), 0);
}

#[test]
fn removing_a_shared_profile_removes_it_everywhere_and_revokes_it() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    let revocation = server.revocation_url();
    let flags = ["--shared", "--revocation-url", revocation.as_str()];
    a.env.try_add_refresh("work", &server, &flags).1.ok();
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    let live = server.issued_refresh_tokens().pop().unwrap();
    assert!(server.is_refresh_token_valid(&live));
    let out = b.env.a365(&["remove", "work"]).ok();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("removed from the fleet"), "{said}");
    // Gone for every member, and from etcd; the refresh token is revoked.
    let gone = wait_until(Duration::from_secs(10), || {
        a.env.a365(&["token", "work"]).code == 4
    });
    assert!(
        gone,
        "member a still serves the removed profile:\n{}",
        a.log()
    );
    assert!(!cluster.dump().contains("a365/secret/work"));
    assert!(
        !server.is_refresh_token_valid(&live),
        "not revoked at the provider"
    );
}

/// Whoever can write to etcd (its root, a restored backup, a principal
/// with write on the prefix) but holds no fleet key can neither send the
/// shared credential to a token endpoint of its own nor have any member
/// serve an access token of its choosing.
#[test]
fn an_etcd_writer_can_neither_redirect_the_credential_nor_choose_the_token() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let attacker = self::server(3600, false);
    let a = Machine::refresher(&cluster, "a");
    let c = Machine::with(&cluster, "c", "consumer", "");
    share(&a, &server);
    all_serve(&[&a, &c], &server, Duration::from_secs(10));
    let held = a.token().unwrap();
    let record = cluster.get("a365/public/work");
    // The token endpoint re-pointed to the writer's server.
    let redirected = record.replace(&server.token_url(), &attacker.token_url());
    assert_ne!(redirected, record);
    cluster.put("a365/public/work", &redirected);
    let noticed = wait_until(Duration::from_secs(10), || {
        a.status()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("signature"))
    });
    assert!(noticed, "{}\n{}", a.status(), a.log());
    let out = a.env.a365(&["refresh", "work"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("signature"), "{}", out.stderr);
    assert_eq!(
        attacker.requests(),
        0,
        "the credential went to the etcd writer's server:\n{}",
        a.log()
    );
    assert_eq!(a.token().as_deref(), Ok(held.as_str()));
    // An access token of the writer's choosing, for consumers and
    // refreshers alike.
    let forged = "forged.by.the.etcd.writer";
    cluster.put("a365/public/work", &record.replace(&held, forged));
    let _ = c.env.a365(&["refresh", "work"]);
    let _ = a.env.a365(&["refresh", "work"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for m in [&a, &c] {
            assert_ne!(
                m.token().as_deref(),
                Ok(forged),
                "a member served the forged token"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        c.status()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("signature")),
        "{}",
        c.status()
    );
    // The refresher signs the record again at its next refresh: the
    // fleet is whole again, and the writer's server still got nothing.
    cluster.put("a365/public/work", &record);
    a.env.a365(&["refresh", "work"]).ok();
    all_serve(&[&a, &c], &server, Duration::from_secs(10));
    assert_eq!(attacker.requests(), 0);
    assert_eq!(server.replays(), 0);
}

/// An older sealed record put back (a rollback, a restored backup) holds
/// a refresh token the provider has rotated away: no member sends it,
/// even after a restart.
#[test]
fn an_old_record_put_back_into_etcd_is_refused_and_nothing_spent_is_sent() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let mut a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    share(&a, &server);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    let old_secret = cluster.get("a365/secret/work");
    let old_public = cluster.get("a365/public/work");
    a.env.a365(&["refresh", "work"]).ok();
    b.env.a365(&["refresh", "work"]).ok();
    assert_eq!(server.replays(), 0);
    let sent = server.requests();
    cluster.put("a365/secret/work", &old_secret);
    cluster.put("a365/public/work", &old_public);
    for m in [&a, &b] {
        let out = m.env.a365(&["refresh", "work"]);
        assert_ne!(out.code, 0, "{}", out.stdout);
        assert!(out.stderr.contains("older"), "{}", out.stderr);
    }
    assert_eq!(server.replays(), 0, "a spent refresh token was sent again");
    assert_eq!(server.requests(), sent, "{}", a.log());
    // What a member has seen survives its restart.
    let key = a.env.path("fleet.key");
    a.restart(
        &cluster,
        "a",
        &format!("key_file = {:?}\n", key.display().to_string()),
    );
    let out = a.env.a365(&["refresh", "work"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_eq!(server.replays(), 0, "a spent refresh token was sent again");
    assert_eq!(server.requests(), sent);
}

/// A fleet refresher backs off as the local refresher does: at least the
/// server's `Retry-After`, not a 30 s cap of its own (which would ask a
/// provider that said "in two minutes" again and again).
#[test]
fn a_fleet_refresher_honours_retry_after() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (server, a) = one_member_sharing(&cluster);
    server.set_fault(
        Fault::RateLimited {
            retry_after_secs: 120,
        },
        None,
    );
    let out = a.env.a365(&["refresh", "work"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let status = a.status();
    assert_eq!(status["state"], "failing", "{status}");
    let next = status["next_refresh_at"].as_i64().unwrap();
    let now = crate::harness::now_secs() as i64;
    assert!(
        next >= now + 100,
        "next attempt in {} s: {status}",
        next - now
    );
    assert_eq!(server.replays(), 0);
}

/// etcd's RBAC does not cover leases: anyone who reaches etcd, a consumer
/// included, can keep a stopped holder's lock lease alive for ever. A lock
/// whose deadline passed is taken over, whatever its lease says.
#[test]
fn a_lock_kept_alive_past_its_deadline_does_not_block_the_fleet() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (server, a) = one_member_sharing(&cluster);
    // The lock of a holder that stopped 10 s past its deadline, its lease
    // kept alive by someone else.
    let granted = cluster.etcdctl(&["lease", "grant", "60"]);
    let granted = String::from_utf8_lossy(&granted.stdout).into_owned();
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    let deadline = crate::harness::now_secs() as i64 * 1000 - 10_000;
    let holder = format!(r#"{{"member":"stopped","deadline_ms":{deadline}}}"#);
    let lease_flag = format!("--lease={lease}");
    let out = cluster.etcdctl(&["put", &lease_flag, "a365/lock/work", &holder]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut keeper = cluster
        .etcdctl_command(&["lease", "keep-alive", &lease])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = server.requests();
    let started = Instant::now();
    let out = a.env.a365(&["refresh", "work"]);
    let _ = keeper.kill();
    let _ = keeper.wait();
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, a.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.requests(), before + 1);
    assert!(a.log().contains("took over a fleet lock"), "{}", a.log());
    assert_eq!(server.replays(), 0);
}

/// A refresh whose answer never reached the fleet (its holder killed while
/// the provider had not answered, or the answer cut after the provider
/// rotated) is settled by asking the provider (RFC 7662) once the provider
/// must be done with it: a refresh token still active is sent again by
/// another member, and the fleet serves again without a human; a spent
/// one is dead for every member, with that reason. Nothing is replayed.
#[test]
fn a_lost_refresh_in_the_fleet_is_settled_by_asking_the_provider() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let mut a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    let introspection = [
        "--shared",
        "--introspection-url",
        &server.introspection_url(),
    ];
    let (_, out) = a.env.try_add_refresh("work", &server, &introspection);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    // A's refresh hangs at the provider, and A is killed.
    let before = server.requests();
    server.set_fault(Fault::Hang, Some(1));
    let mut forced = a.env.refresh_in_background("work");
    assert!(wait_until(Duration::from_secs(5), || server.requests() > before));
    a.agent.take().unwrap().kill();
    let _ = forced.wait();
    // B, once A's lease ended and the provider must be done, asks and
    // sends the refresh token again.
    let served = wait_until(Duration::from_secs(30), || {
        b.env.a365(&["refresh", "work"]).code == 0
    });
    assert!(served, "{}\n{}", b.log(), b.status());
    assert_eq!(b.token().ok(), server.last_access_token());
    assert_eq!(server.replays(), 0);
    // Rotated, then the connection cut: spent, and said so.
    server.set_fault(Fault::RotateThenDrop, Some(1));
    // Asked at the next refresh, once the provider must be done with it.
    let dead = wait_until(Duration::from_secs(30), || {
        b.env.a365(&["refresh", "work"]).code == 5
    });
    assert!(dead, "{}\n{}", b.log(), b.status());
    let said = b.status()["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(said.contains("no longer active"), "{said}");
    assert_eq!(server.replays(), 0);
}

/// During an outage the fleet backs off as one: the back-off is in the
/// shared record, so four members together send about what one would
/// (0.5–1 s, 1–2 s, 2–4 s, 4–8 s apart), not four times that, and every
/// member says why it has no new token.
#[test]
fn during_an_outage_the_fleet_backs_off_as_one() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(4, true);
    let machines = refreshers(&cluster, 4);
    share(&machines[0], &server);
    let refs: Vec<&Machine> = machines.iter().collect();
    all_serve(&refs, &server, Duration::from_secs(10));
    let before = server.requests();
    server.set_fault(Fault::Status(503), None);
    // The outage: 10 s, past every member's token.
    std::thread::sleep(Duration::from_secs(10));
    let sent = server.requests() - before;
    for m in &machines {
        let status = m.status();
        let said = status["last_error"].as_str().unwrap_or_default();
        assert!(said.contains("HTTP 503"), "{}: {status}", m.log());
    }
    server.clear_fault();
    println!("fleet outage: {sent} token requests from 4 members in 10 s");
    assert!(sent <= 6, "{sent} token requests in a 10 s outage");
    assert_eq!(server.replays(), 0);
    all_serve(&refs, &server, Duration::from_secs(15));
}

/// A member that finds the lock held waits for its release with one watch,
/// not a new attempt (a lease grant, a transaction, a revoke) every few
/// hundred milliseconds: over a 2.5 s refresh by another member, a
/// handful of lease grants in all (a retry every 250–500 ms made 9 over
/// a 5 s refresh).
#[test]
fn a_member_waits_for_the_lock_with_a_watch_not_a_timer() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let a = Machine::refresher(&cluster, "a");
    let b = Machine::refresher(&cluster, "b");
    share(&a, &server);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
    let grants = cluster.calls("LeaseGrant");
    server.set_fault(Fault::Delay(Duration::from_millis(2500)), Some(1));
    let before = server.requests();
    let mut held = a.env.refresh_in_background("work");
    assert!(wait_until(Duration::from_secs(5), || server.requests() > before));
    // B wants a refresh while A holds the lock.
    let out = b.env.a365(&["refresh", "work"]);
    let _ = held.wait();
    let grants = cluster.calls("LeaseGrant") - grants;
    println!("lease grants while one member waited for another's lock: {grants}");
    assert!(
        grants <= 4,
        "{grants} lease grants: {} {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert_eq!(server.replays(), 0);
    all_serve(&[&a, &b], &server, Duration::from_secs(10));
}

/// Five members that all force refreshes of four shared profiles of one
/// client id stay within its budget (scaled down: 2 per second, 5 per
/// 10 seconds), counted once in etcd for the whole fleet.
#[test]
fn five_members_share_one_client_ids_budget() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = server(3600, true);
    let machines = refreshers(&cluster, 5);
    let names: Vec<String> = (0..4).map(|i| format!("b{i}")).collect();
    let started_ms = (crate::harness::now_secs() * 1000.0) as i64;
    // The first exchanges count too: an `add` the budget holds back says
    // when to try again, and puts nothing in the fleet.
    for name in &names {
        let added = wait_until(Duration::from_secs(30), || {
            let (_, out) = machines[0].env.try_add_refresh(
                name,
                &server,
                &["--shared", "--limits", "1s=2,10s=5"],
            );
            match out.code {
                0 => true,
                6 if out.stderr.contains("the next may be sent in") => false,
                _ => panic!("{}{}", out.stdout, out.stderr),
            }
        });
        assert!(added, "{name} was never added");
    }
    std::thread::scope(|scope| {
        for (m, machine) in machines.iter().enumerate() {
            let names = &names;
            scope.spawn(move || {
                let until = Instant::now() + Duration::from_secs(15);
                let mut i = m;
                while Instant::now() < until {
                    machine.env.a365(&["refresh", &names[i % names.len()]]);
                    i += 1;
                }
            });
        }
    });
    let times = crate::budget::sent_since(&server, started_ms);
    crate::budget::within(&times).unwrap();
    assert!(times.len() >= 6, "{} requests in 15 s", times.len());
    assert_eq!(server.replays(), 0, "a spent refresh token was sent again");
    let status = machines[3].env.a365(&["status", "--json"]).ok().json();
    let windows = &status[0]["budget"];
    assert!(windows[1]["used"].as_u64().unwrap() >= 1, "{windows}");
    eprintln!(
        "fleet budget: {} token requests in {:.1} s by 5 members (4 first exchanges, then 15 s \
         of forced refreshes; 2 per 1 s and 5 per 10 s allowed)",
        times.len(),
        (times[times.len() - 1] - times[0]) as f64 / 1000.0
    );
}
