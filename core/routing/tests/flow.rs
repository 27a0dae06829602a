//! Call-flow validation and the demo flow driven through Router events.

mod common;

use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaxel_routing::flow::{ActivateError, Greeting, MailboxRef, Target};
use vaxel_routing::router::{Leg, MAX_TRANSITIONS};
use vaxel_routing::{Action, CallerDisplay, Config, Event, Router, Step, validate};

fn cph(y: i16, m: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    TimeZone::get("Europe/Copenhagen")
        .unwrap()
        .to_timestamp(date(y, m, d).at(h, mi, 0, 0))
        .unwrap()
}

fn errors(cfg: &Config) -> Vec<(String, String)> {
    match validate(cfg, &cfg.flows[0].versions[0]) {
        Ok(()) => vec![],
        Err(e) => e.into_iter().map(|e| (e.step, e.reason)).collect(),
    }
}

fn steps(cfg: &mut Config) -> &mut std::collections::BTreeMap<String, Step> {
    &mut cfg.flows[0].versions[0].steps
}

#[test]
fn demo_validates() {
    assert_eq!(errors(&common::demo()), vec![]);
}

#[test]
fn missing_references_name_the_step() {
    let mut cfg = common::demo();
    if let Some(Step::Menu { choices, .. }) = steps(&mut cfg).get_mut("menu") {
        choices.insert("3".into(), "nowhere".into());
    }
    steps(&mut cfg).insert(
        "welcome".into(),
        Step::PlayPrompt {
            prompt: "nope".into(),
            language: None,
            next: "menu".into(),
        },
    );
    steps(&mut cfg).insert(
        "sales".into(),
        Step::HuntGroup {
            group: "ghosts".into(),
            no_answer: None,
        },
    );
    steps(&mut cfg).insert(
        "closed_vm".into(),
        Step::Voicemail {
            mailbox: MailboxRef::Personal("zed".into()),
            greeting: Greeting::Closed,
        },
    );
    steps(&mut cfg).insert(
        "operator".into(),
        Step::Forward {
            target: Target::Internal("nobody".into()),
        },
    );
    let e = errors(&cfg);
    let has = |step: &str, word: &str| e.iter().any(|(s, r)| s == step && r.contains(word));
    assert!(has("menu", "\"nowhere\""), "{e:?}");
    assert!(has("welcome", "prompt \"nope\""), "{e:?}");
    assert!(has("sales", "hunt group \"ghosts\""), "{e:?}");
    assert!(has("closed_vm", "mailbox owner \"zed\""), "{e:?}");
    assert!(has("operator", "user \"nobody\""), "{e:?}");
    let mut cfg = common::demo();
    if let Some(Step::CheckHours { schedule_set, .. }) = steps(&mut cfg).get_mut("hours") {
        *schedule_set = "other".into();
    }
    assert_eq!(
        errors(&cfg),
        vec![(
            "hours".into(),
            "schedule set \"other\" does not exist".into()
        )]
    );
    let mut cfg = common::demo();
    cfg.flows[0].versions[0].start = "begin".into();
    assert_eq!(
        errors(&cfg),
        vec![("begin".into(), "start step does not exist".into())]
    );
}

#[test]
fn unreachable_dead_end_and_loops() {
    // Unreachable step.
    let mut cfg = common::demo();
    steps(&mut cfg).insert("orphan".into(), Step::Hangup);
    assert_eq!(
        errors(&cfg),
        vec![("orphan".into(), "unreachable from the start".into())]
    );
    // A loop of prompts with no way out.
    let mut cfg = common::demo();
    steps(&mut cfg).insert(
        "welcome".into(),
        Step::PlayPrompt {
            prompt: "welcome".into(),
            language: None,
            next: "again".into(),
        },
    );
    steps(&mut cfg).insert(
        "again".into(),
        Step::PlayPrompt {
            prompt: "menu".into(),
            language: None,
            next: "welcome".into(),
        },
    );
    let e = errors(&cfg);
    assert!(
        e.iter()
            .any(|(s, r)| s == "welcome" && r.starts_with("loop without exit")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|(s, r)| s == "again" && r.starts_with("loop without exit")),
        "{e:?}"
    );
    // A menu cycle is fine when the menu can leave (its choices lead out).
    let mut cfg = common::demo();
    if let Some(Step::Menu { choices, .. }) = steps(&mut cfg).get_mut("menu") {
        choices.insert("9".into(), "welcome".into());
    }
    assert_eq!(errors(&cfg), vec![]);
    // A check_hours loop never waits.
    let mut cfg = common::demo();
    steps(&mut cfg).insert(
        "hours".into(),
        Step::CheckHours {
            schedule_set: "main".into(),
            open: "hours2".into(),
            closed: "closed_vm".into(),
            holiday: None,
        },
    );
    steps(&mut cfg).insert(
        "hours2".into(),
        Step::CheckHours {
            schedule_set: "main".into(),
            open: "hours".into(),
            closed: "welcome".into(),
            holiday: None,
        },
    );
    let e = errors(&cfg);
    assert!(e.iter().any(|(_, r)| r.contains("never waits")), "{e:?}");
    // Menu without choices; bad key; zero repeats.
    let mut cfg = common::demo();
    if let Some(Step::Menu {
        choices, repeats, ..
    }) = steps(&mut cfg).get_mut("menu")
    {
        choices.insert("12".into(), "sales".into());
        *repeats = 0;
    }
    let e = errors(&cfg);
    assert!(
        e.contains(&(
            "menu".into(),
            "choice \"12\" is not a single key 0-9, * or #".into()
        )),
        "{e:?}"
    );
    assert!(
        e.contains(&("menu".into(), "repeats must be at least 1".into())),
        "{e:?}"
    );
}

