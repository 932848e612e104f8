//! Proxy routes: what a route adds to a request, side by side with the
//! same request sent straight to the upstream with the token in its
//! header, in one run. Plain blocking HTTP/1.1 on kept-alive connections
//! (one thread per connection), so the client adds the same to both.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use a365_proto::{Client, ProxyRoute, Request, Response, TokenRequest};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::stats::Summary;

#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// One connection, requests one after another, direct and through
    /// the route in turn.
    pub direct: Summary,
    pub proxied: Summary,
    /// `connections` kept-alive connections as fast as they go.
    pub connections: usize,
    pub direct_rps: f64,
    pub proxied_rps: f64,
    /// The agent's anonymous memory before the route was added, and after
    /// the load through it.
    pub anon_before_kib: u64,
    /// After the requests on one connection (a tool using the route).
    pub anon_one_kib: u64,
    pub anon_after_kib: u64,
}

pub struct Options<'a> {
    pub socket: &'a Path,
    pub profile: &'a str,
    /// The upstream's base URL (`http://127.0.0.1:PORT/nexar/`).
    pub upstream: &'a str,
    pub requests: usize,
    pub connections: usize,
    pub duration: Duration,
}

/// One target: where to connect, the path, and the extra header.
#[derive(Clone)]
struct Target {
    addr: String,
    path: String,
    header: String,
}

pub fn run(o: &Options<'_>) -> anyhow::Result<Outcome> {
    let pid = crate::control::pid_at(o.socket)?;
    let anon_before_kib = crate::procfs::anon_kib(pid)?;
    let mut control = Client::connect(o.socket)?;
    let route = ProxyRoute {
        name: "bench".into(),
        listen: "127.0.0.1:0".into(),
        upstream: o.upstream.into(),
        profile: o.profile.into(),
        workspace: None,
        headers: Default::default(),
        require_secret: false,
        allow_origins: Vec::new(),
    };
    match control.call(&Request::ProxyAdd {
        route,
        replace: true,
    })? {
        Response::Done { .. } => {}
        Response::Error(e) => bail!("adding the route: {}", e.message),
        other => bail!("unexpected answer: {other:?}"),
    }
    let url = match control.call(&Request::ProxyList)? {
        Response::Routes(routes) => {
            routes
                .into_iter()
                .find(|r| r.route.name == "bench")
                .context("the route is not listed")?
                .url
        }
        other => bail!("unexpected answer: {other:?}"),
    };
    let token = match control.call(&Request::Token(TokenRequest {
        profile: Some(o.profile.into()),
        min_valid_ms: 60_000,
        scopes: Vec::new(),
        workspace: None,
    }))? {
        Response::Token(reply) => reply.token.expose().to_owned(),
        other => bail!("no token: {other:?}"),
    };
    let (up_addr, up_path) = split(o.upstream)?;
    let (px_addr, px_path) = split(&url)?;
    let direct = Target {
        addr: up_addr,
        path: up_path,
        header: format!("Authorization: Bearer {token}\r\n"),
    };
    let proxied = Target {
        addr: px_addr,
        path: px_path,
        header: String::new(),
    };
    let (direct_lat, proxied_lat) = latency(&direct, &proxied, o.requests)?;
    let anon_one_kib = crate::procfs::anon_kib(pid)?;
    let direct_rps = throughput(&direct, o.connections, o.duration)?;
    let proxied_rps = throughput(&proxied, o.connections, o.duration)?;
    let anon_after_kib = crate::procfs::anon_kib(pid)?;
    let _ = control.call(&Request::ProxyRemove {
        name: "bench".into(),
    });
    Ok(Outcome {
        direct: direct_lat,
        proxied: proxied_lat,
        connections: o.connections,
        direct_rps,
        proxied_rps,
        anon_before_kib,
        anon_one_kib,
        anon_after_kib,
    })
}

/// `http://HOST:PORT/PATH` → (`HOST:PORT`, `/PATH`).
fn split(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("the bench speaks plain http to loopback")?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((addr.to_owned(), format!("/{path}")))
}

/// Sequential requests on one connection each, alternating, after a
/// warm-up: the two distributions share the machine's drift.
fn latency(direct: &Target, proxied: &Target, n: usize) -> anyhow::Result<(Summary, Summary)> {
    let mut d = Conn::open(direct)?;
    let mut p = Conn::open(proxied)?;
    for _ in 0..(n / 10).max(10) {
        d.request()?;
        p.request()?;
    }
    let (mut ds, mut ps) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        ds.push(d.request()?);
        ps.push(p.request()?);
    }
    Ok((Summary::of(&mut ds), Summary::of(&mut ps)))
}

/// Requests per second over `duration` with `connections` connections.
fn throughput(target: &Target, connections: usize, duration: Duration) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..connections {
        let (target, stop, done) = (target.clone(), Arc::clone(&stop), Arc::clone(&done));
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut conn = Conn::open(&target)?;
            while !stop.load(Ordering::Relaxed) {
                conn.request()?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

/// One kept-alive connection and the request it repeats.
struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    fn open(t: &Target) -> anyhow::Result<Conn> {
        let stream =
            TcpStream::connect(&t.addr).with_context(|| format!("connecting to {}", t.addr))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = r#"{"query":"{ supSearch(q: \"bench\") { hits } }"}"#;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
            t.path,
            t.addr,
            t.header,
            body.len()
        );
        Ok(Conn {
            stream,
            request: request.into_bytes(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends the request and reads the whole answer; its time.
    fn request(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(&self.request)?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the connection closed mid-answer");
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                if !head.starts_with("HTTP/1.1 200") {
                    bail!("not 200: {}", head.lines().next().unwrap_or_default());
                }
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .context("an answer without Content-Length")?;
                while self.buf.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        bail!("the connection closed mid-body");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok(started.elapsed());
            }
        }
    }
}
