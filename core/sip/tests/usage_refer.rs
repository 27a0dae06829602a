//! REFER (blind and attended transfer, RFC 3515/3891) and INVITE with Replaces.

mod usage_support;

use std::time::Duration;

use usage_support::{Sim, na, sdp, uri};
use vaxel_sip::msg::HeaderName;
use vaxel_sip::usage::session::{EndCause, Session, SessionEvent, SessionState, find_replaced};
use vaxel_testkit::LinkConditions;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn trio(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, LinkConditions::default());
    sim.add("alice", "192.0.2.1:5060", "alice");
    sim.add("bob", "192.0.2.2:5060", "bob");
    sim.add("carol", "192.0.2.3:5060", "carol");
    sim
}

fn events(sim: &Sim, ep: usize, i: usize) -> Vec<SessionEvent> {
    sim.eps[ep].session_events(i)
}

/// `from` calls `to`, which answers at once; returns (index at from, index at to).
fn connect(sim: &mut Sim, from: usize, to: usize) -> (usize, usize) {
    let i = sim.call(from, to, sdp("x", "sendrecv"));
    let n = sim.eps[to].sessions.len();
    assert!(sim.run_until(Duration::from_secs(5), |s| s.eps[to].sessions.len() > n));
    let now = sim.now();
    sim.eps[to].sessions[n]
        .answer(now, sdp("y", "sendrecv"))
        .unwrap();
    assert!(
        sim.run_until(Duration::from_secs(5), |s| *s.eps[from].sessions[i].state()
            == SessionState::Established)
    );
    (i, n)
}

fn transfer_request(
    sim: &Sim,
    ep: usize,
    i: usize,
) -> Option<(vaxel_sip::msg::Uri, Option<vaxel_sip::msg::Replaces>)> {
    events(sim, ep, i).into_iter().find_map(|e| match e {
        SessionEvent::TransferRequested {
            target, replaces, ..
        } => Some((target, replaces)),
        _ => None,
    })
}

/// Bob acts on a transfer request: calls the target (with Replaces when
/// given) and reports progress of that call to Alice through the REFER
/// session `bi`. Returns Bob's new session index.
fn bob_calls_target(sim: &mut Sim, bi: usize, answer: Option<u16>) -> usize {
    let (target, replaces) = transfer_request(sim, B, bi).expect("TransferRequested");
    let now = sim.now();
    let cfg = sim.eps[B].session_config();
    let r = sim.eps[B].seed();
    let extra = replaces
        .map(|r| (HeaderName::Replaces, r.to_string()))
        .into_iter()
        .collect();
    let to = vaxel_sip::msg::NameAddr::new(target.clone());
    sim.eps[B].sessions.push(Session::invite(
        now,
        cfg,
        r,
        target,
        to,
        sdp("bob2", "sendrecv"),
        extra,
    ));
    let nb = sim.eps[B].sessions.len() - 1;
    sim.run_for(Duration::from_millis(100));
    let ci = sim.eps[C].sessions.len() - 1;
    let now = sim.now();
    match answer {
        Some(code) if code >= 300 => sim.eps[C].sessions[ci].reject(now, code).unwrap(),
        _ => {
            sim.eps[C].sessions[ci].ring(now).unwrap();
        }
    }
    sim.run_for(Duration::from_millis(100));
    let now = sim.now();
    if answer.is_none_or(|c| c < 300) {
        // Replaces: Carol checks it names one of her calls, answers, ends the old one.
        let incoming = events(sim, C, ci);
        if let Some(SessionEvent::Incoming {
            replaces: Some(rep),
            ..
        }) = incoming.first()
        {
            let found = find_replaced(
                sim.eps[C]
                    .sessions
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != ci),
                rep,
            );
            match found {
                Ok(old) => {
                    sim.eps[C].sessions[ci]
                        .answer(now, sdp("carol", "sendrecv"))
                        .unwrap();
                    sim.eps[C].sessions[old].end_replaced(now);
                }
                Err(code) => sim.eps[C].sessions[ci].reject(now, code).unwrap(),
            }
        } else {
            sim.eps[C].sessions[ci]
                .answer(now, sdp("carol", "sendrecv"))
                .unwrap();
        }
    }
    sim.run_for(Duration::from_millis(500));
    // Report the new call's fate to Alice as sipfrag.
    let now = sim.now();
    let report: Vec<u16> = events(sim, B, nb)
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Ringing => Some(180),
            SessionEvent::Established { .. } => Some(200),
            SessionEvent::Ended {
                cause: EndCause::Rejected(c),
            } => Some(*c),
            _ => None,
        })
        .collect();
    for code in report {
        sim.eps[B].sessions[bi]
            .transfer_progress(now, code)
            .unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    nb
}

