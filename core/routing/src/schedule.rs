//! Opening hours: weekly intervals, national holidays, custom closed dates and
//! exceptions entered ahead of time, evaluated in the office's time zone.
//!
//! # Evaluation order
//!
//! For the local wall time `(date, time)` of a timestamp in the schedule's zone:
//! 1. an [`Exception`] covering it wins ("closed 09:00–13:00 on 2027-03-12", or "open
//!    10:00–14:00" on a holiday) → [`Status::Exception`];
//! 2. else a custom closed date or a national holiday (from its start time, for half days)
//!    → [`Status::Holiday`];
//! 3. else the weekday's intervals → [`Status::Open`] or [`Status::Closed`].
//!
//! # Daylight-saving time
//!
//! Intervals are **wall-clock** times. Every instant has exactly one local time, so
//! `is_open` is always well defined:
//! - a local time that does not exist (spring forward, 02:00–03:00 in the Nordic zones) is
//!   simply never reached: an interval `01:00-02:30` is open until the clocks jump, then
//!   closed; an interval inside the gap never opens that day;
//! - a local time that occurs twice (fall back, 02:00–03:00) is matched both times: an
//!   interval `02:00-02:30` is open for both passes (one real hour in total).

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use crate::clock::{Hm, Interval};
use crate::holidays::HolidayRule;

/// Weekly opening intervals, one list per weekday.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Week {
    #[serde(default)]
    pub mon: Vec<Interval>,
    #[serde(default)]
    pub tue: Vec<Interval>,
    #[serde(default)]
    pub wed: Vec<Interval>,
    #[serde(default)]
    pub thu: Vec<Interval>,
    #[serde(default)]
    pub fri: Vec<Interval>,
    #[serde(default)]
    pub sat: Vec<Interval>,
    #[serde(default)]
    pub sun: Vec<Interval>,
}

impl Week {
    /// The intervals of one weekday.
    pub fn day(&self, wd: Weekday) -> &[Interval] {
        match wd {
            Weekday::Monday => &self.mon,
            Weekday::Tuesday => &self.tue,
            Weekday::Wednesday => &self.wed,
            Weekday::Thursday => &self.thu,
            Weekday::Friday => &self.fri,
            Weekday::Saturday => &self.sat,
            Weekday::Sunday => &self.sun,
        }
    }

    /// The same intervals Monday to Friday, nothing at weekends.
    pub fn weekdays(intervals: &[Interval]) -> Week {
        Week {
            mon: intervals.to_vec(),
            tue: intervals.to_vec(),
            wed: intervals.to_vec(),
            thu: intervals.to_vec(),
            fri: intervals.to_vec(),
            ..Week::default()
        }
    }

    /// Whether local time `t` on a `wd` falls in an interval.
    pub fn contains(&self, wd: Weekday, t: Hm) -> bool {
        self.day(wd).iter().any(|i| i.contains(t))
    }
}

/// A custom closed date of this office (e.g. a company day out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDate {
    /// The date.
    pub date: Date,
    /// Shown and spoken as the holiday's name.
    pub name: String,
    /// Closed from this local time (a half day); absent = all day.
    #[serde(default)]
    pub from: Option<Hm>,
}

/// An exception entered ahead of time: open or closed for `hours` on `date`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Why ("course day").
    pub name: String,
    /// The local date.
    pub date: Date,
    /// The local interval; absent = all day.
    #[serde(default)]
    pub hours: Option<Interval>,
    /// Open (`true`) or closed during the interval.
    pub open: bool,
}

impl Exception {
    fn interval(&self) -> Interval {
        self.hours.unwrap_or_else(Interval::all_day)
    }
}

/// A named schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// IANA zone of the office, e.g. `Europe/Copenhagen`.
    pub time_zone: String,
    /// Weekly opening hours.
    #[serde(default)]
    pub week: Week,
    /// National holidays; absent = none.
    #[serde(default)]
    pub holidays: Option<HolidayRule>,
    /// Custom closed dates.
    #[serde(default)]
    pub closed_dates: Vec<CustomDate>,
    /// Exceptions entered ahead of time.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

/// The state of a schedule at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Inside the weekly opening hours.
    Open,
    /// Outside them (or no schedule at all).
    Closed,
    /// A national holiday or a custom closed date (named).
    Holiday(String),
    /// An exception applies: open or closed by it (named).
    Exception {
        /// The exception's name.
        name: String,
        /// Whether it opens (true) or closes.
        open: bool,
    },
}

impl Status {
    /// Whether calls are taken: `Open`, or an exception that opens.
    pub fn is_open(&self) -> bool {
        matches!(self, Status::Open | Status::Exception { open: true, .. })
    }
}

/// A schedule whose time zone is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTimeZone(pub String);

impl std::fmt::Display for UnknownTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown time zone {:?}", self.0)
    }
}
impl std::error::Error for UnknownTimeZone {}

