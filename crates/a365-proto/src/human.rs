//! Durations for people, the same in the agent's messages and `a365`'s
//! table.

/// "3h 12m", "45s", "800ms", "-2m 5s"; every `i64` (no recursion for the
/// sign: `-i64::MIN` does not exist).
pub fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn every_i64_has_words() {
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(1500), "1s");
        assert_eq!(human_ms(-1500), "-1s");
        assert_eq!(human_ms(754_000), "12m 34s");
        assert_eq!(human_ms((3 * 3600 + 12 * 60 + 5) * 1000), "3h 12m");
        assert_eq!(human_ms(90_000_000), "1d 1h");
        assert_eq!(human_ms(i64::MIN), "-106751991167d 7h");
        assert_eq!(human_ms(i64::MAX), "106751991167d 7h");
    }
}