#[test]
fn versions_one_active_and_activation_validates() {
    let mut cfg = common::demo();
    let mut v2 = cfg.flows[0].versions[0].clone();
    v2.version = 2;
    v2.steps.insert("orphan".into(), Step::Hangup);
    cfg.flows[0].versions.push(v2);
    match cfg.activate("main", 2) {
        Err(ActivateError::Invalid(e)) => assert_eq!(e[0].step, "orphan"),
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.flows[0].active, Some(1));
    assert_eq!(cfg.activate("main", 7), Err(ActivateError::NotFound));
    cfg.flows[0].versions[1].steps.remove("orphan");
    cfg.activate("main", 2).unwrap();
    assert_eq!(cfg.flows[0].active_version().unwrap().version, 2);
}

fn router() -> Router<ChaCha8Rng> {
    Router::new(common::demo(), ChaCha8Rng::seed_from_u64(7))
}

fn arrive(r: &mut Router<ChaCha8Rng>, now: Timestamp) -> Vec<Action> {
    r.handle(
        now,
        Event::CallArrived {
            call: 1,
            dialed: "72100100".into(),
            caller: "4512345678".into(),
        },
    )
}

fn timer_of(actions: &[Action]) -> Option<(u64, Timestamp)> {
    actions.iter().rev().find_map(|a| match a {
        Action::StartTimer { timer, at, .. } => Some((*timer, *at)),
        _ => None,
    })
}

fn legs_of(actions: &[Action]) -> Vec<Leg> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Ring { legs, .. } => Some(legs.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn demo_open_menu_sales_answered() {
    let mut r = router();
    let now = cph(2027, 3, 10, 10, 0); // Wednesday 10:00
    let a = arrive(&mut r, now);
    assert_eq!(
        a,
        vec![Action::PlayPrompt {
            call: 1,
            prompt: "welcome".into(),
            language: "da".into()
        }]
    );
    let a = r.handle(now, Event::PromptFinished { call: 1 });
    assert_eq!(
        a,
        vec![
            Action::PlayPrompt {
                call: 1,
                prompt: "menu".into(),
                language: "da".into()
            },
            Action::CollectDigits { call: 1, max: 1 }
        ]
    );
    let a = r.handle(now, Event::PromptFinished { call: 1 });
    assert_eq!(timer_of(&a).unwrap().1, now + SignedDuration::from_secs(5));
    let a = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "1".into(),
        },
    );
    assert_eq!(
        a[0],
        Action::RecordChoice {
            call: 1,
            menu: "menu".into(),
            digit: '1',
            valid: true
        }
    );
    let legs = legs_of(&a);
    assert_eq!(
        legs.iter().map(|l| l.user.as_str()).collect::<Vec<_>>(),
        ["anna"]
    );
    assert!(a.contains(&Action::Ring {
        call: 1,
        legs: legs.clone(),
        display: CallerDisplay {
            number: "4512345678#10".into(),
            group_name: Some("Salg".into())
        }
    }));
    let (t, at) = timer_of(&a).unwrap();
    assert_eq!(at, now + SignedDuration::from_secs(15));
    // anna does not answer: bo rings.
    let a = r.handle(at, Event::TimerFired { call: 1, timer: t });
    assert_eq!(
        a[0],
        Action::CancelLegs {
            call: 1,
            legs: vec![legs[0].leg]
        }
    );
    let bo = legs_of(&a);
    assert_eq!(bo[0].user, "bo");
    let a = r.handle(
        at,
        Event::LegAnswered {
            call: 1,
            leg: bo[0].leg,
        },
    );
    assert_eq!(
        a,
        vec![Action::Bridge {
            call: 1,
            leg: bo[0].leg
        }]
    );
    assert!(r.is_finished(1));
    assert_eq!(r.group_state("sales").last_answered.as_deref(), Some("bo"));
}

