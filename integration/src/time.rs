//! Virtual time: the only clock the simulated cluster has.
//!
//! Microsecond resolution, so that sub-millisecond network latencies can be
//! expressed while hours of cluster life still fit comfortably in a `u64`.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the simulation's virtual clock, in microseconds since the run began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);

    pub const fn from_micros(us: u64) -> Self {
        SimTime(us)
    }

    pub const fn from_millis(ms: u64) -> Self {
        SimTime(ms.saturating_mul(1000))
    }

    pub const fn from_secs(s: u64) -> Self {
        SimTime(s.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// Time elapsed since the start of the run, for cores that count from an epoch.
    pub const fn since_start(self) -> Duration {
        Duration::from_micros(self.0)
    }

    pub fn saturating_sub(self, other: SimTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(other.0))
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;
    fn add(self, d: Duration) -> SimTime {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        SimTime(self.0.saturating_add(us))
    }
}

impl Sub for SimTime {
    type Output = Duration;
    fn sub(self, other: SimTime) -> Duration {
        self.saturating_sub(other)
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:5}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_fixed_width_seconds_and_micros() {
        assert_eq!(SimTime::from_micros(62_000_345).to_string(), "   62.000345");
        assert_eq!(SimTime::from_millis(1500).to_string(), "    1.500000");
    }

    #[test]
    fn adding_a_duration_never_wraps() {
        let t = SimTime::from_micros(u64::MAX - 1) + Duration::from_secs(10);
        assert_eq!(t.as_micros(), u64::MAX);
        assert_eq!(
            SimTime::from_secs(3) - SimTime::from_secs(5),
            Duration::ZERO
        );
    }
}
