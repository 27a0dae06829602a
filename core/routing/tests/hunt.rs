//! Hunt-group strategies with three members, in virtual time.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaxel_routing::hunt::{GroupState, Member, NoAnswer, Strategy, order};
use vaxel_routing::router::Leg;
use vaxel_routing::{
    Action, Config, Event, HuntGroup, LegFailure, MemberState, Router, caller_display,
};

fn member(u: &str) -> Member {
    Member {
        user: u.into(),
        active: true,
        ring_secs: None,
    }
}

fn group(strategy: Strategy) -> HuntGroup {
    HuntGroup {
        id: 10,
        name: "Salg".into(),
        strategy,
        members: vec![member("a"), member("b"), member("c")],
        ring_secs: 20,
        attempts: 1,
        max_total_secs: None,
        skip_busy: true,
        no_answer: NoAnswer::Prompt {
            prompt: "sorry".into(),
        },
    }
}

fn ord(
    g: &HuntGroup,
    states: &BTreeMap<String, MemberState>,
    last: Option<&str>,
    seed: u64,
) -> Vec<String> {
    order(
        g,
        states,
        &GroupState {
            last_answered: last.map(Into::into),
        },
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
}

#[test]
fn fixed_and_rotating_order() {
    let none = BTreeMap::new();
    assert_eq!(
        ord(&group(Strategy::Fixed), &none, Some("b"), 0),
        ["a", "b", "c"]
    );
    let rot = group(Strategy::Rotating);
    assert_eq!(ord(&rot, &none, None, 0), ["a", "b", "c"]);
    assert_eq!(ord(&rot, &none, Some("a"), 0), ["b", "c", "a"]);
    assert_eq!(ord(&rot, &none, Some("b"), 0), ["c", "a", "b"]);
    assert_eq!(ord(&rot, &none, Some("c"), 0), ["a", "b", "c"]);
}

#[test]
fn longest_idle_order() {
    let t0: Timestamp = "2027-03-10T09:00:00Z".parse().unwrap();
    let mut st = BTreeMap::new();
    st.insert(
        "a".to_string(),
        MemberState {
            idle_since: Some(t0 + SignedDuration::from_mins(10)),
            ..Default::default()
        },
    );
    st.insert(
        "b".to_string(),
        MemberState {
            idle_since: Some(t0),
            ..Default::default()
        },
    );
    st.insert(
        "c".to_string(),
        MemberState {
            idle_since: Some(t0 + SignedDuration::from_mins(5)),
            ..Default::default()
        },
    );
    assert_eq!(
        ord(&group(Strategy::LongestIdle), &st, None, 0),
        ["b", "c", "a"]
    );
    st.remove("a"); // never seen on a call: idle the longest
    assert_eq!(
        ord(&group(Strategy::LongestIdle), &st, None, 0),
        ["a", "b", "c"]
    );
}

#[test]
fn random_is_seeded_and_fair() {
    let g = group(Strategy::Random);
    let none = BTreeMap::new();
    assert_eq!(
        ord(&g, &none, None, 42),
        ord(&g, &none, None, 42),
        "same seed, same order"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut first = BTreeMap::<String, u32>::new();
    for _ in 0..3000 {
        let o = order(&g, &none, &GroupState::default(), &mut rng);
        let mut sorted = o.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"]);
        *first.entry(o[0].clone()).or_default() += 1;
    }
    for (u, n) in &first {
        assert!((850..=1150).contains(n), "{u} first {n} times of 3000");
    }
}

#[test]
fn simultaneous_cap_of_ten() {
    let mut g = group(Strategy::Simultaneous);
    g.members = (0..15).map(|i| member(&format!("u{i}"))).collect();
    let o = ord(&g, &BTreeMap::new(), None, 0);
    assert_eq!(o.len(), 10);
    assert_eq!(o[0], "u0");
    assert_eq!(o[9], "u9");
}

#[test]
fn passive_absent_busy_excluded() {
    let mut g = group(Strategy::Fixed);
    g.members[0].active = false;
    let mut st = BTreeMap::new();
    st.insert(
        "b".to_string(),
        MemberState {
            excluded: true,
            ..Default::default()
        },
    );
    assert_eq!(ord(&g, &st, None, 0), ["c"]);
    st.insert(
        "b".to_string(),
        MemberState {
            busy: true,
            ..Default::default()
        },
    );
    assert_eq!(ord(&g, &st, None, 0), ["c"]);
    g.skip_busy = false;
    assert_eq!(
        ord(&g, &st, None, 0),
        ["b", "c"],
        "busy members ring when the group allows it"
    );
}

#[test]
fn caller_display_group_and_direct() {
    let g = group(Strategy::Fixed);
    let d = caller_display("72100100", Some(&g));
    assert_eq!(d.number, "72100100#10");
    assert_eq!(d.group_name.as_deref(), Some("Salg"));
    assert_eq!(caller_display("72100100", None).number, "72100100");
}

// --- through the Router ---

fn config(g: HuntGroup) -> Config {
    let mut cfg: Config = toml::from_str(
        r#"
        prompts = ["sorry"]
        [[users]]
        id = "a"
        [[users]]
        id = "b"
        [[users]]
        id = "c"
        [[flows]]
        name = "f"
        numbers = ["100"]
        active = 1
        [[flows.versions]]
        version = 1
        start = "g"
        steps.g = { type = "hunt_group", group = "g" }
        "#,
    )
    .unwrap();
    cfg.groups.insert("g".into(), g);
    assert!(vaxel_routing::validate(&cfg, &cfg.flows[0].versions[0]).is_ok());
    cfg
}

fn t0() -> Timestamp {
    "2027-03-10T09:00:00Z".parse().unwrap()
}

struct Run {
    r: Router<ChaCha8Rng>,
    now: Timestamp,
    call: u64,
}

impl Run {
    fn new(g: HuntGroup) -> Run {
        Run {
            r: Router::new(config(g), ChaCha8Rng::seed_from_u64(3)),
            now: t0(),
            call: 0,
        }
    }
    fn arrive(&mut self) -> Vec<Action> {
        self.call += 1;
        self.r.handle(
            self.now,
            Event::CallArrived {
                call: self.call,
                dialed: "100".into(),
                caller: "4512".into(),
            },
        )
    }
    /// Let the latest timer fire.
    fn fire(&mut self, actions: &[Action]) -> Vec<Action> {
        let (timer, at) = actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::StartTimer { timer, at, .. } => Some((*timer, *at)),
                _ => None,
            })
            .expect("a timer");
        self.now = at;
        self.r.handle(
            self.now,
            Event::TimerFired {
                call: self.call,
                timer,
            },
        )
    }
}

