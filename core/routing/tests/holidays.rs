//! Holiday calendars 2026–2030 against known dates.

use jiff::civil::{Date, date};
use vaxel_routing::holidays::{
    Country, HolidayId, HolidayKind, HolidayRule, easter_sunday, holidays,
};

fn find(c: Country, year: i16, id: HolidayId) -> Option<Date> {
    holidays(c, year)
        .into_iter()
        .find(|h| h.id == id)
        .map(|h| h.date)
}

const YEARS: [i16; 5] = [2026, 2027, 2028, 2029, 2030];

#[test]
fn easter_known_dates() {
    let known = [
        date(2026, 4, 5),
        date(2027, 3, 28),
        date(2028, 4, 16),
        date(2029, 4, 1),
        date(2030, 4, 21),
    ];
    for (y, d) in YEARS.iter().zip(known) {
        assert_eq!(easter_sunday(*y), d);
    }
    // Some further anchors of the computus.
    assert_eq!(easter_sunday(2019), date(2019, 4, 21));
    assert_eq!(easter_sunday(2023), date(2023, 4, 9));
    assert_eq!(easter_sunday(2038), date(2038, 4, 25));
    assert_eq!(easter_sunday(2285), date(2285, 3, 22));
}

#[test]
fn easter_based_days_all_countries() {
    use HolidayId::*;
    let table: [(HolidayId, [Date; 5]); 6] = [
        (
            GoodFriday,
            [
                date(2026, 4, 3),
                date(2027, 3, 26),
                date(2028, 4, 14),
                date(2029, 3, 30),
                date(2030, 4, 19),
            ],
        ),
        (
            EasterSunday,
            [
                date(2026, 4, 5),
                date(2027, 3, 28),
                date(2028, 4, 16),
                date(2029, 4, 1),
                date(2030, 4, 21),
            ],
        ),
        (
            EasterMonday,
            [
                date(2026, 4, 6),
                date(2027, 3, 29),
                date(2028, 4, 17),
                date(2029, 4, 2),
                date(2030, 4, 22),
            ],
        ),
        (
            AscensionDay,
            [
                date(2026, 5, 14),
                date(2027, 5, 6),
                date(2028, 5, 25),
                date(2029, 5, 10),
                date(2030, 5, 30),
            ],
        ),
        (
            WhitSunday,
            [
                date(2026, 5, 24),
                date(2027, 5, 16),
                date(2028, 6, 4),
                date(2029, 5, 20),
                date(2030, 6, 9),
            ],
        ),
        (
            MaundyThursday,
            [
                date(2026, 4, 2),
                date(2027, 3, 25),
                date(2028, 4, 13),
                date(2029, 3, 29),
                date(2030, 4, 18),
            ],
        ),
    ];
    for c in [Country::Dk, Country::Se, Country::No, Country::Fi] {
        for (id, dates) in &table {
            for (y, d) in YEARS.iter().zip(dates) {
                let has = !(matches!(id, MaundyThursday) && matches!(c, Country::Se | Country::Fi));
                assert_eq!(find(c, *y, *id), has.then_some(*d), "{c:?} {y} {id:?}");
            }
        }
    }
    let whit_monday = [
        date(2026, 5, 25),
        date(2027, 5, 17),
        date(2028, 6, 5),
        date(2029, 5, 21),
        date(2030, 6, 10),
    ];
    for (y, d) in YEARS.iter().zip(whit_monday) {
        assert_eq!(find(Country::Dk, *y, WhitMonday), Some(d));
        assert_eq!(find(Country::No, *y, WhitMonday), Some(d));
        assert_eq!(
            find(Country::Se, *y, WhitMonday),
            None,
            "not in Sweden since 2005"
        );
        assert_eq!(find(Country::Fi, *y, WhitMonday), None);
    }
}

#[test]
fn great_prayer_day_abolished_from_2024() {
    assert_eq!(
        find(Country::Dk, 2023, HolidayId::GreatPrayerDay),
        Some(date(2023, 5, 5))
    );
    assert_eq!(
        find(Country::Dk, 2022, HolidayId::GreatPrayerDay),
        Some(date(2022, 5, 13))
    );
    for y in 2024..=2030 {
        assert_eq!(find(Country::Dk, y, HolidayId::GreatPrayerDay), None);
    }
}

