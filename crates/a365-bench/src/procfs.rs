//! What /proc says about a process: resident memory, and how often each of
//! its threads was switched out (the wake-ups of an idle process).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub rss_kib: u64,
    /// By thread id.
    pub threads: BTreeMap<u32, ThreadSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadSample {
    pub name: String,
    /// voluntary_ctxt_switches + nonvoluntary_ctxt_switches.
    pub switches: u64,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status: is the agent running?"))?;
    let rss_kib = field(&status, "VmRSS:").context("no VmRSS in /proc/PID/status")?;
    let mut threads = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).context("listing threads")?;
    for task in tasks {
        let task = task?;
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        let switches = field(&status, "voluntary_ctxt_switches:").unwrap_or(0)
            + field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        threads.insert(tid, ThreadSample { name, switches });
    }
    Ok(Sample { rss_kib, threads })
}

/// The number after `key` on its line (`VmRSS:  1234 kB`).
fn field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Idle {
    /// Profiles the agent held (filled in by the caller).
    pub profiles: usize,
    pub secs: f64,
    pub rss_kib: u64,
    /// Context switches of all threads during the window.
    pub wakeups: u64,
    /// The same, by thread (name and tid).
    pub by_thread: Vec<(String, u64)>,
    /// Threads that ended during the window (their switches are lost).
    pub ended_threads: usize,
}

/// Watches an idle process for `window`.
pub fn idle(pid: u32, window: Duration) -> anyhow::Result<Idle> {
    let before = sample(pid)?;
    std::thread::sleep(window);
    let after = sample(pid)?;
    let mut by_thread = Vec::new();
    let mut wakeups = 0;
    for (tid, thread) in &after.threads {
        let was = before.threads.get(tid).map_or(0, |t| t.switches);
        let delta = thread.switches.saturating_sub(was);
        wakeups += delta;
        by_thread.push((format!("{} ({tid})", thread.name), delta));
    }
    let ended_threads = before
        .threads
        .keys()
        .filter(|tid| !after.threads.contains_key(tid))
        .count();
    Ok(Idle {
        profiles: 0,
        secs: window.as_secs_f64(),
        rss_kib: after.rss_kib,
        wakeups,
        by_thread,
        ended_threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
        assert!(!me.threads.is_empty());
        assert_eq!(field("VmRSS:\t  5120 kB\n", "VmRSS:"), Some(5120));
    }
}

/// How often one program (all the threads of all its processes) was
/// switched out over a window: its wake-ups while idle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wakeups {
    pub label: String,
    pub processes: usize,
    pub secs: f64,
    pub switches: u64,
}

/// The context switches of every thread of `pids`, summed.
fn switches(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        total += sample(*pid)?
            .threads
            .values()
            .map(|t| t.switches)
            .sum::<u64>();
    }
    Ok(total)
}

/// Several idle programs watched over the same `window`, side by side.
pub fn wakeups(programs: &[(String, Vec<u32>)], window: Duration) -> anyhow::Result<Vec<Wakeups>> {
    let before = programs
        .iter()
        .map(|(_, pids)| switches(pids))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::thread::sleep(window);
    let mut all = Vec::new();
    for ((label, pids), was) in programs.iter().zip(before) {
        all.push(Wakeups {
            label: label.clone(),
            processes: pids.len(),
            secs: window.as_secs_f64(),
            switches: switches(pids)?.saturating_sub(was),
        });
    }
    Ok(all)
}

/// The memory of one program, which may be several processes (oidc-agent
/// runs two): each process's VmRSS, VmHWM and Pss summed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub label: String,
    pub processes: usize,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Proportional set size: shared pages (libraries, page cache) split
    /// between the processes that map them.
    pub pss_kib: u64,
}

/// A process's anonymous resident memory (its heap and stacks), KiB.
pub fn anon_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    field(&status, "RssAnon:").context("no RssAnon")
}

pub fn memory(label: &str, pids: &[u32]) -> anyhow::Result<Memory> {
    let mut m = Memory {
        label: label.to_owned(),
        processes: pids.len(),
        rss_kib: 0,
        hwm_kib: 0,
        pss_kib: 0,
    };
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status: is {label} running?"))?;
        m.rss_kib += field(&status, "VmRSS:").context("no VmRSS")?;
        m.hwm_kib += field(&status, "VmHWM:").context("no VmHWM")?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
        m.pss_kib += field(&rollup, "Pss:").unwrap_or(0);
    }
    Ok(m)
}
