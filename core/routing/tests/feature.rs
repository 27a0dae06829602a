//! Feature codes: every form of R-309.

use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use vaxel_routing::feature::{
    Context, FeatureCode as F, FeatureError as E, Form, ForwardKind as K, Permissions, ProfileEnd,
    parse, parse_for_user,
};

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}
fn now() -> Timestamp {
    tz().to_timestamp(date(2027, 3, 10).at(14, 30, 0, 0))
        .unwrap()
}
fn p(s: &str) -> Result<(F, Form), E> {
    parse(s, Context::Dialing, now(), &tz())
}
fn code(s: &str) -> F {
    p(s).unwrap_or_else(|e| panic!("{s}: {e}")).0
}

#[test]
fn forwarding_both_forms() {
    for (n, k) in [
        ("21", K::Unconditional),
        ("61", K::NoAnswer),
        ("67", K::Busy),
    ] {
        assert_eq!(
            p(&format!("*{n}*4512345678#")),
            Ok((
                F::SetForward {
                    kind: k,
                    number: "4512345678".into()
                },
                Form::Softphone
            ))
        );
        assert_eq!(
            p(&format!("*{n}*4512345678")),
            Ok((
                F::SetForward {
                    kind: k,
                    number: "4512345678".into()
                },
                Form::Mobile
            ))
        );
        assert_eq!(
            code(&format!("*{n}*+4512345678#")),
            F::SetForward {
                kind: k,
                number: "+4512345678".into()
            }
        );
        assert_eq!(
            p(&format!("#{n}#")),
            Ok((F::CancelForward { kind: k }, Form::Softphone))
        );
        assert_eq!(
            p(&format!("#{n}")),
            Ok((F::CancelForward { kind: k }, Form::Mobile))
        );
        assert_eq!(p(&format!("*{n}*#")), Err(E::MissingNumber));
        assert_eq!(p(&format!("*{n}#")), Err(E::MissingNumber));
        assert_eq!(p(&format!("*{n}*12a3#")), Err(E::BadNumber("12a3".into())));
    }
}

#[test]
fn profile_all_time_forms() {
    let at = |s: &str| match code(s) {
        F::ActivateProfile { profile: 3, until } => until,
        other => panic!("{other:?}"),
    };
    let local =
        |y, m, d, h, mi| ProfileEnd::At(tz().to_timestamp(date(y, m, d).at(h, mi, 0, 0)).unwrap());
    assert_eq!(at("*24*3#"), ProfileEnd::ProfileDefault);
    assert_eq!(at("*24*3"), ProfileEnd::ProfileDefault);
    assert_eq!(at("*24*3*0#"), ProfileEnd::UntilFurtherNotice);
    assert_eq!(at("*24*3*2#"), local(2027, 3, 12, 14, 30), "1 digit = days");
    assert_eq!(
        at("*24*3*05#"),
        ProfileEnd::At(now() + SignedDuration::from_hours(5)),
        "2 digits = hours"
    );
    assert_eq!(
        at("*24*3*090#"),
        ProfileEnd::At(now() + SignedDuration::from_mins(90)),
        "3 digits = minutes"
    );
    assert_eq!(
        at("*24*3*1600#"),
        local(2027, 3, 10, 16, 0),
        "4 digits = HHMM today"
    );
    assert_eq!(
        at("*24*3*0800#"),
        local(2027, 3, 11, 8, 0),
        "HHMM already past = tomorrow"
    );
    assert_eq!(
        at("*24*3*1430#"),
        local(2027, 3, 11, 14, 30),
        "exactly now = tomorrow"
    );
    assert_eq!(
        at("*24*3*270401#"),
        local(2027, 4, 1, 0, 0),
        "6 digits = YYMMDD"
    );
    assert_eq!(at("*24*3*270401"), local(2027, 4, 1, 0, 0));
    assert_eq!(p("*24*3*270301#"), Err(E::TimeInPast("270301".into())));
    assert!(matches!(p("*24*3*2561#"), Err(E::BadTime(_))));
    assert!(matches!(p("*24*3*271332#"), Err(E::BadTime(_))));
    assert!(matches!(p("*24*3*12345#"), Err(E::BadTime(_))));
    assert!(matches!(p("*24*3*1234567#"), Err(E::BadTime(_))));
    assert!(matches!(p("*24*3*#"), Err(E::BadTime(_))));
    assert_eq!(p("*24*x#"), Err(E::BadProfile("x".into())));
    assert_eq!(p("*24*#"), Err(E::BadProfile("".into())));
    assert_eq!(p("#24#"), Ok((F::DeactivateProfile, Form::Softphone)));
    assert_eq!(p("#24"), Ok((F::DeactivateProfile, Form::Mobile)));
}

#[test]
fn profile_days_across_dst() {
    let t = tz().to_timestamp(date(2027, 3, 27).at(9, 0, 0, 0)).unwrap();
    let (c, _) = parse("*24*1*1#", Context::Dialing, t, &tz()).unwrap();
    let want = tz().to_timestamp(date(2027, 3, 28).at(9, 0, 0, 0)).unwrap();
    assert_eq!(
        c,
        F::ActivateProfile {
            profile: 1,
            until: ProfileEnd::At(want)
        }
    );
    assert_eq!(
        want.duration_since(t),
        SignedDuration::from_hours(23),
        "a 23-hour day"
    );
    // HHMM in the gap moves past it.
    let (c, _) = parse("*24*1*0230#", Context::Dialing, t, &tz()).unwrap();
    let want = tz()
        .to_timestamp(date(2027, 3, 28).at(3, 30, 0, 0))
        .unwrap();
    assert_eq!(
        c,
        F::ActivateProfile {
            profile: 1,
            until: ProfileEnd::At(want)
        }
    );
}