#[test]
fn midsummer_and_all_saints_se_fi() {
    let eve = [
        date(2026, 6, 19),
        date(2027, 6, 25),
        date(2028, 6, 23),
        date(2029, 6, 22),
        date(2030, 6, 21),
    ];
    let saints = [
        date(2026, 10, 31),
        date(2027, 11, 6),
        date(2028, 11, 4),
        date(2029, 11, 3),
        date(2030, 11, 2),
    ];
    for c in [Country::Se, Country::Fi] {
        for i in 0..5 {
            let y = YEARS[i];
            assert_eq!(
                find(c, y, HolidayId::MidsummerEve),
                Some(eve[i]),
                "{c:?} {y}"
            );
            assert_eq!(
                find(c, y, HolidayId::MidsummerDay),
                Some(eve[i].tomorrow().unwrap())
            );
            assert_eq!(find(c, y, HolidayId::AllSaintsDay), Some(saints[i]));
        }
    }
    for c in [Country::Dk, Country::No] {
        assert_eq!(find(c, 2026, HolidayId::MidsummerEve), None);
        assert_eq!(find(c, 2026, HolidayId::AllSaintsDay), None);
    }
}

#[test]
fn fixed_days_and_kinds() {
    use HolidayKind::*;
    let kind = |c, y, id| {
        holidays(c, y)
            .into_iter()
            .find(|h| h.id == id)
            .map(|h| (h.date, h.kind))
    };
    for y in YEARS {
        assert_eq!(
            kind(Country::No, y, HolidayId::ConstitutionDay),
            Some((date(y, 5, 17), Official))
        );
        assert_eq!(
            kind(Country::Dk, y, HolidayId::ConstitutionDay),
            Some((date(y, 6, 5), Customary))
        );
        assert_eq!(
            kind(Country::Se, y, HolidayId::NationalDay),
            Some((date(y, 6, 6), Official))
        );
        assert_eq!(
            kind(Country::Fi, y, HolidayId::IndependenceDay),
            Some((date(y, 12, 6), Official))
        );
        for c in [Country::Se, Country::Fi] {
            assert_eq!(
                kind(c, y, HolidayId::Epiphany),
                Some((date(y, 1, 6), Official))
            );
            assert_eq!(
                kind(c, y, HolidayId::MidsummerEve).map(|k| k.1),
                Some(Customary)
            );
        }
        for c in [Country::Se, Country::No, Country::Fi] {
            assert_eq!(
                kind(c, y, HolidayId::MayDay),
                Some((date(y, 5, 1), Official))
            );
        }
        assert_eq!(kind(Country::Dk, y, HolidayId::MayDay), None);
        for c in [Country::Dk, Country::Se, Country::No, Country::Fi] {
            assert_eq!(
                kind(c, y, HolidayId::NewYearsDay),
                Some((date(y, 1, 1), Official))
            );
            assert_eq!(
                kind(c, y, HolidayId::ChristmasEve),
                Some((date(y, 12, 24), Customary))
            );
            assert_eq!(
                kind(c, y, HolidayId::ChristmasDay),
                Some((date(y, 12, 25), Official))
            );
            assert_eq!(
                kind(c, y, HolidayId::BoxingDay),
                Some((date(y, 12, 26), Official))
            );
        }
        assert_eq!(kind(Country::Fi, y, HolidayId::NewYearsEve), None);
        assert_eq!(
            kind(Country::Dk, y, HolidayId::NewYearsEve),
            Some((date(y, 12, 31), Customary))
        );
    }
    // Danish Constitution Day is a half day.
    let grundlov = holidays(Country::Dk, 2027)
        .into_iter()
        .find(|h| h.id == HolidayId::ConstitutionDay)
        .unwrap();
    assert_eq!(grundlov.from.unwrap().to_string(), "12:00");
}

#[test]
fn rule_customary_and_skip() {
    let all = HolidayRule {
        country: Country::Se,
        customary: true,
        skip: vec![],
    };
    let official = HolidayRule {
        country: Country::Se,
        customary: false,
        skip: vec![],
    };
    let skip = HolidayRule {
        country: Country::Se,
        customary: true,
        skip: vec![HolidayId::NewYearsEve],
    };
    assert_eq!(all.on(date(2027, 12, 24)).unwrap().name, "Julafton");
    assert!(official.on(date(2027, 12, 24)).is_none());
    assert!(official.on(date(2027, 12, 25)).is_some());
    assert!(skip.on(date(2027, 12, 31)).is_none());
    assert!(all.on(date(2027, 12, 31)).is_some());
    assert!(all.on(date(2027, 12, 27)).is_none());
}