#[test]
fn demo_closed_goes_to_voicemail() {
    let mut r = router();
    for now in [
        cph(2027, 3, 10, 20, 0),
        cph(2027, 3, 13, 10, 0),
        cph(2027, 3, 26, 10, 0),
    ] {
        let a = arrive(&mut r, now);
        assert_eq!(
            a,
            vec![Action::SendToVoicemail {
                call: 1,
                mailbox: MailboxRef::Shared("office".into()),
                greeting: Greeting::Closed
            }]
        );
    }
}

#[test]
fn demo_menu_operator_invalid_and_timeouts() {
    let mut r = router();
    let now = cph(2027, 3, 10, 10, 0);
    arrive(&mut r, now);
    r.handle(now, Event::PromptFinished { call: 1 });
    // Key pressed during the menu prompt (barge-in): 0 → operator.
    let a = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "0".into(),
        },
    );
    assert_eq!(
        a,
        vec![
            Action::RecordChoice {
                call: 1,
                menu: "menu".into(),
                digit: '0',
                valid: true
            },
            Action::Forward {
                call: 1,
                target: Target::Internal("op".into())
            }
        ]
    );
    // Invalid key, then two timeouts: exhausted → operator.
    let mut r = router();
    arrive(&mut r, now);
    r.handle(now, Event::PromptFinished { call: 1 });
    r.handle(now, Event::PromptFinished { call: 1 });
    let a = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "7".into(),
        },
    );
    assert_eq!(
        a[0],
        Action::RecordChoice {
            call: 1,
            menu: "menu".into(),
            digit: '7',
            valid: false
        }
    );
    assert_eq!(
        a[1],
        Action::PlayPrompt {
            call: 1,
            prompt: "invalid".into(),
            language: "da".into()
        }
    );
    let a = r.handle(now, Event::PromptFinished { call: 1 });
    assert_eq!(
        a[0],
        Action::PlayPrompt {
            call: 1,
            prompt: "menu".into(),
            language: "da".into()
        }
    );
    let a = r.handle(now, Event::PromptFinished { call: 1 });
    let (t, at) = timer_of(&a).unwrap();
    let a = r.handle(at, Event::TimerFired { call: 1, timer: t });
    assert_eq!(
        a[0],
        Action::PlayPrompt {
            call: 1,
            prompt: "menu".into(),
            language: "da".into()
        }
    );
    let a = r.handle(at, Event::PromptFinished { call: 1 });
    let (t, at) = timer_of(&a).unwrap();
    // A stale timer does nothing.
    assert_eq!(
        r.handle(
            at,
            Event::TimerFired {
                call: 1,
                timer: t + 1000
            }
        ),
        vec![]
    );
    let a = r.handle(at, Event::TimerFired { call: 1, timer: t });
    assert_eq!(
        a,
        vec![Action::Forward {
            call: 1,
            target: Target::Internal("op".into())
        }]
    );
}

#[test]
fn demo_support_simultaneous_then_closed_vm_and_hangup_cancels() {
    let mut r = router();
    let now = cph(2027, 3, 10, 10, 0);
    arrive(&mut r, now);
    r.handle(now, Event::PromptFinished { call: 1 });
    let a = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "2".into(),
        },
    );
    let legs = legs_of(&a);
    assert_eq!(
        legs.iter().map(|l| l.user.as_str()).collect::<Vec<_>>(),
        ["bo", "carl"]
    );
    let a = r.handle(
        now,
        Event::LegFailed {
            call: 1,
            leg: legs[0].leg,
            reason: vaxel_routing::LegFailure::Busy,
        },
    );
    assert_eq!(a, vec![]);
    let a = r.handle(
        now,
        Event::LegFailed {
            call: 1,
            leg: legs[1].leg,
            reason: vaxel_routing::LegFailure::NoAnswer,
        },
    );
    assert_eq!(
        a,
        vec![Action::SendToVoicemail {
            call: 1,
            mailbox: MailboxRef::Shared("office".into()),
            greeting: Greeting::Closed
        }]
    );
    // Caller hangs up while ringing: legs cancelled, call forgotten.
    let mut r = router();
    arrive(&mut r, now);
    r.handle(now, Event::PromptFinished { call: 1 });
    let a = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "2".into(),
        },
    );
    let legs = legs_of(&a);
    let a = r.handle(now, Event::CallerHungUp { call: 1 });
    assert_eq!(
        a,
        vec![Action::CancelLegs {
            call: 1,
            legs: legs.iter().map(|l| l.leg).collect()
        }]
    );
    assert_eq!(r.active_calls(), 0);
}

