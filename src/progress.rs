//! How far a drain has got, told while it runs: `sd_notify` `STATUS=`
//! lines when systemd listens ([`crate::logging::status`]), and a progress
//! bar on stderr when a person watches a terminal.
//!
//! Why: the sweep's drain can take its whole budget while the agent
//! service's start waits on it, and a reap pass can take minutes. Under
//! systemd, `systemctl status` then shows how many entries and bytes are
//! done and left; on a terminal, an admin running a pass by hand sees it
//! move. The bar is drawn only when the caller asks for it (not under `-q`
//! or `--json`) and stderr is a terminal; STATUS lines go out at most once
//! per [`STATUS_EVERY`], the first and the last always.
//!
//! The bytes left are an estimate: the mean size of the entries done so
//! far times the entries left. Measuring them would mean walking every
//! tree in the trash before deleting any.

use crate::pass::report::{human_bytes, Action, Outcome};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// The least time between two `STATUS=` lines.
pub const STATUS_EVERY: Duration = Duration::from_millis(250);

/// Entries and bytes done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries found waiting in the trash.
    pub total: u64,
    /// Entries dealt with (deferred ones are left, not done).
    pub done: u64,
    /// Bytes freed.
    pub bytes: u64,
}

impl Counts {
    pub fn left(&self) -> u64 {
        self.total.saturating_sub(self.done)
    }

    /// The bytes the entries left should hold, at the mean of those done;
    /// `None` before any is done.
    pub fn bytes_left(&self) -> Option<u64> {
        (self.done > 0).then(|| {
            let mean = u128::from(self.bytes) / u128::from(self.done);
            u64::try_from(mean * u128::from(self.left())).unwrap_or(u64::MAX)
        })
    }

    /// The `STATUS=` line.
    pub fn status_line(&self) -> String {
        let left = match self.bytes_left() {
            Some(b) if self.left() > 0 => format!(", about {}", human_bytes(b)),
            _ => String::new(),
        };
        format!(
            "draining the trash: {} of {} entries done, {} freed; {} left{left}",
            self.done,
            self.total,
            human_bytes(self.bytes),
            self.left()
        )
    }
}

/// The progress of one pass's drains (one per root), told as it goes.
#[derive(Debug)]
pub struct Progress {
    counts: Counts,
    bar: Option<ProgressBar>,
    last_status: Option<Instant>,
}

impl Progress {
    /// `bar`: draw a progress bar on stderr, if it is a terminal.
    pub fn new(bar: bool) -> Progress {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} draining [{bar:30}] {pos}/{len} entries, {msg} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr()).with_style(style)
        });
        Progress {
            counts: Counts::default(),
            bar,
            last_status: None,
        }
    }

    /// `n` more entries found waiting (an empty trash says nothing).
    pub fn found(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.counts.total += n as u64;
        if let Some(bar) = &self.bar {
            bar.set_length(self.counts.total);
        }
        self.tell(true);
    }

    /// One entry's report line: done unless deferred; its bytes count
    /// either way (a deferred removal may have freed some).
    pub fn settled(&mut self, o: &Outcome) {
        self.counts.bytes += o.bytes_freed;
        if o.action != Action::Deferred {
            self.counts.done += 1;
        }
        self.tell(false);
    }

    /// The drains are over: the last `STATUS=` line, the bar cleared.
    pub fn finish(&mut self) {
        if self.counts.total > 0 {
            self.tell(true);
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn tell(&mut self, always: bool) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.counts.done);
            bar.set_message(format!("{} freed", human_bytes(self.counts.bytes)));
        }
        let due = self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
        if always || due {
            crate::logging::status(&self.counts.status_line());
            self.last_status = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_say_what_is_done_and_left() {
        let start = Counts {
            total: 150,
            done: 0,
            bytes: 0,
        };
        assert_eq!(start.bytes_left(), None);
        assert_eq!(
            start.status_line(),
            "draining the trash: 0 of 150 entries done, 0 B freed; 150 left"
        );
        let midway = Counts {
            total: 150,
            done: 50,
            bytes: 50 * 1024 * 1024,
        };
        assert_eq!(midway.bytes_left(), Some(100 * 1024 * 1024));
        assert_eq!(
            midway.status_line(),
            "draining the trash: 50 of 150 entries done, 50.0 MiB freed; 100 left, about 100.0 MiB"
        );
        let end = Counts {
            total: 2,
            done: 2,
            bytes: 10,
        };
        assert_eq!(
            end.status_line(),
            "draining the trash: 2 of 2 entries done, 10 B freed; 0 left"
        );
    }

    #[test]
    fn deferred_entries_are_left_and_their_bytes_count() {
        let mut p = Progress::new(false);
        p.found(3);
        let mut removed = Outcome::new("/r/a".into(), Action::Removed);
        removed.bytes_freed = 100;
        let mut deferred = Outcome::new("/r/b".into(), Action::Deferred);
        deferred.bytes_freed = 40;
        p.settled(&removed);
        p.settled(&deferred);
        p.finish();
        assert_eq!(
            p.counts,
            Counts {
                total: 3,
                done: 1,
                bytes: 140
            }
        );
        assert!(p.bar.is_none());
    }
}
