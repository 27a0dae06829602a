//! Opening hours: rules, exceptions, schedule sets, and every DST day 2026–2030.

use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use vaxel_routing::holidays::{Country, HolidayRule};
use vaxel_routing::schedule::{CustomDate, Exception, Week};
use vaxel_routing::{Interval, Schedule, Status, is_open, next_change};

fn iv(s: &str) -> Interval {
    s.parse().unwrap()
}

fn at(tz: &str, d: Date, h: i8, m: i8) -> Timestamp {
    TimeZone::get(tz)
        .unwrap()
        .to_ambiguous_timestamp(d.at(h, m, 0, 0))
        .compatible()
        .unwrap()
}

fn office() -> Schedule {
    let mut s = Schedule::new(
        "office",
        "Europe/Copenhagen",
        Week::weekdays(&[iv("08:00-12:00"), iv("12:30-16:00")]),
    );
    s.holidays = Some(HolidayRule {
        country: Country::Dk,
        customary: true,
        skip: vec![],
    });
    s
}

const CPH: &str = "Europe/Copenhagen";

#[test]
fn weekly_intervals() {
    let s = office();
    let d = date(2027, 3, 10); // Wednesday
    let st = |h, m| is_open(Some(&s), at(CPH, d, h, m)).unwrap();
    assert_eq!(st(7, 59), Status::Closed);
    assert_eq!(st(8, 0), Status::Open);
    assert_eq!(st(11, 59), Status::Open);
    assert_eq!(st(12, 0), Status::Closed);
    assert_eq!(st(12, 30), Status::Open);
    assert_eq!(st(16, 0), Status::Closed);
    assert_eq!(
        is_open(Some(&s), at(CPH, date(2027, 3, 13), 10, 0)).unwrap(),
        Status::Closed,
        "Saturday"
    );
    assert_eq!(
        is_open(None, at(CPH, d, 10, 0)).unwrap(),
        Status::Closed,
        "no schedule = closed"
    );
}

#[test]
fn holidays_custom_dates_and_exceptions() {
    let mut s = office();
    assert_eq!(
        is_open(Some(&s), at(CPH, date(2027, 3, 26), 10, 0)).unwrap(),
        Status::Holiday("Langfredag".into())
    );
    // Constitution Day: open in the morning, holiday from 12:00 (2026-06-05 is a Friday).
    assert_eq!(
        is_open(Some(&s), at(CPH, date(2026, 6, 5), 10, 0)).unwrap(),
        Status::Open
    );
    assert_eq!(
        is_open(Some(&s), at(CPH, date(2026, 6, 5), 12, 30)).unwrap(),
        Status::Holiday("Grundlovsdag".into())
    );
    s.closed_dates.push(CustomDate {
        date: date(2027, 4, 20),
        name: "Firmaudflugt".into(),
        from: None,
    });
    assert_eq!(
        is_open(Some(&s), at(CPH, date(2027, 4, 20), 9, 0)).unwrap(),
        Status::Holiday("Firmaudflugt".into())
    );
    s.exceptions.push(Exception {
        name: "Kursusdag".into(),
        date: date(2027, 3, 12),
        hours: Some(iv("09:00-13:00")),
        open: false,
    });
    s.exceptions.push(Exception {
        name: "Åbent langfredag".into(),
        date: date(2027, 3, 26),
        hours: Some(iv("10:00-14:00")),
        open: true,
    });
    let st = |d, h, m| is_open(Some(&s), at(CPH, d, h, m)).unwrap();
    assert_eq!(st(date(2027, 3, 12), 8, 30), Status::Open);
    assert_eq!(
        st(date(2027, 3, 12), 9, 0),
        Status::Exception {
            name: "Kursusdag".into(),
            open: false
        }
    );
    assert!(!st(date(2027, 3, 12), 12, 59).is_open());
    assert_eq!(st(date(2027, 3, 12), 13, 0), Status::Open);
    assert!(st(date(2027, 3, 26), 10, 0).is_open());
    assert_eq!(
        st(date(2027, 3, 26), 14, 0),
        Status::Holiday("Langfredag".into())
    );
    // next_change walks the exception edges.
    let t = at(CPH, date(2027, 3, 12), 8, 30);
    assert_eq!(
        next_change(Some(&s), t).unwrap(),
        Some(at(CPH, date(2027, 3, 12), 9, 0))
    );
    assert_eq!(
        next_change(Some(&s), at(CPH, date(2027, 3, 12), 9, 0)).unwrap(),
        Some(at(CPH, date(2027, 3, 12), 13, 0))
    );
    // Friday 16:00 → Monday 08:00.
    assert_eq!(
        next_change(Some(&s), at(CPH, date(2027, 3, 12), 16, 0)).unwrap(),
        Some(at(CPH, date(2027, 3, 15), 8, 0))
    );
}

