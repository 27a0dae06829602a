//! INVITE session flows between simulated endpoints in virtual time.

mod usage_support;

use std::time::Duration;

use bytes::Bytes;
use usage_support::{Sim, na, rng, sdp, uri};
use vaxel_sip::msg::{HeaderName, Method, Response, StatusCode};
use vaxel_sip::usage::session::{EndCause, Session, SessionConfig, SessionEvent, SessionState};
use vaxel_sip::usage::{Local, Output};
use vaxel_testkit::LinkConditions;

fn pair(seed: u64, conditions: LinkConditions) -> Sim {
    let mut sim = Sim::new(seed, conditions);
    sim.add("alice", "192.0.2.1:5060", "alice");
    sim.add("bob", "192.0.2.2:5060", "bob");
    sim
}

fn ended(sim: &Sim, ep: usize, i: usize) -> Option<EndCause> {
    sim.eps[ep]
        .session_events(i)
        .into_iter()
        .find_map(|e| match e {
            SessionEvent::Ended { cause } => Some(cause),
            _ => None,
        })
}

fn has(sim: &Sim, ep: usize, i: usize, f: impl Fn(&SessionEvent) -> bool) -> bool {
    sim.eps[ep].session_events(i).iter().any(f)
}

/// Alice calls Bob, Bob rings then answers: both Established.
fn establish(sim: &mut Sim) {
    sim.call(0, 1, sdp("alice", "sendrecv"));
    assert!(sim.run_until(Duration::from_secs(40), |s| !s.eps[1].sessions.is_empty()));
    let now = sim.now();
    sim.eps[1].sessions[0].ring(now).unwrap();
    sim.run_for(Duration::from_millis(500));
    let now = sim.now();
    sim.eps[1].sessions[0]
        .answer(now, sdp("bob", "sendrecv"))
        .unwrap();
    let ok = sim.run_until(Duration::from_secs(40), |s| {
        *s.eps[0].sessions[0].state() == SessionState::Established
    });
    assert!(ok, "{:#?}", sim.ladder());
}

#[test]
fn basic_call_ring_answer_bye() {
    let mut sim = pair(1, LinkConditions::default());
    establish(&mut sim);
    assert!(has(&sim, 0, 0, |e| *e == SessionEvent::Ringing));
    assert!(has(
        &sim,
        0,
        0,
        |e| matches!(e, SessionEvent::Established { remote_sdp: Some(b) } if b == &sdp("bob", "sendrecv"))
    ));
    assert!(has(&sim, 1, 0, |e| matches!(
        e,
        SessionEvent::Incoming { offer: Some(_), .. }
    )));
    sim.run_for(Duration::from_secs(5));
    let now = sim.now();
    sim.eps[0].sessions[0].hangup(now);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(ended(&sim, 0, 0), Some(EndCause::LocalHangup));
    assert_eq!(ended(&sim, 1, 0), Some(EndCause::RemoteHangup));
    let ladder = sim.ladder().join("\n");
    for line in [
        "INVITE sip:bob",
        "180 Ringing",
        "200 OK",
        "ACK sip:",
        "BYE sip:bob",
    ] {
        assert!(ladder.contains(line), "{line} missing:\n{ladder}");
    }
}

#[test]
fn reject_busy_and_decline() {
    for code in [486u16, 603, 480] {
        let mut sim = pair(2, LinkConditions::default());
        sim.call(0, 1, sdp("alice", "sendrecv"));
        sim.run_for(Duration::from_millis(100));
        let now = sim.now();
        sim.eps[1].sessions[0].reject(now, code).unwrap();
        sim.run_for(Duration::from_secs(40));
        assert_eq!(ended(&sim, 0, 0), Some(EndCause::Rejected(code)));
        assert_eq!(ended(&sim, 1, 0), Some(EndCause::LocalRejected(code)));
    }
}

