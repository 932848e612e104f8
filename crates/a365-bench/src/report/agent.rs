//! Parts 2 to 5: the agent alone, measured by a365-load's own subcommands
//! (throughput, the thundering herd, scale in profiles, idle cost), so
//! each table reads that subcommand's outcome rather than hyperfine's.

use super::format::{join, line, mib, us};
use super::results::Results;
use crate::scale;

pub(super) fn throughput_section(w: &mut String, r: &Results, secs: Option<f64>) {
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

pub(super) fn herd_section(w: &mut String, r: &Results) {
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

pub(super) fn scale_section(w: &mut String, r: &Results) {
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

pub(super) fn idle_section(w: &mut String, r: &Results) {
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
