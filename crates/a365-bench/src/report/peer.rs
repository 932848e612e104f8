//! Part 7, side by side with oidc-agent: its own runs and its own ratio
//! format, since a365 can be hundreds of times faster there.

use super::format::{line, mib, time};
use super::names;
use super::results::Results;

/// Two decimals, or three significant digits for a ratio far below 1
/// (0.00× would hide a 500-fold difference).
fn ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.2e}×")
    }
}

pub(super) fn peer_section(w: &mut String, r: &Results) {
    if r.peer.iter().all(Option::is_none) && r.peer_memory.is_none() && r.peer_wakeups.is_none() {
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
    memory_table(w, r);
    wakeups_table(w, r);
    line(w, "");
}

/// Memory of both, after the runs and once idle.
fn memory_table(w: &mut String, r: &Results) {
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
}

/// Idle wake-ups of the three agents over the same window.
fn wakeups_table(w: &mut String, r: &Results) {
    if let Some(all) = &r.peer_wakeups {
        line(w, "");
        line(
            w,
            "| idle, side by side | processes | context switches | per minute |",
        );
        line(w, "|---|---|---|---|");
        for p in all {
            let per_minute = p.switches as f64 * 60.0 / p.secs.max(1.0);
            line(
                w,
                &format!(
                    "| {} | {} | {} in {:.0} s | {per_minute:.1} |",
                    p.label, p.processes, p.switches, p.secs
                ),
            );
        }
    }
}