#[test]
fn redirect_302_ends_both_sides_with_the_status() {
    let mut sim = pair(2, LinkConditions::default());
    sim.call(0, 1, sdp("alice", "sendrecv"));
    sim.run_for(Duration::from_millis(100));
    let now = sim.now();
    sim.eps[1].sessions[0]
        .redirect(now, 302, &uri("sip:*59*bob@example.com"))
        .unwrap();
    sim.run_for(Duration::from_secs(40));
    assert_eq!(ended(&sim, 0, 0), Some(EndCause::Rejected(302)));
    assert_eq!(ended(&sim, 1, 0), Some(EndCause::LocalRejected(302)));
    let ladder = sim.ladder().join("\n");
    assert!(ladder.contains("302 Moved Temporarily"), "{ladder}");
    // Only a pending INVITE can be redirected.
    let now = sim.now();
    assert!(
        sim.eps[1].sessions[0]
            .redirect(now, 302, &uri("sip:x@example.com"))
            .is_err()
    );
}

#[test]
fn cancel_before_any_provisional() {
    let mut sim = pair(3, LinkConditions::default());
    let i = sim.call(0, 1, sdp("alice", "sendrecv"));
    let now = sim.now();
    sim.eps[0].sessions[i].hangup(now);
    sim.run_for(Duration::from_secs(40));
    assert_eq!(ended(&sim, 0, 0), Some(EndCause::Cancelled));
    assert_eq!(ended(&sim, 1, 0), Some(EndCause::RemoteCancelled));
    let ladder = sim.ladder().join("\n");
    assert!(
        ladder.contains("100 Trying") && ladder.contains("CANCEL") && ladder.contains("487"),
        "{ladder}"
    );
}

#[test]
fn cancel_after_ringing() {
    let mut sim = pair(4, LinkConditions::default());
    sim.call(0, 1, sdp("alice", "sendrecv"));
    sim.run_for(Duration::from_millis(50));
    let now = sim.now();
    sim.eps[1].sessions[0].ring(now).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(*sim.eps[0].sessions[0].state(), SessionState::Ringing);
    let now = sim.now();
    sim.eps[0].sessions[0].hangup(now);
    sim.run_for(Duration::from_secs(40));
    assert_eq!(ended(&sim, 0, 0), Some(EndCause::Cancelled));
    assert_eq!(ended(&sim, 1, 0), Some(EndCause::RemoteCancelled));
}

#[test]
fn cancel_crossing_200_is_acked_then_byed() {
    let mut sim = pair(5, LinkConditions::default());
    sim.call(0, 1, sdp("alice", "sendrecv"));
    sim.run_for(Duration::from_millis(50));
    let now = sim.now();
    sim.eps[1].sessions[0].ring(now).unwrap();
    sim.run_for(Duration::from_secs(1));
    // Same instant: Bob's 200 and Alice's CANCEL cross on the wire.
    let now = sim.now();
    sim.eps[1].sessions[0]
        .answer(now, sdp("bob", "sendrecv"))
        .unwrap();
    sim.eps[0].sessions[0].hangup(now);
    sim.run_for(Duration::from_secs(40));
    assert_eq!(ended(&sim, 0, 0), Some(EndCause::Cancelled));
    assert_eq!(ended(&sim, 1, 0), Some(EndCause::RemoteHangup));
    let ladder = sim.ladder();
    let ack = ladder
        .iter()
        .position(|l| l.contains("ACK sip:"))
        .expect("ACK");
    let bye = ladder
        .iter()
        .position(|l| l.contains("BYE sip:"))
        .expect("BYE");
    assert!(ack < bye, "{ladder:#?}");
}

fn drain(s: &mut Session) -> Vec<Output<SessionEvent>> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

