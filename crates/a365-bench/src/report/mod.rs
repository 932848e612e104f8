//! The markdown report: every phase's results (JSON files in one
//! directory, named below) as tables, and the targets met or missed.
//!
//! - [`results`]: the files read back, and the lookups the sections share;
//! - [`targets`]: the targets met or missed, drawn from every part;
//! - [`client`]: part 1 (client latency) and part 6 (sizes and start-up);
//! - [`agent`]: parts 2 to 5, the agent alone under a365-load;
//! - [`peer`]: part 7, side by side with oidc-agent;
//! - [`format`]: times, sizes and verdicts as the tables write them.

mod agent;
mod client;
mod format;
mod peer;
mod proxy;
mod results;
mod targets;

use std::path::Path;

use format::line;
use results::Results;

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
/// Idle wake-ups of a365-agent, oidc-agent and ssh-agent, same window.
pub const PEER_WAKEUPS: &str = "peer-wakeups.json";
pub const PEER_HEAD_OF_LINE: &str = "peer-head-of-line.json";
pub const SCALE: &str = "scale.json";
pub const IDLE: &str = "idle.json";
/// Part 8: `a365-load proxy`.
pub const PROXY: &str = "proxy.json";

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

#[derive(Debug)]
pub struct Inputs {
    pub machine: String,
    pub binaries: Vec<(String, u64)>,
    pub smoke: bool,
    pub load_secs: Option<f64>,
}

/// The generated markdown, between [`BEGIN`] and [`END`].
pub fn render(dir: &Path, inputs: &Inputs) -> anyhow::Result<String> {
    let results = Results::from_dir(dir)?;
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
    targets::targets(w, &results);
    client::client(w, &results);
    agent::throughput_section(w, &results, inputs.load_secs);
    agent::herd_section(w, &results);
    agent::scale_section(w, &results);
    agent::idle_section(w, &results);
    client::sizes(w, &results, &inputs.binaries);
    peer::peer_section(w, &results);
    proxy::section(w, &results);
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
