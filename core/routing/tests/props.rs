//! Invariants under arbitrary input.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaxel_routing::hunt::{GroupState, Member, NoAnswer, Strategy, order};
use vaxel_routing::{Action, Event, HuntGroup, LegFailure, MemberState, Router};

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Fixed),
        Just(Strategy::Rotating),
        Just(Strategy::Simultaneous),
        Just(Strategy::LongestIdle),
        Just(Strategy::Random)
    ]
}

proptest! {
    /// A hunt group never rings a passive, presence-excluded or (skip_busy) busy member.
    #[test]
    fn never_rings_ineligible(
        s in strategy(),
        members in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>(), proptest::option::of(0i64..1000)), 1..14),
        skip_busy in any::<bool>(),
        last in proptest::option::of(0usize..14),
        seed in any::<u64>(),
    ) {
        let t0: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let g = HuntGroup {
            id: 1, name: "g".into(), strategy: s,
            members: members.iter().enumerate().map(|(i, m)| Member { user: format!("u{i}"), active: m.0, ring_secs: None }).collect(),
            ring_secs: 10, attempts: 1, max_total_secs: None, skip_busy,
            no_answer: NoAnswer::Prompt { prompt: "p".into() },
        };
        let states: BTreeMap<String, MemberState> = members.iter().enumerate().map(|(i, m)| (format!("u{i}"), MemberState {
            busy: m.1, excluded: m.2, idle_since: m.3.map(|s| t0 + SignedDuration::from_secs(s)),
        })).collect();
        let gs = GroupState { last_answered: last.map(|i| format!("u{i}")) };
        let o = order(&g, &states, &gs, &mut ChaCha8Rng::seed_from_u64(seed));
        let eligible: BTreeSet<String> = members.iter().enumerate()
            .filter(|(_, m)| m.0 && !m.2 && !(skip_busy && m.1)).map(|(i, _)| format!("u{i}")).collect();
        let got: BTreeSet<String> = o.iter().cloned().collect();
        prop_assert_eq!(got.len(), o.len(), "no member twice");
        prop_assert!(got.is_subset(&eligible));
        if s == Strategy::Simultaneous {
            prop_assert_eq!(o.len(), eligible.len().min(10));
        } else {
            prop_assert_eq!(got, eligible);
        }
    }

    /// The validated demo flow reaches an end (handed over or hung up) for any event sequence,
    /// within a bounded number of events that make progress.
    #[test]
    fn validated_flow_terminates(
        hour in 0i64..24*7,
        events in proptest::collection::vec((0u8..6, 0usize..12, any::<u8>()), 0..400),
        seed in any::<u64>(),
    ) {
        let mut r = Router::new(common::demo(), ChaCha8Rng::seed_from_u64(seed));
        let mut now: Timestamp = "2027-03-08T00:00:00Z".parse().unwrap();
        now += SignedDuration::from_hours(hour);
        let mut timers: Vec<u64> = vec![];
        let mut legs: Vec<u64> = vec![];
        let note = |a: &[Action], timers: &mut Vec<u64>, legs: &mut Vec<u64>| {
            for x in a {
                match x {
                    Action::StartTimer { timer, .. } => timers.push(*timer),
                    Action::Ring { legs: l, .. } => legs.extend(l.iter().map(|l| l.leg)),
                    _ => {}
                }
            }
        };
        let a = r.handle(now, Event::CallArrived { call: 1, dialed: "72100100".into(), caller: "1".into() });
        note(&a, &mut timers, &mut legs);
        for (kind, pick, key) in events {
            if r.is_finished(1) { break; }
            now += SignedDuration::from_secs(1);
            let ev = match kind {
                0 => Event::PromptFinished { call: 1 },
                1 => Event::DigitsReceived { call: 1, digits: ((b'0' + key % 12) as char).to_string().replace(':', "*").replace(';', "#") },
                2 => match timers.get(pick % timers.len().max(1)) { Some(t) => Event::TimerFired { call: 1, timer: *t }, None => continue },
                3 => match legs.get(pick % legs.len().max(1)) { Some(l) => Event::LegFailed { call: 1, leg: *l, reason: LegFailure::NoAnswer }, None => continue },
                4 => match legs.get(pick % legs.len().max(1)) { Some(l) => Event::LegAnswered { call: 1, leg: *l }, None => continue },
                _ => Event::MemberStateChanged { user: ["anna", "bo", "carl"][pick % 3].into(), state: MemberState { busy: key % 2 == 0, ..Default::default() } },
            };
            let a = r.handle(now, ev);
            note(&a, &mut timers, &mut legs);
        }
        // Drive to the end by letting the newest timer fire / the prompt finish / a timeout.
        let mut steps = 0;
        while !r.is_finished(1) {
            steps += 1;
            prop_assert!(steps < 500, "did not terminate");
            now += SignedDuration::from_secs(30);
            let a = r.handle(now, Event::PromptFinished { call: 1 });
            note(&a, &mut timers, &mut legs);
            if let Some(t) = timers.last().copied() {
                let a = r.handle(now, Event::TimerFired { call: 1, timer: t });
                note(&a, &mut timers, &mut legs);
            }
        }
    }
}