#[test]
fn forking_two_early_dialogs_first_2xx_wins_second_is_acked_and_byed() {
    let t0 = vaxel_testkit::SimClock::new().now();
    let local = Local::udp("192.0.2.1:5060".parse().unwrap(), Some("alice"));
    let cfg = SessionConfig {
        local,
        from: na("sip:alice@example.com"),
        auth: None,
    };
    let mut s = Session::invite(
        t0,
        cfg,
        rng(9),
        uri("sip:bob@example.com"),
        na("sip:bob@example.com"),
        sdp("a", "sendrecv"),
        vec![],
    );
    let out = drain(&mut s);
    let Output::Request(invite) = &out[0] else {
        panic!("{out:?}")
    };
    let reply = |code: u16, tag: &str, contact: &str, body: &str| {
        let mut r = Response::from_request(invite, StatusCode::new(code).unwrap());
        r.set_to_tag(tag).unwrap();
        r.headers.push(HeaderName::Contact, format!("<{contact}>"));
        r.body = Bytes::from(body.to_owned());
        r
    };
    s.handle_response(t0, &reply(180, "b1", "sip:bob@192.0.2.2", ""));
    s.handle_response(t0, &reply(180, "b2", "sip:bob@192.0.2.3", ""));
    assert_eq!(drain(&mut s), vec![Output::Event(SessionEvent::Ringing)]);
    s.handle_response(t0, &reply(200, "b2", "sip:bob@192.0.2.3", "answer2"));
    let out = drain(&mut s);
    assert!(
        matches!(&out[0], Output::Ack(a) if a.uri.to_string() == "sip:bob@192.0.2.3"),
        "{out:?}"
    );
    assert!(matches!(
        &out[1],
        Output::Event(SessionEvent::Established { .. })
    ));
    // The other fork answers too: ACK it and BYE it (§13.2.2.4).
    s.handle_response(t0, &reply(200, "b1", "sip:bob@192.0.2.2", "answer1"));
    let out = drain(&mut s);
    assert!(
        matches!(&out[0], Output::Ack(a) if a.uri.to_string() == "sip:bob@192.0.2.2"),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Output::Request(r) if r.method == Method::Bye && r.uri.to_string() == "sip:bob@192.0.2.2")
    );
    // Retransmissions of either 2xx are ACKed again, nothing else.
    s.handle_response(t0, &reply(200, "b2", "sip:bob@192.0.2.3", "answer2"));
    s.handle_response(t0, &reply(200, "b1", "sip:bob@192.0.2.2", "answer1"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| matches!(o, Output::Ack(_))));
    assert_eq!(*s.state(), SessionState::Established);
    assert_eq!(&*s.dialog().unwrap().id().remote_tag, "b2");
}

#[test]
fn hold_and_resume_both_ways() {
    let mut sim = pair(6, LinkConditions::default());
    establish(&mut sim);
    let now = sim.now();
    sim.eps[0].sessions[0]
        .reinvite(now, sdp("alice", "sendonly"))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(has(&sim, 1, 0, |e| *e == SessionEvent::RemoteHold(true)));
    assert!(has(
        &sim,
        0,
        0,
        |e| matches!(e, SessionEvent::RemoteSdp { sdp } if String::from_utf8_lossy(sdp).contains("recvonly"))
    ));
    let now = sim.now();
    sim.eps[0].sessions[0]
        .reinvite(now, sdp("alice", "sendrecv"))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(has(&sim, 1, 0, |e| *e == SessionEvent::RemoteHold(false)));
    // Bob holds Alice now.
    let now = sim.now();
    sim.eps[1].sessions[0]
        .reinvite(now, sdp("bob", "inactive"))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(sim.eps[0].sessions[0].remote_held());
    let now = sim.now();
    sim.eps[1].sessions[0]
        .reinvite(now, sdp("bob", "sendrecv"))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(!sim.eps[0].sessions[0].remote_held());
    assert_eq!(*sim.eps[0].sessions[0].state(), SessionState::Established);
    assert_eq!(*sim.eps[1].sessions[0].state(), SessionState::Established);
}

