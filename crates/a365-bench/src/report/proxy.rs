//! Part 8: proxy routes, a request through a route beside the same
//! request straight to the upstream with the token.

use super::format::{line, us, verdict};
use super::results::Results;

/// A row of the targets table.
type Row = (String, String, &'static str);

pub(super) fn section(w: &mut String, r: &Results) {
    let Some(p) = &r.proxy else { return };
    line(w, "### 8. Proxy routes");
    line(w, "");
    line(
        w,
        "A POST of a small GraphQL query to the token server's mock Nexar API on loopback: \
         straight to it with `Authorization: Bearer …`, and through an `a365 proxy` route that \
         adds the header, alternately on one kept-alive connection each; then each way with \
         many kept-alive connections at once.",
    );
    line(w, "");
    line(w, "| | p50 | p99 | p99.9 | requests/s |");
    line(w, "|---|---|---|---|---|");
    for (name, s, rps) in [
        ("direct, with the header", &p.direct, p.direct_rps),
        ("through the route", &p.proxied, p.proxied_rps),
    ] {
        line(
            w,
            &format!(
                "| {name} | {} | {} | {} | {rps:.0} ({} connections) |",
                us(s.p50_us),
                us(s.p99_us),
                us(s.p999_us),
                p.connections
            ),
        );
    }
    line(w, "");
    line(
        w,
        &format!(
            "The agent's anonymous memory: {} KiB before the route was added, {} KiB after the \
             requests on one connection, {} KiB after the {} connections at once (the \
             allocator keeps what their buffers used).",
            p.anon_before_kib, p.anon_one_kib, p.anon_after_kib, p.connections
        ),
    );
    line(w, "");
}

pub(super) fn targets(r: &Results) -> Vec<Row> {
    let Some(p) = &r.proxy else {
        return Vec::new();
    };
    let p50 = p.proxied.p50_us - p.direct.p50_us;
    let p99 = p.proxied.p99_us - p.direct.p99_us;
    let grew = p.anon_after_kib.saturating_sub(p.anon_before_kib);
    vec![
        (
            "a proxy route adds ≤ 0.3 ms at the median".into(),
            format!(
                "{} ({} vs {})",
                us(p50),
                us(p.proxied.p50_us),
                us(p.direct.p50_us)
            ),
            verdict(p50 <= 300.0),
        ),
        (
            "a proxy route adds ≤ 1 ms at p99".into(),
            format!(
                "{} ({} vs {})",
                us(p99),
                us(p.proxied.p99_us),
                us(p.direct.p99_us)
            ),
            verdict(p99 <= 1000.0),
        ),
        (
            format!(
                "a proxy route serves ≥ 5,000 requests/s ({} connections)",
                p.connections
            ),
            format!("{:.0}/s (direct: {:.0}/s)", p.proxied_rps, p.direct_rps),
            verdict(p.proxied_rps >= 5000.0),
        ),
        (
            format!(
                "the agent's anonymous memory grows ≤ 1 MiB with a route in use ({} connections)",
                p.connections
            ),
            format!(
                "{grew} KiB (one connection: {} KiB)",
                p.anon_one_kib.saturating_sub(p.anon_before_kib)
            ),
            verdict(grew <= 1024),
        ),
    ]
}
