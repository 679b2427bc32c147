//! Pacing a drain that has a deadline: what to start next given the time
//! left and what this pass has measured so far. Pure decisions, tested
//! without a filesystem or a worker.
//!
//! Why: the sweep's `--budget` is a promise to the service whose start
//! waits on it (`ExecStartPre=`): the pass ends within the budget, plus its
//! blocking phase, plus a second. The drain has two kinds of work, bounded
//! in two ways. Deleting files checks the deadline between files
//! ([`crate::remove::remove_entry_until`]). Reclaiming (assess, preserve,
//! forget) runs in the owner's worker, one process per call, whose work
//! cannot be cut in the middle without leaving a worktree half-forgotten;
//! so a call gets no more entries than the time left should hold at the
//! speed measured so far ([`next_chunk`]), it starts no request that would
//! not end by the deadline at that speed
//! ([`crate::as_owner::Worker::with_stop_after`]), and only a worker still
//! running [`DRAIN_OVERRUN`] past the deadline (stopped, or stuck in one
//! huge repository) is killed, failing its own entries ([`call_limits`]).

use std::time::Duration;

/// The most reclaims one worker call carries (a worker is one process;
/// the chunk bounds its run time under the timeout).
pub const RECLAIM_CHUNK: usize = 16;

/// The entries of the first call of a pass with a deadline, before any
/// speed is known: one, so that deleting starts early and the speed is
/// known for the next call.
pub const FIRST_CHUNK: usize = 1;

/// The most reclaim time (at the measured speed) one call of a pass with a
/// deadline carries: the drain's steps stay short, so that deleting one
/// chunk and reclaiming the next keep pace, and the last call ends close
/// to the deadline.
pub const STEP: Duration = Duration::from_millis(500);

/// How long past the deadline a worker call may run before it is killed:
/// the reclaim in flight at the deadline finishes (a second or less for a
/// worktree of thousands of files).
pub const DRAIN_OVERRUN: Duration = Duration::from_millis(500);

/// How many waiting entries the next reclaim call takes. `left`: the time
/// until the deadline (`None`: no deadline); `per_entry`: the mean time of
/// one reclaim in this pass so far (`None`: nothing measured yet). `0`:
/// start no more calls (what waits is deferred to the next pass): the
/// deadline has passed, or what is left of it would not hold one reclaim.
pub fn next_chunk(left: Option<Duration>, per_entry: Option<Duration>) -> usize {
    let Some(left) = left else {
        return RECLAIM_CHUNK;
    };
    match per_entry {
        _ if left.is_zero() => 0,
        None => FIRST_CHUNK,
        Some(p) if left < p => 0,
        Some(p) if p.is_zero() => RECLAIM_CHUNK,
        Some(p) => {
            let fits = left.min(STEP).as_nanos() / p.as_nanos();
            usize::try_from(fits).map_or(RECLAIM_CHUNK, |n| n.clamp(1, RECLAIM_CHUNK))
        }
    }
}

/// The limits of a worker call made with `left` until the deadline, when
/// one reclaim takes `per_entry` (`None`: not known yet): the time after
/// which it starts no request (one that would not end by the deadline),
/// and the timeout at which it is killed, never more than `timeout` (the
/// worker's own).
pub fn call_limits(
    left: Duration,
    per_entry: Option<Duration>,
    timeout: Duration,
) -> (Duration, Duration) {
    let stop = left.saturating_sub(per_entry.unwrap_or_default());
    (stop, (left + DRAIN_OVERRUN).min(timeout))
}

/// The speed of reclaiming in this pass: reclaims and the time they took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Speed {
    entries: u32,
    took: Duration,
}

impl Speed {
    /// Adds a call that reclaimed `entries` in `took`.
    pub fn observe(&mut self, entries: usize, took: Duration) {
        self.entries = self
            .entries
            .saturating_add(u32::try_from(entries).unwrap_or(u32::MAX));
        self.took = self.took.saturating_add(took);
    }

    /// The mean time of one reclaim; `None` before any was measured.
    pub fn per_entry(&self) -> Option<Duration> {
        (self.entries > 0).then(|| self.took / self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_a_deadline_calls_take_whole_chunks() {
        assert_eq!(next_chunk(None, None), RECLAIM_CHUNK);
        assert_eq!(next_chunk(None, Some(MS * 900)), RECLAIM_CHUNK);
    }

    #[test]
    fn the_first_call_is_small_and_none_starts_after_the_deadline() {
        assert_eq!(next_chunk(Some(MS * 1000), None), FIRST_CHUNK);
        assert_eq!(next_chunk(Some(Duration::ZERO), None), 0);
        assert_eq!(next_chunk(Some(Duration::ZERO), Some(MS)), 0);
    }

    #[test]
    fn a_call_holds_one_step_at_the_measured_speed() {
        // 500 ms of 50 ms reclaims.
        assert_eq!(next_chunk(Some(MS * 3000), Some(MS * 50)), 10);
        // Less time left than a step: what is left.
        assert_eq!(next_chunk(Some(MS * 120), Some(MS * 50)), 2);
        assert_eq!(next_chunk(Some(MS * 50), Some(MS * 50)), 1);
        // Fast reclaims: never more than a chunk.
        assert_eq!(next_chunk(Some(MS * 3000), Some(MS)), RECLAIM_CHUNK);
        assert_eq!(
            next_chunk(Some(MS * 3000), Some(Duration::ZERO)),
            RECLAIM_CHUNK
        );
        // Slow ones: one at a time, while one fits.
        assert_eq!(next_chunk(Some(MS * 3000), Some(MS * 2000)), 1);
        assert_eq!(next_chunk(Some(MS * 700), Some(MS * 900)), 0);
    }

    #[test]
    fn a_call_starts_nothing_it_cannot_end_and_is_killed_a_little_after() {
        let timeout = Duration::from_secs(60);
        assert_eq!(
            call_limits(MS * 800, None, timeout),
            (MS * 800, MS * 800 + DRAIN_OVERRUN)
        );
        assert_eq!(
            call_limits(MS * 800, Some(MS * 300), timeout),
            (MS * 500, MS * 800 + DRAIN_OVERRUN)
        );
        assert_eq!(
            call_limits(MS * 200, Some(MS * 300), timeout),
            (Duration::ZERO, MS * 200 + DRAIN_OVERRUN)
        );
        assert_eq!(
            call_limits(Duration::from_secs(90), None, timeout),
            (Duration::from_secs(90), timeout)
        );
    }

    #[test]
    fn speed_is_the_mean_of_what_was_measured() {
        let mut s = Speed::default();
        assert_eq!(s.per_entry(), None);
        s.observe(0, MS * 5);
        assert_eq!(s.per_entry(), None, "a call that reclaimed nothing");
        s.observe(2, MS * 100);
        s.observe(3, MS * 400);
        assert_eq!(s.per_entry(), Some(MS * 101));
    }
}
