//! Wall-clock times of day and intervals, as configured ("08:00-16:30").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A local time of day in whole minutes, `00:00` ..= `24:00` (24:00 ends a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hm(u16);

impl Hm {
    /// Midnight at the start of a day.
    pub const MIDNIGHT: Hm = Hm(0);
    /// Midnight at the end of a day (`24:00`).
    pub const END_OF_DAY: Hm = Hm(24 * 60);

    /// `hour:minute`; `None` if out of range (24:00 is the only time with hour 24).
    pub fn new(hour: u8, minute: u8) -> Option<Hm> {
        let m = u16::from(hour) * 60 + u16::from(minute);
        (minute < 60 && m <= 24 * 60).then_some(Hm(m))
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// Hour part (0..=24).
    pub fn hour(self) -> u8 {
        (self.0 / 60) as u8
    }

    /// Minute part (0..60).
    pub fn minute(self) -> u8 {
        (self.0 % 60) as u8
    }

    /// The minute of day of a civil time (seconds are truncated).
    pub fn of(t: jiff::civil::Time) -> Hm {
        Hm(t.hour() as u16 * 60 + t.minute() as u16)
    }
}

impl std::str::FromStr for Hm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (h, m) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("time {s:?} is not HH:MM"))?;
        let h: u8 = h
            .parse()
            .map_err(|_| format!("time {s:?} has a bad hour"))?;
        let m: u8 = m
            .parse()
            .map_err(|_| format!("time {s:?} has a bad minute"))?;
        Hm::new(h, m).ok_or_else(|| format!("time {s:?} is out of range 00:00..=24:00"))
    }
}

impl TryFrom<String> for Hm {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Hm> for String {
    fn from(h: Hm) -> String {
        h.to_string()
    }
}

impl fmt::Display for Hm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

/// A half-open wall-clock interval `[from, to)` within one local day; written `"08:00-16:30"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Interval {
    /// First minute inside.
    pub from: Hm,
    /// First minute outside (may be `24:00`).
    pub to: Hm,
}

impl Interval {
    /// `[from, to)`; `None` unless `from < to`.
    pub fn new(from: Hm, to: Hm) -> Option<Interval> {
        (from < to).then_some(Interval { from, to })
    }

    /// Whether the minute `t` lies inside.
    pub fn contains(&self, t: Hm) -> bool {
        self.from <= t && t < self.to
    }

    /// The whole day.
    pub fn all_day() -> Interval {
        Interval {
            from: Hm::MIDNIGHT,
            to: Hm::END_OF_DAY,
        }
    }
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("interval {s:?} is not HH:MM-HH:MM"))?;
        Interval::new(a.parse()?, b.parse()?)
            .ok_or_else(|| format!("interval {s:?} must start before it ends"))
    }
}

impl TryFrom<String> for Interval {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Interval> for String {
    fn from(i: Interval) -> String {
        i.to_string()
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.from, self.to)
    }
}
