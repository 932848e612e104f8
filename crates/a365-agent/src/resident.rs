//! Gives back the code pages an idle agent does not run. Start-up
//! (flags, config, TLS roots), a refresh (TLS, HTTP, JSON) and a status
//! run code scattered over the whole text segment, and the kernel maps
//! whole page-cache folios around each page touched: 5 to 6 MiB of code
//! stay counted in the agent's RSS while it sits idle for an hour. So once
//! `--idle-release` seconds passed with no request and no refresh, its own
//! executable mapping is unmapped (`MADV_DONTNEED`; the code stays in the
//! page cache, and what runs again maps back in at its first use, a minor
//! fault). Never written, the pages come back identical. Text is no
//! secret, so it is unlocked first (`mlockall` locked it as it was
//! touched). Linux only; elsewhere nothing is done.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When the last request or refresh began, in ms since [`since`].
static LAST_WORK_MS: AtomicU64 = AtomicU64::new(0);

fn since() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(since().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Notes work begun: the code it runs is not to be given back soon.
pub fn touch() {
    LAST_WORK_MS.store(now_ms(), Ordering::Relaxed);
}

/// The [`LAST_WORK_MS`] after which the code was last given back.
static GIVEN_BACK_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

/// Gives the code back `idle` after the last work, once per quiet spell:
/// the task sleeps until then; while idle, the tick thread looks for new
/// work without waking it.
pub fn give_back_when_idle(idle: Duration, tick: &crate::tick::Tick) {
    if !cfg!(target_os = "linux") {
        return;
    }
    since();
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tick.probing(Box::new(|| {
        LAST_WORK_MS.load(Ordering::Relaxed) != GIVEN_BACK_AFTER.load(Ordering::Relaxed)
    }));
    tokio::spawn(async move {
        let mut given_back_after = None;
        loop {
            let last = LAST_WORK_MS.load(Ordering::Relaxed);
            let due = last.saturating_add(idle_ms);
            let now = now_ms();
            if now < due {
                tokio::time::sleep(Duration::from_millis(due - now)).await;
                continue;
            }
            if given_back_after != Some(last) {
                given_back_after = Some(last);
                GIVEN_BACK_AFTER.store(last, Ordering::Relaxed);
                #[cfg(target_os = "linux")]
                match release_code() {
                    Ok(bytes) => tracing::debug!(kib = bytes / 1024, "idle: code pages given back"),
                    Err(e) => tracing::debug!("idle: code pages kept: {e}"),
                }
            }
            tick.until_probed().await;
        }
    });
}

/// Unmaps this process's executable's clean read-only mappings (its code
/// and read-only data); the bytes given back.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn release_code() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for (start, end) in clean_ranges(&smaps, &exe.to_string_lossy()) {
        let (ptr, len) = (start as *mut std::ffi::c_void, end - start);
        // SAFETY: a whole read-only mapping of our executable that holds
        // no private (copied, i.e. written) page, as /proc/self/smaps
        // lists it; read-only, it cannot become written meanwhile.
        // Unlocking it changes nothing but its residency, and MADV_DONTNEED
        // on a clean private file mapping only drops page-table entries,
        // refilled from the same file at the next access.
        unsafe {
            rustix::mm::munlock(ptr, len)?;
            rustix::mm::madvise(ptr, len, rustix::mm::Advice::LinuxDontNeed)?;
        }
        released += len;
    }
    Ok(released)
}

/// The read-only (`r-xp`, `r--p`) mappings of `exe` in
/// `/proc/self/smaps` text with no anonymous page: never written, so
/// identical to the file. (RELRO, relocated then made read-only, has
/// anonymous pages and is left alone.)
#[cfg(any(target_os = "linux", test))]
fn clean_ranges(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            let clean = anon.trim().trim_end_matches("kB").trim() == "0";
            if let Some(range) = current.take().filter(|_| clean) {
                ranges.push(range);
            }
            continue;
        }
        // A mapping's header: start-end perms offset dev inode path (the
        // path may hold spaces); fields are "Name: value" lines.
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let path = fields.nth(3).map(str::trim_start);
        current = (matches!(perms, "r-xp" | "r--p") && path == Some(exe) && end > start)
            .then_some((start, end));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_clean_read_only_mappings() {
        let smaps = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 42 /usr/bin/a365 agent
Rss:                1024 kB
Anonymous:             0 kB
55d0c0100000-55d0c0a00000 r-xp 00100000 08:01 42 /usr/bin/a365 agent
Rss:                6000 kB
Anonymous:             0 kB
55d0c0a00000-55d0c0c00000 r--p 00a00000 08:01 42 /usr/bin/a365 agent
Rss:                 368 kB
Anonymous:           368 kB
55d0c0c00000-55d0c0c10000 rw-p 00c00000 08:01 42 /usr/bin/a365 agent
Anonymous:            12 kB
7f0000000000-7f0000100000 r-xp 00028000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB";
        assert_eq!(
            clean_ranges(smaps, "/usr/bin/a365 agent"),
            [
                (0x55d0_c000_0000, 0x55d0_c010_0000),
                (0x55d0_c010_0000, 0x55d0_c0a0_0000)
            ]
        );
        assert!(clean_ranges(smaps, "/usr/bin/other").is_empty());
    }

    /// The test binary gives its own code back, then runs it again: the
    /// same ranges come out of the same parser.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_runs_on_after_giving_its_code_back() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let ranges = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            clean_ranges(&smaps, &exe.to_string_lossy())
        };
        let before = ranges();
        let released = release_code().unwrap();
        assert_eq!(released, before.iter().map(|(s, e)| e - s).sum::<usize>());
        assert!(released > 0);
        assert_eq!(ranges(), before);
    }
}
