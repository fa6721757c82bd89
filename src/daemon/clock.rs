//! The clock the daemon's loop and a paced replay read: the system's, or a virtual one.
//!
//! The pipeline itself has no clock: it is handed packet time (and a source's quiet-link clock)
//! as [`crate::timestamp::Timestamp`]s. What reads a clock is the I/O around it: a paced replay
//! releasing each frame at its offset, the capture thread's quiet-link clock, and the loop's
//! periodic duties (the 100 ms flush to the case and the LEAs, X1's statistics, the watchdog).
//! They all read one [`Clock`], given to the run in [`super::Hooks::clock`].
//!
//! [`SystemClock`] is the monotonic clock. [`ManualClock`] stands still until its owner
//! advances it (quinn's model of a core handed `now`, applied to the whole loop): a test
//! replays 20 s of a quiet link in a few milliseconds, and the outcome no longer depends on
//! how busy the machine is. Waiting on it is also bounded in real time, so a thread that sleeps
//! until a virtual instant still looks at its stop order: callers take `sleep_until` returning
//! early as "not yet" and look at [`Clock::now`] again. Its owner moves it on once the run is
//! quiet ([`ManualClock::wait_until_quiet`]): the replay waits for a later frame and the loop
//! for input, so every frame due so far has been taken, as a discrete-event simulation moves
//! time only when nothing is left to do at the present instant.
//!
//! Real I/O waits stay on the real clock: a queue's receive timeout, the kernel ring's block
//! timeout at a stop. They bound how long a thread blocks, and decide nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A monotonic clock (see the module's notes).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
    /// Returns at `t` or later, or earlier (a virtual clock's bounded wait): look at
    /// [`Clock::now`] again.
    fn sleep_until(&self, t: Instant);
    /// The caller (the run's loop) has done all it can and waits for input: the owner of a
    /// virtual clock may move it on ([`ManualClock::wait_until_quiet`]). Nothing for the
    /// system's clock.
    fn idle(&self) {}
}

/// The clock of a run.
pub type SharedClock = Arc<dyn Clock>;

/// `std::time::Instant` and `std::thread::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, t: Instant) {
        let d = t.saturating_duration_since(Instant::now());
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// A clock that moves only when [`ManualClock::advance`] moves it.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
    moved: Condvar,
    origin: Instant,
}

#[derive(Debug, Default)]
struct ManualState {
    /// Time since `origin`.
    elapsed: Duration,
    /// The instants (since `origin`) threads wait for in `sleep_until`.
    sleepers: Vec<Duration>,
    /// Order of events: the last time a thread began to sleep, and the last [`Clock::idle`].
    seq: u64,
    last_sleep: u64,
    last_idle: u64,
}

/// How long a [`ManualClock::sleep_until`] waits in real time before it returns early.
const REAL_WAIT_BOUND: Duration = Duration::from_millis(20);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock { state: Mutex::new(ManualState::default()), moved: Condvar::new(), origin: Instant::now() }
    }
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    /// Moves the clock `by` forward and wakes whoever waits.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.elapsed += by;
        }
        self.moved.notify_all();
    }

    /// Time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.state.lock().map(|s| s.elapsed).unwrap_or_default()
    }

    /// Waits (in real time, at most `limit`) until the run has done all it can at the present
    /// instant: a thread sleeps on the clock for an instant not reached yet (a paced replay has
    /// handed on every frame due), and the loop went idle after that (it has taken them all).
    /// With several paced sources one asleep is taken for all: the tests drive one. Whether it
    /// did.
    pub fn wait_until_quiet(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            let quiet = self
                .state
                .lock()
                .is_ok_and(|s| s.sleepers.iter().any(|t| *t > s.elapsed) && s.last_idle > s.last_sleep);
            if quiet {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
    fn sleep_until(&self, t: Instant) {
        let target = t.saturating_duration_since(self.origin);
        let Ok(mut s) = self.state.lock() else { return };
        if s.elapsed >= target {
            return;
        }
        s.sleepers.push(target);
        s.seq += 1;
        s.last_sleep = s.seq;
        let (mut s, _) = match self.moved.wait_timeout_while(s, REAL_WAIT_BOUND, |s| s.elapsed < target) {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        if let Some(i) = s.sleepers.iter().position(|t| *t == target) {
            s.sleepers.swap_remove(i);
        }
    }
    fn idle(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.seq += 1;
            s.last_idle = s.seq;
        }
    }
}

/// A duty done every `period` of the clock, decided from `now` alone.
#[derive(Debug, Clone, Copy)]
pub struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    /// First due one `period` after `now`.
    pub fn new(period: Duration, now: Instant) -> Every {
        Every { period, last: now }
    }

    /// Whether the duty is due at `now`; if so, the next is one period later.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= self.period {
            self.last = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_wakes_its_sleepers() {
        let c = ManualClock::new();
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), t0, "real time does not move it");
        let sleeper = {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut wakes = 0;
                while c.now() < t0 + Duration::from_secs(20) {
                    c.sleep_until(t0 + Duration::from_secs(20));
                    wakes += 1;
                }
                (c.now() - t0, wakes)
            })
        };
        // Not quiet while no loop says it is idle after the sleeper began to wait.
        assert!(!c.wait_until_quiet(Duration::from_millis(50)));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let idler = {
            let (c, done) = (c.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    c.idle();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        assert!(c.wait_until_quiet(Duration::from_secs(5)), "the thread sleeps on the clock");
        c.advance(Duration::from_secs(19));
        assert!(c.wait_until_quiet(Duration::from_secs(5)), "19 s is not yet 20 s");
        c.advance(Duration::from_secs(1));
        let (at, wakes) = sleeper.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        idler.join().unwrap();
        assert_eq!(at, Duration::from_secs(20));
        assert!(wakes >= 1);
        // Due now: no wait.
        let t = std::time::Instant::now();
        c.sleep_until(t0);
        assert!(t.elapsed() < REAL_WAIT_BOUND);
    }

    #[test]
    fn a_duty_is_due_once_per_period_of_the_clock_given() {
        let c = ManualClock::new();
        let mut flush = Every::new(Duration::from_millis(100), c.now());
        let mut fired = Vec::new();
        for step in 1..=25 {
            c.advance(Duration::from_millis(20));
            if flush.due(c.now()) {
                fired.push(step * 20);
            }
        }
        assert_eq!(fired, [100, 200, 300, 400, 500]);
    }
}
