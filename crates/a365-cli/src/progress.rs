//! A line on the terminal that says what a slow request is waiting for,
//! with the seconds it has waited; nothing when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shown from [`Progress::start`] until dropped, then wiped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(what: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || show(&what, &stop))
        });
        Progress { stop, thread }
    }
}

/// Redraws the line every 100 ms (the first after 300 ms, so a quick
/// answer shows nothing).
fn show(what: &str, stop: &AtomicBool) {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let started = Instant::now();
    let mut drawn = false;
    for frame in FRAMES.iter().cycle() {
        std::thread::sleep(Duration::from_millis(100));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let waited = started.elapsed();
        if waited < Duration::from_millis(300) {
            continue;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{frame} {what} {}s", waited.as_secs());
        let _ = err.flush();
        drawn = true;
    }
    if drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