#[test]
fn hold_asked_before_the_ack_waits_for_it() {
    // The callee answers and presses hold at once: the caller's ACK is still
    // on its way, and §14.1 forbids a re-INVITE while that INVITE is open, so
    // the hold must go out when the ACK arrives instead of failing.
    let mut sim = pair(8, LinkConditions::default());
    sim.call(0, 1, sdp("alice", "sendrecv"));
    assert!(sim.run_until(Duration::from_secs(40), |s| !s.eps[1].sessions.is_empty()));
    let now = sim.now();
    sim.eps[1].sessions[0]
        .answer(now, sdp("bob", "sendrecv"))
        .unwrap();
    sim.eps[1].sessions[0]
        .reinvite(now, sdp("bob", "sendonly"))
        .expect("a hold before the ACK is deferred, not refused");
    sim.run_for(Duration::from_secs(3));
    assert!(
        has(&sim, 0, 0, |e| *e == SessionEvent::RemoteHold(true)),
        "{:#?}",
        sim.ladder()
    );
    assert_eq!(*sim.eps[0].sessions[0].state(), SessionState::Established);
    assert_eq!(*sim.eps[1].sessions[0].state(), SessionState::Established);
}

#[test]
fn reinvite_glare_gets_491_then_both_retry_and_succeed() {
    let mut sim = pair(7, LinkConditions::default());
    establish(&mut sim);
    sim.run_for(Duration::from_secs(1));
    let now = sim.now();
    sim.eps[0].sessions[0]
        .reinvite(now, sdp("alice", "sendonly"))
        .unwrap();
    sim.eps[1].sessions[0]
        .reinvite(now, sdp("bob", "sendonly"))
        .unwrap();
    let glare_at = now;
    sim.run_for(Duration::from_secs(10));
    let ladder = sim.ladder().join("\n");
    assert_eq!(ladder.matches("491 Request Pending").count(), 2, "{ladder}");
    // Both offers eventually went through.
    assert!(has(&sim, 0, 0, |e| matches!(
        e,
        SessionEvent::RemoteSdp { .. }
    )));
    assert!(has(&sim, 1, 0, |e| matches!(
        e,
        SessionEvent::RemoteSdp { .. }
    )));
    assert!(!has(&sim, 0, 0, |e| matches!(
        e,
        SessionEvent::ReinviteFailed { .. }
    )));
    // Bob (not the Call-ID owner) retries within 0–2 s; Alice within 2.1–4 s.
    let offers_at_alice: Vec<_> = sim.eps[0]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, usage_support::Ev::Session(0, SessionEvent::Offer { .. })))
        .map(|(t, _)| *t - glare_at)
        .collect();
    assert_eq!(offers_at_alice.len(), 1);
    assert!(
        offers_at_alice[0] < Duration::from_millis(2100),
        "{offers_at_alice:?}"
    );
    let offers_at_bob: Vec<_> = sim.eps[1]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, usage_support::Ev::Session(0, SessionEvent::Offer { .. })))
        .map(|(t, _)| *t - glare_at)
        .collect();
    assert_eq!(offers_at_bob.len(), 1);
    assert!(
        offers_at_bob[0] >= Duration::from_millis(2100)
            && offers_at_bob[0] < Duration::from_millis(4100),
        "{offers_at_bob:?}"
    );
}