#[test]
fn schedule_set_from_toml_one_active() {
    let cfg: vaxel_routing::Config = toml::from_str(
        r#"
        [[schedules]]
        name = "normal"
        time_zone = "Europe/Stockholm"
        week = { mon = ["08:00-17:00"], tue = ["08:00-17:00"] }
        holidays = { country = "SE" }
        [[schedules]]
        name = "summer"
        time_zone = "Europe/Stockholm"
        week = { mon = ["09:00-15:00"] }
        exceptions = [{ name = "Kursdag", date = "2027-03-15", hours = "09:00-13:00", open = false }]
        [[schedule_sets]]
        name = "main"
        schedules = ["normal", "summer"]
        active = "summer"
        [[schedule_sets]]
        name = "none"
        schedules = ["normal"]
        "#,
    )
    .unwrap();
    let mon = at("Europe/Stockholm", date(2027, 3, 8), 16, 0);
    assert_eq!(
        is_open(cfg.active_schedule("main"), mon).unwrap(),
        Status::Closed
    );
    assert_eq!(is_open(cfg.schedule("normal"), mon).unwrap(), Status::Open);
    assert_eq!(
        is_open(cfg.active_schedule("none"), mon).unwrap(),
        Status::Closed
    );
}

/// Transition days of a zone in a year: (spring, fall).
fn dst_days(tz: &TimeZone, year: i16) -> (Timestamp, Timestamp) {
    let start = tz.to_timestamp(date(year, 1, 1).at(0, 0, 0, 0)).unwrap();
    let t: Vec<Timestamp> = tz.following(start).take(2).map(|t| t.timestamp()).collect();
    (t[0], t[1])
}

fn last_sunday(year: i16, month: i8) -> Date {
    let mut d = date(year, month, 1).last_of_month();
    while d.weekday() != jiff::civil::Weekday::Sunday {
        d = d.yesterday().unwrap();
    }
    d
}

const ZONES: [(&str, i8); 4] = [
    ("Europe/Copenhagen", 2),
    ("Europe/Stockholm", 2),
    ("Europe/Oslo", 2),
    ("Europe/Helsinki", 3),
];

#[test]
fn dst_transitions_are_where_expected() {
    for (zone, gap) in ZONES {
        let tz = TimeZone::get(zone).unwrap();
        for year in 2026..=2030 {
            let (spring, fall) = dst_days(&tz, year);
            // EU rule: last Sunday of March / October at 01:00 UTC.
            assert_eq!(
                spring,
                last_sunday(year, 3)
                    .at(1, 0, 0, 0)
                    .to_zoned(TimeZone::UTC)
                    .unwrap()
                    .timestamp()
            );
            assert_eq!(
                fall,
                last_sunday(year, 10)
                    .at(1, 0, 0, 0)
                    .to_zoned(TimeZone::UTC)
                    .unwrap()
                    .timestamp()
            );
            assert_eq!(
                spring.to_zoned(tz.clone()).hour(),
                gap + 1,
                "{zone}: the clock jumps from {gap}:00"
            );
        }
    }
}

fn every_minute(from: Timestamp, hours: i64) -> impl Iterator<Item = Timestamp> {
    (0..hours * 60).map(move |m| from + SignedDuration::from_mins(m))
}

