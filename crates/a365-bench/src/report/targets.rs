//! The targets met or missed: the report's verdict, read first. Each
//! target draws on another part's results, so each has its own function
//! and a part that did not run only drops its row.

use super::format::{join, line, mib, time, us, verdict};
use super::names;
use super::results::Results;

/// A row of the table: the target, what was measured, met or missed.
type Row = (String, String, &'static str);

pub(super) fn targets(w: &mut String, r: &Results) {
    let rows = [
        token_vs_true(r),
        token_vs_oidc_token(r),
        agent_memory_idle(r),
        token_vs_ssh_add(r),
        throughput_vs_ssh_agent(r),
    ]
    .into_iter()
    .chain(["bincode", "json"].map(|mode| p99_at_64_connections(r, mode)))
    .chain([
        herd_one_request(r),
        idle_memory(r),
        scale_memory(r),
        scale_latency(r),
    ])
    .flatten()
    .chain(super::proxy::targets(r));
    line(w, "### Targets");
    line(w, "");
    line(w, "| target | measured | |");
    line(w, "|---|---|---|");
    for (target, measured, met) in rows {
        line(w, &format!("| {target} | {measured} | {met} |"));
    }
    line(w, "");
}

fn token_vs_true(r: &Results) -> Option<Row> {
    let (t, k) = (r.median(names::TRUE)?, r.median(names::TOKEN)?);
    let ratio = k / t;
    Some((
        "`a365 token` ≤ 1.15× `/bin/true`".into(),
        format!("{ratio:.2}× ({} vs {})", time(k), time(t)),
        verdict(ratio <= 1.15),
    ))
}

fn token_vs_oidc_token(r: &Results) -> Option<Row> {
    let (o, k) = (
        r.peer_median(0, "oidc-token")?,
        r.peer_median(0, "a365 token")?,
    );
    let ratio = k / o;
    Some((
        "`a365 token` ≤ 0.55× `oidc-token` (HTTPS provider, same run)".into(),
        format!("{ratio:.2}× ({} vs {})", time(k), time(o)),
        verdict(ratio <= 0.55),
    ))
}

fn agent_memory_idle(r: &Results) -> Option<Row> {
    let idle = r.peer_memory_idle.as_ref().or(r.peer_memory.as_ref());
    let m = idle.and_then(|m| m.first())?;
    Some((
        "agent RSS ≤ 7 MiB with 10 HTTPS profiles, idle".into(),
        format!("{} (VmHWM {})", mib(m.rss_kib), mib(m.hwm_kib)),
        verdict(m.rss_kib <= 7 * 1024),
    ))
}

fn token_vs_ssh_add(r: &Results) -> Option<Row> {
    let (s, k) = (r.median(names::SSH_ADD)?, r.median(names::TOKEN)?);
    let ratio = k / s;
    Some((
        "`a365 token` ≤ 0.4× `ssh-add -L`".into(),
        format!("{ratio:.2}× ({} vs {})", time(k), time(s)),
        verdict(ratio <= 0.4),
    ))
}

fn throughput_vs_ssh_agent(r: &Results) -> Option<Row> {
    let (a, s) = (r.load("bincode", 64)?, r.load("ssh-agent", 64)?);
    let ratio = a.requests_per_sec / s.requests_per_sec;
    Some((
        "agent throughput ≥ 2× ssh-agent's, 64 connections".into(),
        format!(
            "{ratio:.2}× ({:.0} vs {:.0} req/s)",
            a.requests_per_sec, s.requests_per_sec
        ),
        verdict(ratio >= 2.0),
    ))
}

fn p99_at_64_connections(r: &Results, mode: &str) -> Option<Row> {
    let a = r.load(mode, 64)?;
    Some((
        format!("p99 < 1 ms at 64 connections ({mode})"),
        us(a.latency.p99_us),
        verdict(a.latency.p99_us < 1000.0),
    ))
}

fn herd_one_request(r: &Results) -> Option<Row> {
    let h = r.herd.as_ref()?;
    let one = h.token_requests.iter().all(|&n| n == 1) && h.bad_answers == 0;
    Some((
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
    ))
}

fn idle_memory(r: &Results) -> Option<Row> {
    let i = r.idle.as_ref()?;
    Some((
        format!("RSS ≤ 10 MiB idle with {} profiles", i.profiles),
        mib(i.rss_kib),
        verdict(i.rss_kib <= 10 * 1024),
    ))
}

fn scale_memory(r: &Results) -> Option<Row> {
    let last = r.scale.as_ref()?.last()?;
    let limit = if last.profiles >= 10_000 { 50 } else { 10 };
    Some((
        format!("RSS ≤ {limit} MiB with {} profiles", last.profiles),
        mib(last.rss_kib),
        verdict(last.rss_kib <= limit * 1024),
    ))
}

fn scale_latency(r: &Results) -> Option<Row> {
    let steps = r.scale.as_ref()?;
    let (first, last) = (steps.first()?, steps.last()?);
    let growth = last.token.latency.p50_us / first.token.latency.p50_us;
    Some((
        "token latency does not grow with profiles (p50 within +25%)".into(),
        format!(
            "{} with {} → {} with {} ({growth:.2}×)",
            us(first.token.latency.p50_us),
            first.profiles,
            us(last.token.latency.p50_us),
            last.profiles
        ),
        verdict(growth <= 1.25),
    ))
}