#[test]
fn bye_for_unknown_dialog_gets_481_and_requests_after_end_too() {
    let mut sim = pair(8, LinkConditions::default());
    establish(&mut sim);
    // A BYE with a To tag Bob never issued.
    let mut d = sim.eps[0].sessions[0].dialog().unwrap().clone();
    let mut bye = d.new_request(Method::Bye);
    let mut to = bye.headers.to().unwrap();
    to.params.remove("tag");
    to.set_tag("not-a-tag");
    bye.headers.set(HeaderName::To, to.to_string());
    let mut rng = rng(1);
    sim.eps[0].local.clone().stamp(&mut bye, &mut *rng);
    let peer = vaxel_sip::transaction::Peer {
        transport: vaxel_sip::transaction::TransportKind::Udp,
        addr: "192.0.2.2:5060".parse().unwrap(),
    };
    let now = sim.now();
    sim.eps[0].tx.send_request(now, bye, peer).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.eps[1].unrouted_481, 1);
    assert!(sim.ladder().join("\n").contains("481"));
    assert_eq!(*sim.eps[1].sessions[0].state(), SessionState::Established);
    // After the call ends, an INFO in the old dialog gets 481 from the session.
    let now = sim.now();
    sim.eps[0].sessions[0].hangup(now);
    sim.run_for(Duration::from_secs(2));
    let mut info = d.new_request(Method::Info);
    sim.eps[0].local.clone().stamp(&mut info, &mut *rng);
    let now = sim.now();
    sim.eps[0].tx.send_request(now, info, peer).unwrap();
    sim.net.clear_trace();
    sim.run_for(Duration::from_secs(2));
    assert!(sim.ladder().join("\n").contains("481"));
}

#[test]
fn info_dtmf_both_ways() {
    let mut sim = pair(9, LinkConditions::default());
    establish(&mut sim);
    let now = sim.now();
    sim.eps[0].sessions[0].send_dtmf(now, '5', 160).unwrap();
    sim.eps[1].sessions[0].send_dtmf(now, '#', 100).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(has(&sim, 1, 0, |e| *e
        == SessionEvent::Dtmf {
            digit: '5',
            duration_ms: 160
        }));
    assert!(has(&sim, 0, 0, |e| *e
        == SessionEvent::Dtmf {
            digit: '#',
            duration_ms: 100
        }));
}

#[test]
fn early_media_then_answer() {
    let mut sim = pair(10, LinkConditions::default());
    sim.call(0, 1, sdp("alice", "sendrecv"));
    sim.run_for(Duration::from_millis(50));
    let now = sim.now();
    sim.eps[1].sessions[0]
        .early_media(now, sdp("bob-early", "sendrecv"))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(has(&sim, 0, 0, |e| matches!(
        e,
        SessionEvent::EarlyMedia { .. }
    )));
    assert_eq!(*sim.eps[0].sessions[0].state(), SessionState::Early);
    let now = sim.now();
    sim.eps[1].sessions[0]
        .answer(now, sdp("bob", "sendrecv"))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(*sim.eps[0].sessions[0].state(), SessionState::Established);
}

#[test]
fn basic_call_over_a_lossy_network() {
    for seed in 0..8 {
        let mut sim = pair(200 + seed, LinkConditions::default().with_loss(0.2));
        sim.call(0, 1, sdp("alice", "sendrecv"));
        assert!(
            sim.run_until(Duration::from_secs(40), |s| !s.eps[1].sessions.is_empty()),
            "seed {seed}"
        );
        let now = sim.now();
        sim.eps[1].sessions[0]
            .answer(now, sdp("bob", "sendrecv"))
            .unwrap();
        let up = sim.run_until(Duration::from_secs(40), |s| {
            *s.eps[0].sessions[0].state() == SessionState::Established
        });
        assert!(up, "seed {seed}: {:#?}", sim.ladder());
        sim.run_for(Duration::from_secs(40));
        let now = sim.now();
        sim.eps[0].sessions[0].hangup(now);
        sim.run_for(Duration::from_secs(40));
        assert_eq!(
            ended(&sim, 0, 0),
            Some(EndCause::LocalHangup),
            "seed {seed}"
        );
        // Bob either got the BYE or (its 2xx never acknowledged) gave up.
        assert!(
            matches!(
                ended(&sim, 1, 0),
                Some(EndCause::RemoteHangup | EndCause::AckTimeout)
            ),
            "seed {seed}"
        );
    }
}
