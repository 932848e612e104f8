//! Part 1 (client latency) and part 6 (sizes and start-up): both read
//! hyperfine's export of part 1, so they share its lookups and its names.

use super::format::{line, time};
use super::names;
use super::results::Results;

pub(super) fn client(w: &mut String, r: &Results) {
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

pub(super) fn sizes(w: &mut String, r: &Results, binaries: &[(String, u64)]) {
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
