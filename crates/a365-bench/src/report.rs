//! The markdown report: every phase's results (JSON files in one
//! directory, named below) as tables, and the targets met or missed.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{herd, procfs, scale, throughput};

/// hyperfine's `--export-json` of part 1 (client latency).
pub const CLIENT: &str = "client.json";
/// `a365-load load --mode M`: one file per mode.
pub fn load_file(mode: &str) -> String {
    format!("load-{mode}.json")
}
pub const HERD: &str = "herd.json";
/// Part 7, side by side with oidc-agent: hyperfine's exports and memory.
pub const PEER_CACHED: &str = "peer-cached.json";
pub const PEER_FORCED: &str = "peer-forced.json";
pub const PEER_CONCURRENT: &str = "peer-concurrent.json";
pub const PEER_MEMORY: &str = "peer-memory.json";
/// The same, once both had been idle long enough for a365-agent to give
/// its code pages back (`--idle-release`).
pub const PEER_MEMORY_IDLE: &str = "peer-memory-idle.json";
pub const PEER_EXPIRY: &str = "peer-expiry.json";
pub const PEER_HEAD_OF_LINE: &str = "peer-head-of-line.json";
pub const SCALE: &str = "scale.json";
pub const IDLE: &str = "idle.json";

/// Where the generated part of docs/performance.md starts and ends; the
/// text around it is written by hand and kept.
pub const BEGIN: &str = "<!-- bench/run writes from here to the end marker -->";
pub const END: &str = "<!-- end of what bench/run writes -->";

/// The command names bench/run gives hyperfine.
pub mod names {
    pub const TRUE: &str = "/bin/true";
    pub const VERSION: &str = "a365 --version";
    pub const TOKEN: &str = "a365 token";
    pub const TOKEN_DYNAMIC: &str = "a365 token (dynamically linked)";
    pub const TOKEN_GLIBC: &str = "a365 token (glibc, static)";
    pub const SSH_ADD: &str = "ssh-add -L";
    pub const CURL: &str = "curl: refresh-token exchange";
}

#[derive(Debug, Deserialize)]
struct Hyperfine {
    results: Vec<Command>,
}

#[derive(Debug, Deserialize)]
struct Command {
    command: String,
    mean: f64,
    stddev: Option<f64>,
    median: f64,
    min: f64,
    max: f64,
    times: Option<Vec<f64>>,
}

#[derive(Debug)]
pub struct Inputs {
    pub machine: String,
    pub binaries: Vec<(String, u64)>,
    pub smoke: bool,
    pub load_secs: Option<f64>,
}

struct Results {
    client: Option<Hyperfine>,
    peer: [Option<Hyperfine>; 5],
    peer_memory: Option<Vec<procfs::Memory>>,
    peer_memory_idle: Option<Vec<procfs::Memory>>,
    loads: Vec<(String, Vec<throughput::Outcome>)>,
    herd: Option<herd::Outcome>,
    scale: Option<Vec<scale::Step>>,
    idle: Option<procfs::Idle>,
}

fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not what the bench wrote", path.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The generated markdown, between [`BEGIN`] and [`END`].
pub fn render(dir: &Path, inputs: &Inputs) -> anyhow::Result<String> {
    let mut loads = Vec::new();
    for mode in ["bincode", "json", "ssh-agent"] {
        if let Some(outcomes) = read(dir, &load_file(mode))? {
            loads.push((mode.to_owned(), outcomes));
        }
    }
    let results = Results {
        client: read(dir, CLIENT)?,
        peer: [
            read(dir, PEER_CACHED)?,
            read(dir, PEER_FORCED)?,
            read(dir, PEER_CONCURRENT)?,
            read(dir, PEER_EXPIRY)?,
            read(dir, PEER_HEAD_OF_LINE)?,
        ],
        peer_memory: read(dir, PEER_MEMORY)?,
        peer_memory_idle: read(dir, PEER_MEMORY_IDLE)?,
        loads,
        herd: read(dir, HERD)?,
        scale: read(dir, SCALE)?,
        idle: read(dir, IDLE)?,
    };
    let mut out = String::new();
    let w = &mut out;
    line(w, BEGIN);
    line(w, "");
    line(
        w,
        &format!("Measured by `bench/run` on {}.", inputs.machine),
    );
    if inputs.smoke {
        line(
            w,
            "**Smoke run** (`--smoke`: debug build, few runs, short phases): the numbers say \
             nothing; this only shows that the runner works.",
        );
    }
    line(w, "");
    targets(w, &results);
    client(w, &results);
    throughput_section(w, &results, inputs.load_secs);
    herd_section(w, &results);
    scale_section(w, &results);
    idle_section(w, &results);
    sizes(w, &results, &inputs.binaries);
    peer_section(w, &results);
    line(w, END);
    Ok(out)
}