#[test]
fn blind_transfer_with_sipfrag_progress() {
    let mut sim = trio(1);
    let (ai, bi) = connect(&mut sim, A, B);
    let now = sim.now();
    sim.eps[A].sessions[ai]
        .refer(now, uri("sip:carol@192.0.2.3:5060"))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    let (target, replaces) = transfer_request(&sim, B, bi).unwrap();
    assert_eq!(target.to_string(), "sip:carol@192.0.2.3:5060");
    assert!(replaces.is_none());
    let nb = bob_calls_target(&mut sim, bi, Some(200));
    assert_eq!(*sim.eps[B].sessions[nb].state(), SessionState::Established);
    let ev = events(&sim, A, ai);
    assert!(
        ev.contains(&SessionEvent::TransferProgress { status: 100 }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&SessionEvent::TransferProgress { status: 180 }),
        "{ev:?}"
    );
    assert!(ev.contains(&SessionEvent::TransferSucceeded), "{ev:?}");
    let ladder = sim.ladder().join("\n");
    assert!(
        ladder.contains("REFER sip:")
            && ladder.contains("202 Accepted")
            && ladder.contains("NOTIFY sip:")
    );
    // Alice hangs up after the success.
    let now = sim.now();
    sim.eps[A].sessions[ai].hangup(now);
    sim.run_for(Duration::from_secs(1));
    assert!(events(&sim, B, bi).contains(&SessionEvent::Ended {
        cause: EndCause::RemoteHangup
    }));
}

#[test]
fn failed_transfer_tells_the_transferor_to_take_the_call_back() {
    let mut sim = trio(2);
    let (ai, bi) = connect(&mut sim, A, B);
    let now = sim.now();
    sim.eps[A].sessions[ai]
        .refer(now, uri("sip:carol@192.0.2.3:5060"))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    bob_calls_target(&mut sim, bi, Some(486));
    let ev = events(&sim, A, ai);
    assert!(
        ev.contains(&SessionEvent::TransferFailed { status: Some(486) }),
        "{ev:?}"
    );
    assert_eq!(*sim.eps[A].sessions[ai].state(), SessionState::Established);
}

#[test]
fn attended_transfer_with_replaces() {
    let mut sim = trio(3);
    let (ai_b, bi) = connect(&mut sim, A, B);
    let (ai_c, ci_a) = connect(&mut sim, A, C);
    let rep = sim.eps[A].sessions[ai_c].replaces_value().unwrap();
    let now = sim.now();
    sim.eps[A].sessions[ai_b]
        .refer_replacing(now, uri("sip:carol@192.0.2.3:5060"), Some(&rep))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    let (target, replaces) = transfer_request(&sim, B, bi).unwrap();
    assert_eq!(target.to_string(), "sip:carol@192.0.2.3:5060");
    assert_eq!(
        replaces.as_ref().map(|r| r.call_id.clone()),
        Some(rep.call_id.clone())
    );
    let nb = bob_calls_target(&mut sim, bi, None);
    assert_eq!(*sim.eps[B].sessions[nb].state(), SessionState::Established);
    // Carol's call with Alice was replaced: she BYEd Alice.
    assert!(events(&sim, C, ci_a).contains(&SessionEvent::Ended {
        cause: EndCause::Replaced
    }));
    assert!(events(&sim, A, ai_c).contains(&SessionEvent::Ended {
        cause: EndCause::RemoteHangup
    }));
    assert!(events(&sim, A, ai_b).contains(&SessionEvent::TransferSucceeded));
}

#[test]
fn invite_with_replaces_matching_nothing_gets_481() {
    let mut sim = trio(4);
    let (_ai, _ci) = connect(&mut sim, A, C);
    // Bob sends an INVITE to Carol replacing a dialog that does not exist.
    let now = sim.now();
    let cfg = sim.eps[B].session_config();
    let r = sim.eps[B].seed();
    let extra = vec![(
        HeaderName::Replaces,
        "nosuchcall;to-tag=1;from-tag=2".to_owned(),
    )];
    sim.eps[B].sessions.push(Session::invite(
        now,
        cfg,
        r,
        uri("sip:carol@192.0.2.3:5060"),
        na("sip:carol@example.com"),
        sdp("b", "sendrecv"),
        extra,
    ));
    sim.run_for(Duration::from_millis(100));
    let ci = sim.eps[C].sessions.len() - 1;
    let Some(SessionEvent::Incoming {
        replaces: Some(rep),
        ..
    }) = events(&sim, C, ci).first().cloned()
    else {
        panic!("no Replaces")
    };
    let found = find_replaced(
        sim.eps[C]
            .sessions
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != ci),
        &rep,
    );
    assert_eq!(found, Err(481));
    let now = sim.now();
    sim.eps[C].sessions[ci].reject(now, 481).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(events(&sim, B, 0).contains(&SessionEvent::Ended {
        cause: EndCause::Rejected(481)
    }));
    // An early-only Replaces naming a confirmed call is refused with 486.
    let mut early_only = sim.eps[A].sessions[0].replaces_value().unwrap().to_string();
    early_only.push_str(";early-only");
    let early_only = vaxel_sip::msg::Replaces::parse(&early_only.into()).unwrap();
    let found = find_replaced(sim.eps[C].sessions.iter().enumerate(), &early_only);
    assert_eq!(found, Err(486));
}
