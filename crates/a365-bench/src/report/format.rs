//! How numbers read in the report, in one place so that every table writes
//! a time, a size or a verdict the same way.

pub(super) fn line(w: &mut String, text: &str) {
    w.push_str(text);
    w.push('\n');
}

pub(super) fn time(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

pub(super) fn us(micros: f64) -> String {
    time(micros / 1e6)
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

pub(super) fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