/// Replaces the generated part of `doc` (or appends it, for a new file).
pub fn splice(doc: &str, generated: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let mut out = doc[..begin].to_owned();
            out.push_str(generated.trim_end_matches('\n'));
            out.push_str(&doc[end + END.len()..]);
            out
        }
        _ => {
            let mut out = doc.to_owned();
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(generated);
            out
        }
    }
}

fn line(w: &mut String, text: &str) {
    w.push_str(text);
    w.push('\n');
}

impl Results {
    /// A median of part 7's `part`-th export.
    fn peer_median(&self, part: usize, name: &str) -> Option<f64> {
        self.peer[part]
            .as_ref()?
            .results
            .iter()
            .find(|c| c.command == name)
            .map(|c| c.median)
    }

    fn median(&self, name: &str) -> Option<f64> {
        self.command(name).map(|c| c.median)
    }

    fn command(&self, name: &str) -> Option<&Command> {
        self.client
            .as_ref()?
            .results
            .iter()
            .find(|c| c.command == name)
    }

    fn load(&self, mode: &str, connections: usize) -> Option<&throughput::Outcome> {
        self.loads
            .iter()
            .find(|(m, _)| m == mode)?
            .1
            .iter()
            .find(|o| o.connections == connections)
    }
}

fn time(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

fn us(micros: f64) -> String {
    time(micros / 1e6)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn targets(w: &mut String, r: &Results) {
    let mut rows: Vec<(String, String, &str)> = Vec::new();
    let (true_, token, ssh) = (
        r.median(names::TRUE),
        r.median(names::TOKEN),
        r.median(names::SSH_ADD),
    );
    if let (Some(t), Some(k)) = (true_, token) {
        let ratio = k / t;
        rows.push((
            "`a365 token` ≤ 1.15× `/bin/true`".into(),
            format!("{ratio:.2}× ({} vs {})", time(k), time(t)),
            verdict(ratio <= 1.15),
        ));
    }
    if let (Some(o), Some(k)) = (
        r.peer_median(0, "oidc-token"),
        r.peer_median(0, "a365 token"),
    ) {
        let ratio = k / o;
        rows.push((
            "`a365 token` ≤ 0.55× `oidc-token` (HTTPS provider, same run)".into(),
            format!("{ratio:.2}× ({} vs {})", time(k), time(o)),
            verdict(ratio <= 0.55),
        ));
    }
    let idle = r.peer_memory_idle.as_ref().or(r.peer_memory.as_ref());
    if let Some(m) = idle.and_then(|m| m.first()) {
        rows.push((
            "agent RSS ≤ 7 MiB with 10 HTTPS profiles, idle".into(),
            format!("{} (VmHWM {})", mib(m.rss_kib), mib(m.hwm_kib)),
            verdict(m.rss_kib <= 7 * 1024),
        ));
    }
    if let (Some(s), Some(k)) = (ssh, token) {
        let ratio = k / s;
        rows.push((
            "`a365 token` ≤ 0.4× `ssh-add -L`".into(),
            format!("{ratio:.2}× ({} vs {})", time(k), time(s)),
            verdict(ratio <= 0.4),
        ));
    }
    if let (Some(a), Some(s)) = (r.load("bincode", 64), r.load("ssh-agent", 64)) {
        let ratio = a.requests_per_sec / s.requests_per_sec;
        rows.push((
            "agent throughput ≥ 2× ssh-agent's, 64 connections".into(),
            format!(
                "{ratio:.2}× ({:.0} vs {:.0} req/s)",
                a.requests_per_sec, s.requests_per_sec
            ),
            verdict(ratio >= 2.0),
        ));
    }
    for mode in ["bincode", "json"] {
        if let Some(a) = r.load(mode, 64) {
            rows.push((
                format!("p99 < 1 ms at 64 connections ({mode})"),
                us(a.latency.p99_us),
                verdict(a.latency.p99_us < 1000.0),
            ));
        }
    }
    if let Some(h) = &r.herd {
        let one = h.token_requests.iter().all(|&n| n == 1) && h.bad_answers == 0;
        rows.push((
            format!(
                "exactly 1 token request for {} concurrent expiring requests",
                h.clients
            ),
            format!(
                "{} (per round), {} bad answers",
                join(&h.token_requests),
                h.bad_answers
            ),
            verdict(one),
        ));
    }
    if let Some(i) = &r.idle {
        rows.push((
            format!("RSS ≤ 10 MiB idle with {} profiles", i.profiles),
            mib(i.rss_kib),
            verdict(i.rss_kib <= 10 * 1024),
        ));
    }
    if let Some(last) = r.scale.as_ref().and_then(|s| s.last()) {
        let limit = if last.profiles >= 10_000 { 50 } else { 10 };
        rows.push((
            format!("RSS ≤ {limit} MiB with {} profiles", last.profiles),
            mib(last.rss_kib),
            verdict(last.rss_kib <= limit * 1024),
        ));
    }
    if let Some(steps) = &r.scale
        && let (Some(first), Some(last)) = (steps.first(), steps.last())
    {
        let growth = last.token.latency.p50_us / first.token.latency.p50_us;
        rows.push((
            "token latency does not grow with profiles (p50 within +25%)".into(),
            format!(
                "{} with {} → {} with {} ({growth:.2}×)",
                us(first.token.latency.p50_us),
                first.profiles,
                us(last.token.latency.p50_us),
                last.profiles
            ),
            verdict(growth <= 1.25),
        ));
    }
    line(w, "### Targets");
    line(w, "");
    line(w, "| target | measured | |");
    line(w, "|---|---|---|");
    for (target, measured, met) in rows {
        line(w, &format!("| {target} | {measured} | {met} |"));
    }
    line(w, "");
}

fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn client(w: &mut String, r: &Results) {
    let Some(client) = &r.client else { return };
    let runs = client
        .results
        .first()
        .and_then(|c| c.times.as_ref())
        .map_or(0, Vec::len);
    line(w, "### 1. Client latency");
    line(w, "");
    line(
        w,
        &format!(
            "hyperfine, no shell, {runs} runs each after warm-up, all in one run; the agent holds \
             a cached token. The curl row is what a script pays without an agent: a refresh-token \
             exchange with the local token server (no TLS, no network)."
        ),
    );
    line(w, "");
    line(
        w,
        "| command | median | mean ± σ | min … max | × `/bin/true` | × `ssh-add -L` |",
    );
    line(w, "|---|---|---|---|---|---|");
    let (true_, ssh) = (r.median(names::TRUE), r.median(names::SSH_ADD));
    let ratio = |base: Option<f64>, v: f64| base.map_or("–".into(), |b| format!("{:.2}×", v / b));
    for c in &client.results {
        line(
            w,
            &format!(
                "| `{}` | {} | {} ± {} | {} … {} | {} | {} |",
                c.command,
                time(c.median),
                time(c.mean),
                time(c.stddev.unwrap_or(0.0)),
                time(c.min),
                time(c.max),
                ratio(true_, c.median),
                ratio(ssh, c.median),
            ),
        );
    }
    line(w, "");
    if let (Some(k), Some(c)) = (r.median(names::TOKEN), r.median(names::CURL)) {
        line(
            w,
            &format!(
                "`a365 token` costs {:.0}% of the exchange it saves, before TLS and the network \
                 that a real token endpoint adds.",
                100.0 * k / c
            ),
        );
    }
    if let (Some(k), Some(d)) = (r.median(names::TOKEN), r.median(names::TOKEN_DYNAMIC)) {
        let glibc = r
            .median(names::TOKEN_GLIBC)
            .map(|g| format!(", and {} linked statically with glibc", time(g)))
            .unwrap_or_default();
        line(
            w,
            &format!(
                "Built for musl, static (as the README and the .deb install it), `a365 token` \
                 takes {}; linked dynamically it takes {} ({:.0}% more){glibc}.",
                time(k),
                time(d),
                100.0 * (d / k - 1.0)
            ),
        );
    }
    line(w, "");
}

fn throughput_section(w: &mut String, r: &Results, secs: Option<f64>) {
    if r.loads.is_empty() {
        return;
    }
    line(w, "### 2. Agent throughput and latency");
    line(w, "");
    line(
        w,
        &format!(
            "`a365-load load`: N persistent connections, each sending its next request as soon \
             as the answer to the last arrived, for {} per row; latency is per request, send to \
             answer decoded. a365-agent is asked for a cached token (as `a365 token` asks: \
             `min_valid_ms` 5000); ssh-agent, holding one key, for its identities \
             (SSH_AGENTC_REQUEST_IDENTITIES). The generator runs on the same two cores.",
            secs.map_or("a fixed time".into(), |s| format!("{s:.0} s"))
        ),
    );
    line(w, "");
    line(
        w,
        "| agent | connections | req/s | p50 | p99 | p99.9 | max | errors | req/s × ssh-agent |",
    );
    line(w, "|---|---|---|---|---|---|---|---|---|");
    for (mode, outcomes) in &r.loads {
        let agent = match mode.as_str() {
            "ssh-agent" => "ssh-agent".to_owned(),
            other => format!("a365-agent, {other}"),
        };
        for o in outcomes {
            let vs = r.load("ssh-agent", o.connections).map_or("–".into(), |s| {
                format!("{:.2}×", o.requests_per_sec / s.requests_per_sec)
            });
            line(
                w,
                &format!(
                    "| {agent} | {} | {:.0} | {} | {} | {} | {} | {} | {vs} |",
                    o.connections,
                    o.requests_per_sec,
                    us(o.latency.p50_us),
                    us(o.latency.p99_us),
                    us(o.latency.p999_us),
                    us(o.latency.max_us),
                    o.errors,
                ),
            );
        }
    }
    line(w, "");
}

fn herd_section(w: &mut String, r: &Results) {
    let Some(h) = &r.herd else { return };
    line(w, "### 3. Thundering herd");
    line(w, "");
    line(
        w,
        &format!(
            "`a365-load herd`: {} connected clients; in each of {} rounds the agent is frozen \
             (SIGSTOP, as a suspended laptop) right after a refresh until its token has expired, \
             every client sends a token request meanwhile, then SIGCONT. Wait: from SIGCONT to \
             the answer.",
            h.clients,
            h.token_requests.len()
        ),
    );
    line(w, "");
    line(
        w,
        "| clients | token requests per round | distinct tokens per round | bad answers | p50 wait | p99 wait | max wait |",
    );
    line(w, "|---|---|---|---|---|---|---|");
    line(
        w,
        &format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            h.clients,
            join(&h.token_requests),
            join(&h.distinct_tokens),
            h.bad_answers,
            us(h.wait.p50_us),
            us(h.wait.p99_us),
            us(h.wait.max_us)
        ),
    );
    line(w, "");
}

fn scale_section(w: &mut String, r: &Results) {
    let Some(steps) = &r.scale else { return };
    line(w, "### 4. Scale in profiles");
    line(w, "");
    line(
        w,
        "For each count a fresh agent starts with that many `refresh` profiles of the local \
         token server (1 h tokens), written beforehand as the agent keeps them (config.toml, \
         file store, a cached token): it loads them as after a restart, without a token request. \
         (Adding 10,000 over the socket would take over 10 minutes: each add rewrites config.toml, \
         see the last column.) Token latency: one connection asking for the first profile's token. \
         Then one more profile added over the socket (memory store, with its first token \
         exchange), and the idle agent's context switches (all threads) over a few seconds.",
    );
    line(w, "");
    line(
        w,
        "| profiles | agent start-up | agent RSS | `a365 status` median | status output | token p50 | token p99 | one more add | idle switches/min |",
    );
    line(w, "|---|---|---|---|---|---|---|---|---|");
    for s in steps {
        line(
            w,
            &format!(
                "| {} | {:.0} ms | {} | {} | {} | {} | {} | {:.1} ms | {:.0} |",
                s.profiles,
                s.start_ms,
                mib(s.rss_kib),
                s.status_median_ms
                    .map_or("fails".into(), |ms| format!("{ms:.2} ms")),
                match &s.status_output {
                    scale::StatusOutput::Bytes(n) => format!("{:.1} KiB", *n as f64 / 1024.0),
                    scale::StatusOutput::Failed(why) => format!("`{}`", why.replace('|', "/")),
                },
                us(s.token.latency.p50_us),
                us(s.token.latency.p99_us),
                s.add_ms,
                s.idle_switches_per_min,
            ),
        );
    }
    line(w, "");
}

fn idle_section(w: &mut String, r: &Results) {
    let Some(i) = &r.idle else { return };
    line(w, "### 5. Idle cost");
    line(w, "");
    let ticks = (i.secs / 30.0).floor() as usize;
    line(
        w,
        &format!(
            "{} profiles, tokens valid for an hour, no client: RSS {}; {} context switches in \
             {:.0} s, all threads (voluntary + involuntary, /proc/PID/task/*/status). By design \
             the refreshers look at the wall clock every 30 s, all at the same instant: {ticks} \
             ticks in this window.",
            i.profiles,
            mib(i.rss_kib),
            i.wakeups,
            i.secs
        ),
    );
    line(w, "");
    line(w, "| thread | switches |");
    line(w, "|---|---|");
    for (thread, n) in &i.by_thread {
        line(w, &format!("| {thread} | {n} |"));
    }
    if i.ended_threads > 0 {
        line(
            w,
            &format!(
                "| (threads that ended in the window) | {} threads |",
                i.ended_threads
            ),
        );
    }
    line(w, "");
}

/// Two decimals, or three significant digits for a ratio far below 1
/// (0.00× would hide a 500-fold difference).
fn ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.2e}×")
    }
}