impl Schedule {
    /// A schedule with weekly hours only.
    pub fn new(name: &str, time_zone: &str, week: Week) -> Schedule {
        Schedule {
            name: name.into(),
            time_zone: time_zone.into(),
            week,
            holidays: None,
            closed_dates: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    /// The schedule's zone (from jiff's bundled tzdb).
    pub fn tz(&self) -> Result<TimeZone, UnknownTimeZone> {
        TimeZone::get(&self.time_zone).map_err(|_| UnknownTimeZone(self.time_zone.clone()))
    }

    /// The status at local wall time `dt`.
    pub fn status_at_local(&self, dt: DateTime) -> Status {
        let date = dt.date();
        let t = Hm::of(dt.time());
        if let Some(e) = self
            .exceptions
            .iter()
            .find(|e| e.date == date && e.interval().contains(t))
        {
            return Status::Exception {
                name: e.name.clone(),
                open: e.open,
            };
        }
        if let Some(c) = self
            .closed_dates
            .iter()
            .find(|c| c.date == date && c.from.is_none_or(|f| t >= f))
        {
            return Status::Holiday(c.name.clone());
        }
        if let Some(h) = self.holidays.as_ref().and_then(|r| r.on(date))
            && h.from.is_none_or(|f| t >= f)
        {
            return Status::Holiday(h.name.to_string());
        }
        if self.week.contains(date.weekday(), t) {
            Status::Open
        } else {
            Status::Closed
        }
    }

    /// Local minute boundaries on `date` at which the status may change.
    fn boundaries(&self, date: Date) -> Vec<Hm> {
        let mut b = vec![Hm::MIDNIGHT];
        for i in self.week.day(date.weekday()) {
            b.extend([i.from, i.to]);
        }
        for e in self.exceptions.iter().filter(|e| e.date == date) {
            b.extend([e.interval().from, e.interval().to]);
        }
        b.extend(
            self.closed_dates
                .iter()
                .filter(|c| c.date == date)
                .filter_map(|c| c.from),
        );
        if let Some(h) = self.holidays.as_ref().and_then(|r| r.on(date)) {
            b.extend(h.from);
        }
        b.retain(|h| *h < Hm::END_OF_DAY);
        b.sort();
        b.dedup();
        b
    }
}

/// Whether `schedule` is open at `at`; `None` schedule (no schedule at all) is closed.
pub fn is_open(schedule: Option<&Schedule>, at: Timestamp) -> Result<Status, UnknownTimeZone> {
    let Some(s) = schedule else {
        return Ok(Status::Closed);
    };
    let tz = s.tz()?;
    Ok(s.status_at_local(at.to_zoned(tz).datetime()))
}

/// How far ahead [`next_change`] looks before giving up.
pub const NEXT_CHANGE_HORIZON_DAYS: i64 = 400;

/// The first instant strictly after `at` at which the status differs from the status at
/// `at`; `None` if it does not change within [`NEXT_CHANGE_HORIZON_DAYS`] (or for no schedule).
pub fn next_change(
    schedule: Option<&Schedule>,
    at: Timestamp,
) -> Result<Option<Timestamp>, UnknownTimeZone> {
    let Some(s) = schedule else { return Ok(None) };
    let tz = s.tz()?;
    let now_status = s.status_at_local(at.to_zoned(tz.clone()).datetime());
    let start = at.to_zoned(tz.clone()).date();
    let end = start
        .checked_add(Span::new().days(NEXT_CHANGE_HORIZON_DAYS))
        .expect("in range");
    let end_ts = tz
        .to_ambiguous_timestamp(end.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .expect("in range");
    // Between two consecutive candidates the local time runs monotonically through no
    // boundary, so the status is constant there: the first candidate whose status differs is
    // the change. Candidates: every instant a boundary local time occurs (both passes in a
    // fold), plus every UTC-offset transition (where local time jumps).
    let mut candidates: Vec<Timestamp> = tz
        .following(at)
        .map(|t| t.timestamp())
        .take_while(|t| *t < end_ts)
        .collect();
    let mut day = start;
    while day < end {
        for b in s.boundaries(day) {
            let dt = day.to_datetime(
                jiff::civil::Time::new(b.hour() as i8, b.minute() as i8, 0, 0).expect("valid"),
            );
            let offsets = match tz.to_ambiguous_timestamp(dt).offset() {
                AmbiguousOffset::Unambiguous { offset } => vec![offset],
                AmbiguousOffset::Gap { before, after }
                | AmbiguousOffset::Fold { before, after } => vec![before, after],
            };
            candidates.extend(offsets.into_iter().filter_map(|o| o.to_timestamp(dt).ok()));
        }
        day = day.tomorrow().expect("in range");
    }
    candidates.retain(|c| *c > at);
    candidates.sort();
    candidates.dedup();
    Ok(candidates
        .into_iter()
        .find(|c| s.status_at_local(c.to_zoned(tz.clone()).datetime()) != now_status))
}

/// Several schedules for one main number, at most one active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSet {
    /// Unique name, referenced by a flow's CheckHours step.
    pub name: String,
    /// Names of the schedules in the set.
    pub schedules: Vec<String>,
    /// The active one; absent = no schedule = closed.
    #[serde(default)]
    pub active: Option<String>,
}