#[test]
fn dst_spring_forward_every_day_2026_2030() {
    for (zone, gap) in ZONES {
        let tz = TimeZone::get(zone).unwrap();
        for year in 2026..=2030 {
            let (spring, _) = dst_days(&tz, year);
            let day = spring.to_zoned(tz.clone()).date();
            let g = format!("{gap:02}");
            // An interval wholly inside the gap never opens that day.
            let inside = Schedule::new("x", zone, week_all(&[iv(&format!("{g}:00-{g}:30"))]));
            let midnight = at(zone, day, 0, 0);
            assert!(
                every_minute(midnight, 23).all(|t| !is_open(Some(&inside), t).unwrap().is_open()),
                "{zone} {year}"
            );
            // The next opening is the next day's 0g:00.
            assert_eq!(
                next_change(Some(&inside), midnight).unwrap(),
                Some(at(zone, day.tomorrow().unwrap(), gap, 0))
            );
            // An interval reaching into the gap closes when the clocks jump.
            let into = Schedule::new(
                "y",
                zone,
                week_all(&[iv(&format!("{:02}:00-{g}:30", gap - 1))]),
            );
            let open_at = at(zone, day, gap - 1, 0);
            assert_eq!(is_open(Some(&into), open_at).unwrap(), Status::Open);
            assert_eq!(
                next_change(Some(&into), open_at).unwrap(),
                Some(spring),
                "{zone} {year}"
            );
            assert_eq!(is_open(Some(&into), spring).unwrap(), Status::Closed);
            let open_minutes = every_minute(midnight, 23)
                .filter(|t| is_open(Some(&into), *t).unwrap().is_open())
                .count();
            assert_eq!(open_minutes, 60);
            // An ordinary office day is unaffected (Monday after: 08:00 local).
            let office = Schedule::new("o", zone, week_all(&[iv("08:00-16:00")]));
            assert_eq!(
                next_change(Some(&office), midnight).unwrap(),
                Some(at(zone, day, 8, 0))
            );
            let open = every_minute(midnight, 23)
                .filter(|t| is_open(Some(&office), *t).unwrap().is_open())
                .count();
            assert_eq!(open, 8 * 60);
        }
    }
}

#[test]
fn dst_fall_back_every_day_2026_2030() {
    for (zone, gap) in ZONES {
        let tz = TimeZone::get(zone).unwrap();
        for year in 2026..=2030 {
            let (_, fall) = dst_days(&tz, year);
            let day = fall.to_zoned(tz.clone()).date();
            let g = format!("{gap:02}");
            // A local time that occurs twice is open both times.
            let s = Schedule::new("x", zone, week_all(&[iv(&format!("{g}:00-{g}:30"))]));
            let midnight = at(zone, day, 0, 0);
            let open = every_minute(midnight, 25)
                .filter(|t| is_open(Some(&s), *t).unwrap().is_open())
                .count();
            assert_eq!(open, 60, "{zone} {year}: two passes of 30 minutes");
            let first = fall - SignedDuration::from_hours(1); // gap:00 before the change
            assert_eq!(is_open(Some(&s), first).unwrap(), Status::Open);
            let c1 = next_change(Some(&s), first).unwrap().unwrap();
            assert_eq!(c1, first + SignedDuration::from_mins(30));
            let c2 = next_change(Some(&s), c1).unwrap().unwrap();
            assert_eq!(c2, fall, "open again when the clock goes back");
            let c3 = next_change(Some(&s), c2).unwrap().unwrap();
            assert_eq!(c3, fall + SignedDuration::from_mins(30));
            // An office day lasts 8 real hours.
            let office = Schedule::new("o", zone, week_all(&[iv("08:00-16:00")]));
            let open = every_minute(midnight, 25)
                .filter(|t| is_open(Some(&office), *t).unwrap().is_open())
                .count();
            assert_eq!(open, 8 * 60);
        }
    }
}

fn week_all(i: &[Interval]) -> Week {
    Week {
        sat: i.to_vec(),
        sun: i.to_vec(),
        ..Week::weekdays(i)
    }
}