fn peer_section(w: &mut String, r: &Results) {
    if r.peer.iter().all(Option::is_none) && r.peer_memory.is_none() {
        return;
    }
    line(w, "### 7. Side by side with oidc-agent");
    line(w, "");
    line(
        w,
        "Both against the same node-oidc-provider over HTTPS on loopback (refresh tokens rotate; \
         a replay revokes the grant), each with its own grant; medians of the same run.",
    );
    line(w, "");
    line(w, "| measure | a365 | oidc-agent | a365 / oidc-agent |");
    line(w, "|---|---|---|---|");
    let rows = [
        (0, "cached token, whole process", "a365 token", "oidc-token"),
        (
            1,
            "forced refresh (rotation)",
            "a365 refresh",
            "oidc-token --force-new",
        ),
        (
            2,
            "64 concurrent clients, wall",
            "a365 token ×64",
            "oidc-token ×64",
        ),
        (
            3,
            "first call after the token expired while idle",
            "a365 token, after expiry",
            "oidc-token, after expiry",
        ),
        (
            4,
            "a cached token while another profile's refresh takes 2 s",
            "a365 token, beside a slow refresh",
            "oidc-token, beside a slow refresh",
        ),
    ];
    for (part, what, ours, theirs) in rows {
        if let (Some(a), Some(o)) = (r.peer_median(part, ours), r.peer_median(part, theirs)) {
            line(
                w,
                &format!("| {what} | {} | {} | {} |", time(a), time(o), ratio(a / o)),
            );
        }
    }
    if let Some(t) = r.peer_median(0, names::TRUE) {
        line(w, &format!("| `/bin/true`, same run | {} | | |", time(t)));
    }
    if r.peer_memory.is_some() || r.peer_memory_idle.is_some() {
        line(w, "");
        line(
            w,
            "| memory after the runs above | processes | RSS | VmHWM | PSS |",
        );
        line(w, "|---|---|---|---|---|");
        let both = r.peer_memory.iter().chain(&r.peer_memory_idle);
        for p in both.flatten() {
            line(
                w,
                &format!(
                    "| {} | {} | {} | {} | {} |",
                    p.label,
                    p.processes,
                    mib(p.rss_kib),
                    mib(p.hwm_kib),
                    mib(p.pss_kib)
                ),
            );
        }
    }
    line(w, "");
}

fn sizes(w: &mut String, r: &Results, binaries: &[(String, u64)]) {
    if binaries.is_empty() {
        return;
    }
    line(w, "### 6. Sizes and start-up");
    line(w, "");
    line(w, "| binary | size |");
    line(w, "|---|---|");
    for (name, bytes) in binaries {
        line(
            w,
            &format!("| {name} | {:.2} MiB |", *bytes as f64 / 1048576.0),
        );
    }
    line(w, "");
    if let (Some(v), Some(t)) = (r.median(names::VERSION), r.median(names::TRUE)) {
        line(
            w,
            &format!(
                "`a365 --version` on its own (start-up, clap, no socket): median {}, {:.2}× `/bin/true`.",
                time(v),
                v / t
            ),
        );
        line(w, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_part() {
        let doc = format!("# Perf\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Notes\nkept\n");
        let new = format!("{BEGIN}\nnew\n{END}\n");
        let out = splice(&doc, &new);
        assert_eq!(
            out,
            format!("# Perf\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Notes\nkept\n")
        );
        assert_eq!(splice("", &new), new);
    }
}
