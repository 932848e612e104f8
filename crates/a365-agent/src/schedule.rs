//! When to refresh and how long to back off: pure arithmetic on wall-clock
//! milliseconds, so tests can check it without sleeping.

use std::time::Duration;

const MINUTE_MS: i64 = 60_000;

/// From `now_ms` to the next multiple of `every` on the wall clock, where
/// the refreshers' ticks fall too: one wake-up then serves every periodic
/// look (the upgrade check, the idle give-back).
pub fn until_aligned(now_ms: i64, every: Duration) -> Duration {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    Duration::from_millis((every_ms - now_ms.rem_euclid(every_ms)) as u64)
}

/// [`until_aligned`] from now, on the system clock.
pub fn until_aligned_now(every: Duration) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    until_aligned(now, every)
}

/// When to refresh a token obtained at `obtained_ms` that expires at
/// `expires_ms`: a quarter of its lifetime before expiry (at most 30 min
/// before), moved up to a fifth earlier by `jitter` in `[0, 1)` so that
/// many profiles and agents don't ask in lockstep.
pub fn refresh_at(obtained_ms: i64, expires_ms: i64, jitter: f64) -> i64 {
    let lifetime = expires_ms.saturating_sub(obtained_ms).max(0);
    let margin = (lifetime / 4).min(30 * MINUTE_MS);
    let spread = (margin as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    expires_ms - margin - spread
}

/// The longest `Retry-After` honoured: one answer once asked for 317
/// years, which would have stopped a profile for good.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long to wait after the `attempts`-th failure in a row: exponential
/// from 1 s (60 s for refusals that retrying won't fix soon) up to 5 min
/// (30 min), with "equal jitter", and never less than the server's
/// `Retry-After` (itself at most [`MAX_RETRY_AFTER`]).
pub fn backoff(
    attempts: u32,
    rejected: bool,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let (base, cap) = if rejected {
        (60_000u64, 1_800_000u64)
    } else {
        (1_000, 300_000)
    };
    let exp = base
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(cap);
    let jittered = exp / 2 + (exp as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64;
    let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
    Duration::from_millis(jittered).max(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_looks_fall_on_the_refreshers_ticks() {
        let thirty = Duration::from_secs(30);
        assert_eq!(until_aligned(1_800_000_000_000, thirty), thirty);
        assert_eq!(
            until_aligned(1_800_000_000_001, thirty),
            thirty - Duration::from_millis(1)
        );
        assert_eq!(
            until_aligned(1_800_000_029_999, thirty),
            Duration::from_millis(1)
        );
        assert_eq!(until_aligned(5, Duration::ZERO), Duration::from_millis(1));
    }

    #[test]
    fn refresh_before_expiry() {
        // 3 s token: refresh 750 ms before expiry, up to 150 ms earlier.
        assert_eq!(refresh_at(0, 3_000, 0.0), 2_250);
        assert_eq!(refresh_at(0, 3_000, 0.999_999), 2_101);
        // 1 h token: 15 min before.
        assert_eq!(refresh_at(0, 60 * MINUTE_MS, 0.0), 45 * MINUTE_MS);
        // 24 h token: capped at 30 min before.
        assert_eq!(refresh_at(0, 1440 * MINUTE_MS, 0.0), 1410 * MINUTE_MS);
        // Already expired, or obtained "after" expiry (clock moved back).
        assert_eq!(refresh_at(10_000, 5_000, 0.5), 5_000);
    }

    #[test]
    fn backoff_grows_with_jitter_and_respects_retry_after() {
        assert_eq!(backoff(1, false, None, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, false, None, 1.0), Duration::from_millis(1_000));
        assert_eq!(backoff(3, false, None, 1.0), Duration::from_millis(4_000));
        assert_eq!(backoff(30, false, None, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(1, true, None, 1.0), Duration::from_secs(60));
        assert_eq!(
            backoff(1, false, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert!(backoff(u32::MAX, true, None, 1.0) <= Duration::from_secs(1800));
        let centuries = Duration::from_secs(317 * 365 * 86_400);
        assert_eq!(backoff(1, false, Some(centuries), 0.0), MAX_RETRY_AFTER);
        assert_eq!(backoff(1, false, Some(Duration::MAX), 1.0), MAX_RETRY_AFTER);
    }
}
