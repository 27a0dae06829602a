//! National holiday calendars for Denmark, Sweden, Norway and Finland, computed (never
//! looked up) from the year: Easter by the Gregorian computus, the floating Swedish and
//! Finnish Midsummer and All Saints' days from their weekday rules, the rest fixed.
//!
//! Each day is either an [`HolidayKind::Official`] public holiday (set by law) or a
//! [`HolidayKind::Customary`] closing day (not a public holiday, but offices commonly close,
//! e.g. Christmas Eve). A schedule chooses a country and whether customary days count.
//!
//! | day | DK | SE | NO | FI |
//! |---|---|---|---|---|
//! | New Year's Day 1 Jan | official | official | official | official |
//! | Epiphany 6 Jan | – | official | – | official |
//! | Maundy Thursday (Easter −3) | official | – | official | – |
//! | Good Friday (Easter −2) | official | official | official | official |
//! | Easter Sunday | official | official | official | official |
//! | Easter Monday (Easter +1) | official | official | official | official |
//! | Great Prayer Day (Easter +26) | official until 2023, abolished from 2024 | – | – | – |
//! | May Day 1 May | – | official | official | official |
//! | Constitution Day 17 May | – | – | official | – |
//! | Ascension Day (Easter +39) | official | official | official | official |
//! | Whit Sunday (Easter +49) | official | official | official | official |
//! | Whit Monday (Easter +50) | official | – (not since 2005) | official | – |
//! | Constitution Day 5 Jun | customary, closed from 12:00 | – | – | – |
//! | National Day 6 Jun | – | official | – | – |
//! | Midsummer Eve (Friday 19–25 Jun) | – | customary | – | customary |
//! | Midsummer Day (Saturday 20–26 Jun) | – | official | – | official |
//! | All Saints' Day (Saturday 31 Oct–6 Nov) | – | official | – | official |
//! | Independence Day 6 Dec | – | – | – | official |
//! | Christmas Eve 24 Dec | customary | customary | customary | customary |
//! | Christmas Day 25 Dec | official | official | official | official |
//! | Boxing Day 26 Dec | official | official | official | official |
//! | New Year's Eve 31 Dec | customary | customary | customary | – |

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};

use crate::clock::Hm;

/// A country whose calendar is built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Country {
    /// Denmark.
    Dk,
    /// Sweden.
    Se,
    /// Norway.
    No,
    /// Finland.
    Fi,
}

/// Which day it is, independent of language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum HolidayId {
    NewYearsDay,
    Epiphany,
    MaundyThursday,
    GoodFriday,
    EasterSunday,
    EasterMonday,
    GreatPrayerDay,
    MayDay,
    ConstitutionDay,
    AscensionDay,
    WhitSunday,
    WhitMonday,
    NationalDay,
    MidsummerEve,
    MidsummerDay,
    AllSaintsDay,
    IndependenceDay,
    ChristmasEve,
    ChristmasDay,
    BoxingDay,
    NewYearsEve,
}

/// Public holiday by law, or a day offices customarily close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolidayKind {
    /// A public holiday set by law.
    Official,
    /// Not a public holiday, but a customary closing day.
    Customary,
}

/// One holiday in one year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// The date.
    pub date: Date,
    /// Which day.
    pub id: HolidayId,
    /// Its name in the country's language.
    pub name: &'static str,
    /// Official or customary.
    pub kind: HolidayKind,
    /// The holiday starts at this local time (a half day); `None` = all day.
    pub from: Option<Hm>,
}

/// Easter Sunday of a Gregorian year (anonymous Gregorian algorithm, Meeus/Jones/Butcher).
pub fn easter_sunday(year: i16) -> Date {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, month as i8, day as i8).expect("computus yields a valid date")
}

/// The first `weekday` on or after `date`.
fn weekday_on_or_after(date: Date, weekday: Weekday) -> Date {
    let ahead =
        (weekday.to_monday_zero_offset() - date.weekday().to_monday_zero_offset()).rem_euclid(7);
    date.checked_add(jiff::Span::new().days(i64::from(ahead)))
        .expect("in range")
}

fn offset(date: Date, days: i64) -> Date {
    date.checked_add(jiff::Span::new().days(days))
        .expect("in range")
}