#[test]
fn queue_pickup_hidden_voicemail_bypass() {
    assert_eq!(
        p("*75*5#"),
        Ok((F::QueueLogin { queue: "5".into() }, Form::Softphone))
    );
    assert_eq!(
        p("*75*5"),
        Ok((F::QueueLogin { queue: "5".into() }, Form::Mobile))
    );
    assert_eq!(
        p("#75*5#"),
        Ok((F::QueueLogout { queue: "5".into() }, Form::Softphone))
    );
    assert_eq!(
        p("#75*5"),
        Ok((F::QueueLogout { queue: "5".into() }, Form::Mobile))
    );
    assert_eq!(p("#75#"), Err(E::MissingNumber));
    assert_eq!(p("*75*#"), Err(E::MissingNumber));
    for (c, f) in [
        (
            "80",
            F::Pickup {
                number: "201".into(),
            },
        ),
        (
            "31",
            F::HiddenNumber {
                number: "201".into(),
            },
        ),
        (
            "59",
            F::Voicemail {
                number: "201".into(),
            },
        ),
        (
            "60",
            F::Bypass {
                number: "201".into(),
            },
        ),
    ] {
        assert_eq!(p(&format!("*{c}*201")), Ok((f.clone(), Form::Mobile)));
        assert_eq!(p(&format!("*{c}*201#")), Ok((f, Form::Softphone)));
        assert_eq!(p(&format!("*{c}*")), Err(E::MissingNumber));
    }
}

#[test]
fn in_call_transfer_and_take_back() {
    let ic = |s: &str| parse(s, Context::InCall, now(), &tz());
    assert_eq!(
        ic("#203#"),
        Ok((
            F::Transfer {
                number: "203".into()
            },
            Form::Softphone
        ))
    );
    assert_eq!(
        ic("#203"),
        Ok((
            F::Transfer {
                number: "203".into()
            },
            Form::Mobile
        ))
    );
    assert_eq!(
        ic("#21#"),
        Ok((
            F::Transfer {
                number: "21".into()
            },
            Form::Softphone
        )),
        "in a call #21# is a transfer"
    );
    assert_eq!(ic("*"), Ok((F::TakeBack, Form::Mobile)));
    assert_eq!(ic("##"), Err(E::MissingNumber));
    assert_eq!(ic("123"), Err(E::NotAFeatureCode));
}

#[test]
fn not_codes_and_unknown() {
    assert_eq!(p("4512345678"), Err(E::NotAFeatureCode));
    assert_eq!(p("*99*1#"), Err(E::Unknown("*99*1#".into())));
    assert_eq!(p("#99#"), Err(E::Unknown("#99#".into())));
    assert_eq!(p("#"), Err(E::Unknown("#".into())));
    assert_eq!(E::ServiceNotActive.to_string(), "service not active");
}

struct NoForwarding;
impl Permissions for NoForwarding {
    fn allowed(&self, _user: &str, code: &F) -> bool {
        !matches!(code, F::SetForward { .. })
    }
}

#[test]
fn permission_hook_says_service_not_active() {
    let r = parse_for_user(
        "*21*123#",
        Context::Dialing,
        "anna",
        &NoForwarding,
        now(),
        &tz(),
    );
    assert_eq!(r, Err(E::ServiceNotActive));
    let r = parse_for_user(
        "*80*123",
        Context::Dialing,
        "anna",
        &NoForwarding,
        now(),
        &tz(),
    );
    assert_eq!(
        r,
        Ok((
            F::Pickup {
                number: "123".into()
            },
            Form::Mobile
        ))
    );
    // Malformed codes are reported as such, before permission.
    let r = parse_for_user(
        "*21*#",
        Context::Dialing,
        "anna",
        &NoForwarding,
        now(),
        &tz(),
    );
    assert_eq!(r, Err(E::MissingNumber));
}

/// `*61*n*T#`: the no-answer time from the phone (GSM form; the seeds give none).
#[test]
fn no_answer_forward_with_its_time() {
    for (s, form) in [
        ("*61*4003*15#", Form::Softphone),
        ("*61*4003*15", Form::Mobile),
    ] {
        assert_eq!(
            p(s),
            Ok((
                F::SetNoAnswerForward {
                    number: "4003".into(),
                    after_secs: 15
                },
                form
            )),
            "{s}"
        );
    }
    assert_eq!(
        code("*61*+4512345678*120#"),
        F::SetNoAnswerForward {
            number: "+4512345678".into(),
            after_secs: 120
        }
    );
    for bad in ["*61*4003*4#", "*61*4003*121#", "*61*4003*x#", "*61*4003*#"] {
        assert!(matches!(p(bad), Err(E::BadTime(_))), "{bad}: {:?}", p(bad));
    }
    assert_eq!(p("*61**20#"), Err(E::MissingNumber));
    // Only *61* takes a time.
    assert_eq!(p("*21*4003*15#"), Err(E::BadNumber("4003*15".into())));
}