fn rung(a: &[Action]) -> Vec<Leg> {
    a.iter()
        .find_map(|x| match x {
            Action::Ring { legs, .. } => Some(legs.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn users(l: &[Leg]) -> Vec<&str> {
    l.iter().map(|l| l.user.as_str()).collect()
}

#[test]
fn fixed_rings_in_order_then_no_answer_prompt() {
    let mut run = Run::new(group(Strategy::Fixed));
    let a = run.arrive();
    assert_eq!(users(&rung(&a)), ["a"]);
    let a = run.fire(&a);
    assert_eq!(users(&rung(&a)), ["b"]);
    let a = run.fire(&a);
    assert_eq!(users(&rung(&a)), ["c"]);
    assert_eq!(run.now, t0() + SignedDuration::from_secs(40));
    let a = run.fire(&a);
    assert!(
        matches!(&a[1], Action::PlayPrompt { prompt, .. } if prompt == "sorry"),
        "{a:?}"
    );
    assert_eq!(
        run.r.handle(run.now, Event::PromptFinished { call: 1 }),
        vec![Action::Hangup { call: 1 }]
    );
}

#[test]
fn per_member_ring_time_and_failures_move_on() {
    let mut g = group(Strategy::Fixed);
    g.members[0].ring_secs = Some(5);
    let mut run = Run::new(g);
    let a = run.arrive();
    assert!(
        a.contains(&Action::StartTimer {
            call: 1,
            timer: 3,
            at: t0() + SignedDuration::from_secs(5)
        }),
        "{a:?}"
    );
    let l = rung(&a);
    let a = run.r.handle(
        run.now,
        Event::LegFailed {
            call: 1,
            leg: l[0].leg,
            reason: LegFailure::Unreachable,
        },
    );
    assert_eq!(users(&rung(&a)), ["b"]);
}

#[test]
fn rotating_state_follows_answers() {
    let mut run = Run::new(group(Strategy::Rotating));
    let mut firsts = vec![];
    // Call 1: a rings, b answers after a times out. Call 2 starts at c; c answers. Call 3 starts at a.
    let a = run.arrive();
    firsts.push(users(&rung(&a))[0].to_string());
    let a = run.fire(&a);
    let l = rung(&a);
    run.r.handle(
        run.now,
        Event::LegAnswered {
            call: 1,
            leg: l[0].leg,
        },
    );
    assert_eq!(run.r.group_state("g").last_answered.as_deref(), Some("b"));
    let a = run.arrive();
    let l = rung(&a);
    firsts.push(l[0].user.clone());
    run.r.handle(
        run.now,
        Event::LegAnswered {
            call: 2,
            leg: l[0].leg,
        },
    );
    let a = run.arrive();
    firsts.push(users(&rung(&a))[0].to_string());
    assert_eq!(firsts, ["a", "c", "a"]);
}

#[test]
fn longest_idle_through_router() {
    let mut run = Run::new(group(Strategy::LongestIdle));
    for (u, mins) in [("a", 3), ("b", 1), ("c", 2)] {
        run.r.handle(
            run.now,
            Event::MemberStateChanged {
                user: u.into(),
                state: MemberState {
                    idle_since: Some(t0() - SignedDuration::from_mins(mins)),
                    ..Default::default()
                },
            },
        );
    }
    let a = run.arrive();
    assert_eq!(users(&rung(&a)), ["a"]);
    let a = run.fire(&a);
    assert_eq!(users(&rung(&a)), ["c"]);
    let a = run.fire(&a);
    assert_eq!(users(&rung(&a)), ["b"]);
}

#[test]
fn simultaneous_answer_cancels_the_others() {
    let mut run = Run::new(group(Strategy::Simultaneous));
    let a = run.arrive();
    let l = rung(&a);
    assert_eq!(users(&l), ["a", "b", "c"]);
    let a = run.r.handle(
        run.now,
        Event::LegAnswered {
            call: 1,
            leg: l[1].leg,
        },
    );
    assert_eq!(
        a,
        vec![
            Action::CancelLegs {
                call: 1,
                legs: vec![l[0].leg, l[2].leg]
            },
            Action::Bridge {
                call: 1,
                leg: l[1].leg
            }
        ]
    );
}

#[test]
fn member_becoming_busy_is_skipped_at_ring_time() {
    let mut run = Run::new(group(Strategy::Fixed));
    let a = run.arrive();
    run.r.handle(
        run.now,
        Event::MemberStateChanged {
            user: "b".into(),
            state: MemberState {
                busy: true,
                ..Default::default()
            },
        },
    );
    let a = run.fire(&a);
    assert_eq!(users(&rung(&a)), ["c"]);
}

#[test]
fn attempts_and_total_time_exhaust_to_no_answer() {
    let mut g = group(Strategy::Fixed);
    g.attempts = 2;
    g.no_answer = NoAnswer::Voicemail {
        mailbox: vaxel_routing::flow::MailboxRef::Personal("a".into()),
    };
    let mut run = Run::new(g.clone());
    let mut a = run.arrive();
    let mut order = vec![];
    loop {
        let l = rung(&a);
        if l.is_empty() {
            break;
        }
        order.push(l[0].user.clone());
        a = run.fire(&a);
    }
    assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    assert!(
        matches!(a.last(), Some(Action::SendToVoicemail { .. })),
        "{a:?}"
    );
    assert_eq!(run.now, t0() + SignedDuration::from_secs(120));
    // Total time 50 s cuts the third member's ring short at 50 s.
    g.max_total_secs = Some(50);
    let mut run = Run::new(g);
    let mut a = run.arrive();
    for _ in 0..2 {
        a = run.fire(&a);
    }
    assert_eq!(users(&rung(&a)), ["c"]);
    let a = run.fire(&a);
    assert_eq!(run.now, t0() + SignedDuration::from_secs(50));
    assert!(
        matches!(a.last(), Some(Action::SendToVoicemail { .. })),
        "{a:?}"
    );
    // Nobody eligible: straight to no answer.
    let mut g = group(Strategy::Fixed);
    for m in &mut g.members {
        m.active = false;
    }
    let mut run = Run::new(g);
    let a = run.arrive();
    assert!(matches!(&a[..], [Action::PlayPrompt { .. }]), "{a:?}");
}
