//! Snowflake ids in Discord's layout:
//! `((ms - 1420070400000) << 22) | worker << 17 | process << 12 | increment`.
//!
//! The generator never returns 0, never lets the 12-bit increment overflow into the other
//! fields (it borrows the next millisecond instead), and can allocate an id strictly
//! greater than a given one, which is how a channel's message ids are kept increasing
//! with its stream revision even across processes with skewed clocks.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Discord's epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
const INCREMENT_BITS: u32 = 12;
const PROCESS_SHIFT: u32 = 12;
const WORKER_SHIFT: u32 = 17;
const TIMESTAMP_SHIFT: u32 = 22;
const MAX_INCREMENT: u64 = (1 << INCREMENT_BITS) - 1;

/// The Unix milliseconds a snowflake was made at.
pub fn timestamp_ms(id: u64) -> u64 {
    (id >> TIMESTAMP_SHIFT) + DISCORD_EPOCH_MS
}

/// The worker field of a snowflake (5 bits).
pub fn worker(id: u64) -> u8 {
    ((id >> WORKER_SHIFT) & 0x1f) as u8
}

/// The process field of a snowflake (5 bits).
pub fn process(id: u64) -> u8 {
    ((id >> PROCESS_SHIFT) & 0x1f) as u8
}

/// The increment field of a snowflake (12 bits).
pub fn increment(id: u64) -> u16 {
    (id & MAX_INCREMENT) as u16
}

/// Composes a snowflake from its fields.
pub fn compose(ms: u64, worker: u8, process: u8, increment: u16) -> u64 {
    (ms.saturating_sub(DISCORD_EPOCH_MS) << TIMESTAMP_SHIFT)
        | (u64::from(worker & 0x1f) << WORKER_SHIFT)
        | (u64::from(process & 0x1f) << PROCESS_SHIFT)
        | (u64::from(increment) & MAX_INCREMENT)
}

/// A source of the current time in Unix milliseconds (injected so tests control it).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(DISCORD_EPOCH_MS, |d| d.as_millis() as u64)
    }
}

#[derive(Debug)]
struct State {
    last_ms: u64,
    increment: u64,
}

/// Allocates unique snowflakes for one (worker, process) pair.
pub struct SnowflakeGenerator<C: Clock = SystemClock> {
    worker: u8,
    process: u8,
    clock: C,
    state: Mutex<State>,
}

impl SnowflakeGenerator<SystemClock> {
    /// A generator on the system clock.
    pub fn new(worker: u8, process: u8) -> Self {
        Self::with_clock(worker, process, SystemClock)
    }
}

impl<C: Clock> SnowflakeGenerator<C> {
    /// A generator on a given clock. `worker` and `process` are masked to 5 bits.
    pub fn with_clock(worker: u8, process: u8, clock: C) -> Self {
        SnowflakeGenerator {
            worker: worker & 0x1f,
            process: process & 0x1f,
            clock,
            state: Mutex::new(State {
                last_ms: 0,
                increment: 0,
            }),
        }
    }

    pub fn worker(&self) -> u8 {
        self.worker
    }

    pub fn process(&self) -> u8 {
        self.process
    }

    /// The next id: unique for this generator and increasing with each call.
    pub fn next(&self) -> u64 {
        self.next_after(0)
    }

    /// The next id that is also strictly greater than `floor` (the newest id in a
    /// channel, for example), even if `floor` came from a process whose clock is ahead.
    pub fn next_after(&self, floor: u64) -> u64 {
        let now = self.clock.now_ms().max(DISCORD_EPOCH_MS);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let floor_ms = if floor == 0 { 0 } else { timestamp_ms(floor) };
        // Never go back in time, and never below the floor's millisecond.
        let mut ms = now.max(s.last_ms).max(floor_ms);
        if ms == s.last_ms {
            s.increment += 1;
        } else {
            s.increment = 0;
        }
        loop {
            if s.increment > MAX_INCREMENT {
                // Out of increments in this millisecond: borrow the next one.
                ms += 1;
                s.increment = 0;
            }
            let id = compose(ms, self.worker, self.process, s.increment as u16);
            if id > floor && id != 0 {
                s.last_ms = ms;
                return id;
            }
            // Same millisecond as the floor but not above it (the floor has a larger
            // worker, process or increment): try the next increment.
            s.increment += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[derive(Clone)]
    struct FixedClock(Arc<AtomicU64>);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn fixed(ms: u64) -> (FixedClock, Arc<AtomicU64>) {
        let a = Arc::new(AtomicU64::new(ms));
        (FixedClock(a.clone()), a)
    }

    #[test]
    fn fields_round_trip_through_discords_layout() {
        // Discord's documented example: 175928847299117063.
        let id = 175928847299117063;
        assert_eq!(timestamp_ms(id), 1462015105796);
        assert_eq!(worker(id), 1);
        assert_eq!(process(id), 0);
        assert_eq!(increment(id), 7);
        assert_eq!(compose(1462015105796, 1, 0, 7), id);
    }

    #[test]
    fn ids_are_never_zero_even_at_the_epoch() {
        let (clock, _) = fixed(DISCORD_EPOCH_MS);
        let g = SnowflakeGenerator::with_clock(0, 0, clock);
        assert_ne!(g.next(), 0);
    }

    #[test]
    fn the_increment_never_overflows_into_the_process_field() {
        let (clock, _) = fixed(DISCORD_EPOCH_MS + 1_000);
        let g = SnowflakeGenerator::with_clock(3, 5, clock);
        let mut prev = 0;
        for _ in 0..10_000 {
            let id = g.next();
            assert!(id > prev);
            assert_eq!(worker(id), 3);
            assert_eq!(process(id), 5);
            prev = id;
        }
    }

    #[test]
    fn ids_stay_increasing_when_the_clock_goes_backwards() {
        let (clock, ms) = fixed(DISCORD_EPOCH_MS + 50_000);
        let g = SnowflakeGenerator::with_clock(1, 1, clock);
        let a = g.next();
        ms.store(DISCORD_EPOCH_MS + 10_000, Ordering::SeqCst);
        let b = g.next();
        assert!(b > a);
    }

    #[test]
    fn next_after_beats_a_floor_from_a_process_whose_clock_is_ahead() {
        let (clock, _) = fixed(DISCORD_EPOCH_MS + 1_000);
        let g = SnowflakeGenerator::with_clock(0, 0, clock);
        let other = compose(DISCORD_EPOCH_MS + 9_000, 31, 31, 4095);
        let id = g.next_after(other);
        assert!(id > other);
        assert_eq!(worker(id), 0);
        assert_eq!(process(id), 0);
    }

    proptest::proptest! {
        #[test]
        fn next_after_is_always_greater_than_its_floor(
            now in 0u64..1_000_000, floor_ms in 0u64..1_000_000,
            w in 0u8..32, p in 0u8..32, inc in 0u16..4096, gw in 0u8..32, gp in 0u8..32,
        ) {
            let (clock, _) = fixed(DISCORD_EPOCH_MS + now);
            let g = SnowflakeGenerator::with_clock(gw, gp, clock);
            let floor = compose(DISCORD_EPOCH_MS + floor_ms, w, p, inc);
            let id = g.next_after(floor);
            proptest::prop_assert!(id > floor);
            proptest::prop_assert_eq!(worker(id), gw);
            proptest::prop_assert_eq!(process(id), gp);
        }
    }
}
