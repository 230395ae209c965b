//! Delivery progress: a bar on a terminal, a log line every few seconds
//! otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on a terminal; a log line every few seconds otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    list: String,
    total: u64,
    started: Instant,
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    pub(super) fn new(terminal: bool, list: &str, total: u64) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} · {per_sec} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(list.to_owned());
            bar
        });
        Self {
            bar,
            list: list.to_owned(),
            total,
            started: Instant::now(),
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub(super) fn update(&self, sent: usize, deferred: usize, failed: usize) {
        let done = (sent + deferred + failed) as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("sent {sent} · deferred {deferred} · failed {failed}"));
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            let eta =
                if rate > 0.0 { (self.total.saturating_sub(done)) as f64 / rate } else { 0.0 };
            tracing::info!(
                list = %self.list,
                "{done}/{} · sent {sent} · deferred {deferred} · failed {failed} · {rate:.0}/s · ETA {eta:.0}s",
                self.total
            );
        }
    }

    pub(super) fn finish(&self, sent: usize, deferred: usize, failed: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(format!("sent {sent} · deferred {deferred} · failed {failed}"));
        }
    }
}