/// Every holiday (official and customary) of `country` in `year`, sorted by date.
pub fn holidays(country: Country, year: i16) -> Vec<Holiday> {
    use Country::*;
    use HolidayId::*;
    use HolidayKind::*;
    let easter = easter_sunday(year);
    let d = |m: i8, day: i8| Date::new(year, m, day).expect("valid fixed date");
    let mut out = Vec::new();
    let mut add = |date: Date, id: HolidayId, name: &'static str, kind: HolidayKind| {
        out.push(Holiday {
            date,
            id,
            name,
            kind,
            from: None,
        });
    };
    match country {
        Dk => {
            add(d(1, 1), NewYearsDay, "Nytårsdag", Official);
            add(offset(easter, -3), MaundyThursday, "Skærtorsdag", Official);
            add(offset(easter, -2), GoodFriday, "Langfredag", Official);
            add(easter, EasterSunday, "Påskedag", Official);
            add(offset(easter, 1), EasterMonday, "2. påskedag", Official);
            if year <= 2023 {
                add(
                    offset(easter, 26),
                    GreatPrayerDay,
                    "Store bededag",
                    Official,
                );
            }
            add(
                offset(easter, 39),
                AscensionDay,
                "Kristi himmelfartsdag",
                Official,
            );
            add(offset(easter, 49), WhitSunday, "Pinsedag", Official);
            add(offset(easter, 50), WhitMonday, "2. pinsedag", Official);
            add(d(12, 24), ChristmasEve, "Juleaftensdag", Customary);
            add(d(12, 25), ChristmasDay, "Juledag", Official);
            add(d(12, 26), BoxingDay, "2. juledag", Official);
            add(d(12, 31), NewYearsEve, "Nytårsaftensdag", Customary);
        }
        Se => {
            add(d(1, 1), NewYearsDay, "Nyårsdagen", Official);
            add(d(1, 6), Epiphany, "Trettondedag jul", Official);
            add(offset(easter, -2), GoodFriday, "Långfredagen", Official);
            add(easter, EasterSunday, "Påskdagen", Official);
            add(offset(easter, 1), EasterMonday, "Annandag påsk", Official);
            add(d(5, 1), MayDay, "Första maj", Official);
            add(
                offset(easter, 39),
                AscensionDay,
                "Kristi himmelsfärdsdag",
                Official,
            );
            add(offset(easter, 49), WhitSunday, "Pingstdagen", Official);
            add(d(6, 6), NationalDay, "Sveriges nationaldag", Official);
            let eve = weekday_on_or_after(d(6, 19), Weekday::Friday);
            add(eve, MidsummerEve, "Midsommarafton", Customary);
            add(offset(eve, 1), MidsummerDay, "Midsommardagen", Official);
            add(
                weekday_on_or_after(d(10, 31), Weekday::Saturday),
                AllSaintsDay,
                "Alla helgons dag",
                Official,
            );
            add(d(12, 24), ChristmasEve, "Julafton", Customary);
            add(d(12, 25), ChristmasDay, "Juldagen", Official);
            add(d(12, 26), BoxingDay, "Annandag jul", Official);
            add(d(12, 31), NewYearsEve, "Nyårsafton", Customary);
        }
        No => {
            add(d(1, 1), NewYearsDay, "Første nyttårsdag", Official);
            add(offset(easter, -3), MaundyThursday, "Skjærtorsdag", Official);
            add(offset(easter, -2), GoodFriday, "Langfredag", Official);
            add(easter, EasterSunday, "Første påskedag", Official);
            add(offset(easter, 1), EasterMonday, "Andre påskedag", Official);
            add(d(5, 1), MayDay, "Arbeidernes dag", Official);
            add(d(5, 17), ConstitutionDay, "Grunnlovsdag", Official);
            add(
                offset(easter, 39),
                AscensionDay,
                "Kristi himmelfartsdag",
                Official,
            );
            add(offset(easter, 49), WhitSunday, "Første pinsedag", Official);
            add(offset(easter, 50), WhitMonday, "Andre pinsedag", Official);
            add(d(12, 24), ChristmasEve, "Julaften", Customary);
            add(d(12, 25), ChristmasDay, "Første juledag", Official);
            add(d(12, 26), BoxingDay, "Andre juledag", Official);
            add(d(12, 31), NewYearsEve, "Nyttårsaften", Customary);
        }
        Fi => {
            add(d(1, 1), NewYearsDay, "Uudenvuodenpäivä", Official);
            add(d(1, 6), Epiphany, "Loppiainen", Official);
            add(offset(easter, -2), GoodFriday, "Pitkäperjantai", Official);
            add(easter, EasterSunday, "Pääsiäispäivä", Official);
            add(
                offset(easter, 1),
                EasterMonday,
                "2. pääsiäispäivä",
                Official,
            );
            add(d(5, 1), MayDay, "Vappu", Official);
            add(offset(easter, 39), AscensionDay, "Helatorstai", Official);
            add(offset(easter, 49), WhitSunday, "Helluntaipäivä", Official);
            let eve = weekday_on_or_after(d(6, 19), Weekday::Friday);
            add(eve, MidsummerEve, "Juhannusaatto", Customary);
            add(offset(eve, 1), MidsummerDay, "Juhannuspäivä", Official);
            add(
                weekday_on_or_after(d(10, 31), Weekday::Saturday),
                AllSaintsDay,
                "Pyhäinpäivä",
                Official,
            );
            add(d(12, 6), IndependenceDay, "Itsenäisyyspäivä", Official);
            add(d(12, 24), ChristmasEve, "Jouluaatto", Customary);
            add(d(12, 25), ChristmasDay, "Joulupäivä", Official);
            add(d(12, 26), BoxingDay, "Tapaninpäivä", Official);
        }
    }
    if country == Dk {
        // Grundlovsdag: not a public holiday; offices customarily close at noon.
        out.push(Holiday {
            date: d(6, 5),
            id: ConstitutionDay,
            name: "Grundlovsdag",
            kind: Customary,
            from: Hm::new(12, 0),
        });
    }
    out.sort_by_key(|h| h.date);
    out
}

/// A schedule's choice of national calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolidayRule {
    /// Whose holidays.
    pub country: Country,
    /// Whether customary closing days (Christmas Eve, …) close too. Default: yes.
    #[serde(default = "yes")]
    pub customary: bool,
    /// Days of the calendar this office stays open on anyway (e.g. `["new_years_eve"]`).
    #[serde(default)]
    pub skip: Vec<HolidayId>,
}

fn yes() -> bool {
    true
}

impl HolidayRule {
    /// The holiday on `date` under this rule, if any.
    pub fn on(&self, date: Date) -> Option<Holiday> {
        holidays(self.country, date.year()).into_iter().find(|h| {
            h.date == date
                && (self.customary || h.kind == HolidayKind::Official)
                && !self.skip.contains(&h.id)
        })
    }
}