#[test]
fn transitions_are_capped() {
    // A menu whose choice 9 loops back through the welcome prompt, pressed forever.
    let mut cfg = common::demo();
    if let Some(Step::Menu { choices, .. }) = steps(&mut cfg).get_mut("menu") {
        choices.insert("9".into(), "welcome".into());
    }
    let mut r = Router::new(cfg, ChaCha8Rng::seed_from_u64(1));
    let now = cph(2027, 3, 10, 10, 0);
    arrive(&mut r, now);
    let mut hung = false;
    for _ in 0..200 {
        let mut a = r.handle(now, Event::PromptFinished { call: 1 });
        a.extend(r.handle(
            now,
            Event::DigitsReceived {
                call: 1,
                digits: "9".into(),
            },
        ));
        if a.contains(&Action::Hangup { call: 1 }) {
            hung = true;
            break;
        }
    }
    assert!(hung, "hung up after {MAX_TRANSITIONS} transitions");
}

#[test]
fn direct_calls_plain_display_and_forwarding() {
    let mut cfg = common::demo();
    cfg.users[1].forwarding.no_answer = Some(vaxel_routing::forwarding::NoAnswerForward {
        target: Target::External("4587654321".into()),
        after_secs: 12,
    });
    cfg.users[2].forwarding.unconditional = Some(Target::Internal("anna".into()));
    let mut r = Router::new(cfg, ChaCha8Rng::seed_from_u64(1));
    let now = cph(2027, 3, 10, 10, 0);
    let a = r.handle(
        now,
        Event::CallArrived {
            call: 5,
            dialed: "202".into(),
            caller: "4512345678".into(),
        },
    );
    assert!(
        matches!(&a[0], Action::Ring { display, .. } if display == &CallerDisplay { number: "4512345678".into(), group_name: None })
    );
    let (t, at) = timer_of(&a).unwrap();
    assert_eq!(at, now + SignedDuration::from_secs(12));
    let a = r.handle(at, Event::TimerFired { call: 5, timer: t });
    assert_eq!(
        a[1],
        Action::Forward {
            call: 5,
            target: Target::External("4587654321".into())
        }
    );
    let a = r.handle(
        now,
        Event::CallArrived {
            call: 6,
            dialed: "203".into(),
            caller: "1".into(),
        },
    );
    assert_eq!(
        a,
        vec![Action::Forward {
            call: 6,
            target: Target::Internal("anna".into())
        }]
    );
    // Busy without busy forwarding → personal voicemail.
    r.handle(
        now,
        Event::MemberStateChanged {
            user: "anna".into(),
            state: vaxel_routing::MemberState {
                busy: true,
                ..Default::default()
            },
        },
    );
    let a = r.handle(
        now,
        Event::CallArrived {
            call: 7,
            dialed: "201".into(),
            caller: "1".into(),
        },
    );
    assert_eq!(
        a,
        vec![Action::SendToVoicemail {
            call: 7,
            mailbox: MailboxRef::Personal("anna".into()),
            greeting: Greeting::Standard
        }]
    );
}

#[test]
fn a_call_in_progress_survives_a_configuration_change() {
    let cfg = common::demo();
    let mut r = Router::new(cfg.clone(), ChaCha8Rng::seed_from_u64(1));
    let now = cph(2027, 3, 10, 10, 0); // a Wednesday, open
    r.handle(
        now,
        Event::CallArrived {
            call: 1,
            dialed: "72100100".into(),
            caller: "4512345678".into(),
        },
    );
    r.handle(now, Event::PromptFinished { call: 1 }); // welcome → menu
    let mut changed = cfg;
    changed.users[0].forwarding.unconditional = Some(Target::Internal("bo".into()));
    r.set_config(changed);
    let actions = r.handle(
        now,
        Event::DigitsReceived {
            call: 1,
            digits: "1".into(),
        },
    );
    assert!(
        actions.iter().any(|a| matches!(a, Action::Ring { .. })),
        "the menu still takes the key: {actions:?}"
    );
}
