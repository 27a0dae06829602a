//! RFC 3665 call flows between two user agents over the simulated network:
//! §3.1 "Successful Session Establishment" and a CANCEL flow, as message
//! ladders in virtual time.

mod transaction_support;

use std::net::SocketAddr;
use std::time::Duration;

use transaction_support::sim::{Action, Answer, Layer, Node, Sim, Ua};
use vaxel_sip::msg::{self, HeaderName, Message, Method};
use vaxel_testkit::{Fate, LinkConditions};

fn alice_addr() -> SocketAddr {
    "192.0.2.101:5060".parse().unwrap()
}

fn bob_addr() -> SocketAddr {
    "192.0.2.201:5060".parse().unwrap()
}

fn sim(
    bob_answers: Answer,
    alice: impl FnOnce(std::time::Instant, Ua) -> Ua,
    bob_bye_at: Option<Duration>,
) -> Sim<Ua, Ua> {
    let a = Node {
        layer: Layer::new("Alice", alice_addr(), 1),
        tu: Ua::new("alice", "atlanta.example.com", Answer::RingForever),
    };
    let b = Node {
        layer: Layer::new("Bob", bob_addr(), 2),
        tu: Ua::new("bob", "biloxi.example.com", bob_answers),
    };
    let mut s = Sim::new(3665, LinkConditions::default(), a, b);
    let t0 = s.clock.now();
    let tu = std::mem::replace(&mut s.a.tu, Ua::new("x", "x", Answer::RingForever));
    s.a.tu = alice(t0, tu);
    if let Some(at) = bob_bye_at {
        let tu = std::mem::replace(&mut s.b.tu, Ua::new("x", "x", Answer::RingForever));
        s.b.tu = tu.at(t0 + at, Action::Bye);
    }
    s
}

fn messages(s: &Sim<Ua, Ua>) -> Vec<Message> {
    s.net
        .trace()
        .iter()
        .filter(|e| e.fate == Fate::Delivered)
        .map(|e| msg::parse(e.payload.clone()).unwrap())
        .collect()
}

#[test]
fn rfc3665_3_1_successful_session_establishment() {
    let mut s = sim(
        Answer::RingThenOk(Duration::from_secs(2)),
        |t0, ua| {
            ua.at(
                t0,
                Action::Call {
                    target: "sip:bob@biloxi.example.com".into(),
                    peer: bob_addr(),
                },
            )
        },
        Some(Duration::from_secs(10)),
    );
    s.run_for(Duration::from_secs(120));
    assert_eq!(
        s.ladder(),
        [
            "Alice -> Bob: INVITE sip:bob@biloxi.example.com SIP/2.0",
            "Bob -> Alice: SIP/2.0 180 Ringing",
            "Bob -> Alice: SIP/2.0 200 OK",
            "Alice -> Bob: ACK sip:bob@192.0.2.201:5060 SIP/2.0",
            "Bob -> Alice: BYE sip:alice@192.0.2.101:5060 SIP/2.0",
            "Alice -> Bob: SIP/2.0 200 OK",
        ],
        "{}",
        s.render()
    );
    let m = messages(&s);
    let (inv, ok, ack, bye) = (&m[0], &m[2], &m[3], &m[4]);
    let call_id = inv.headers().call_id().unwrap();
    for x in &m {
        assert_eq!(x.headers().call_id().unwrap(), call_id);
    }
    // F3: Bob's tag and Contact; F4: the ACK echoes the tags, CSeq 1 ACK, new branch.
    let bob_tag = ok.headers().to().unwrap().tag().unwrap().to_owned();
    assert_eq!(ack.headers().to().unwrap().tag(), Some(bob_tag.as_str()));
    assert_eq!(ack.headers().cseq().unwrap().seq, 1);
    assert_eq!(ack.headers().cseq().unwrap().method, Method::Ack);
    assert_ne!(
        ack.headers().top_via().unwrap().branch(),
        inv.headers().top_via().unwrap().branch()
    );
    // F5: Bob's BYE goes to Alice's Contact with the tags swapped and Bob's first CSeq.
    assert_eq!(bye.headers().from().unwrap().tag(), Some(bob_tag.as_str()));
    assert_eq!(
        bye.headers().to().unwrap().tag(),
        inv.headers().from().unwrap().tag()
    );
    assert_eq!(bye.headers().cseq().unwrap().seq, 1);
    // The 200 was acknowledged before its first retransmission: nothing resent.
    assert_eq!(s.a.layer.tx.stats().retransmitted, 0);
    assert_eq!(s.b.layer.tx.stats().retransmitted, 0);
    // Every transaction ended and both sides dropped the dialog.
    assert!(s.a.layer.tx.is_empty() && s.b.layer.tx.is_empty());
    assert!(
        s.a.tu
            .dialogs
            .iter()
            .all(|d| d.state() != vaxel_sip::dialog::DialogState::Confirmed)
    );
    assert!(
        s.b.tu
            .dialogs
            .iter()
            .all(|d| d.state() != vaxel_sip::dialog::DialogState::Confirmed)
    );
    let rec = s.a.tu.calls.values().next().unwrap();
    assert_eq!(rec.final_status, Some(200));
    assert!(rec.established.is_some());
}

#[test]
fn cancel_flow_inv_180_cancel_200_487_ack() {
    let mut s = sim(
        Answer::RingForever,
        |t0, ua| {
            ua.at(
                t0,
                Action::Call {
                    target: "sip:bob@biloxi.example.com".into(),
                    peer: bob_addr(),
                },
            )
            .at(t0 + Duration::from_secs(3), Action::Cancel)
        },
        None,
    );
    s.run_for(Duration::from_secs(120));
    assert_eq!(
        s.ladder(),
        [
            "Alice -> Bob: INVITE sip:bob@biloxi.example.com SIP/2.0",
            "Bob -> Alice: SIP/2.0 180 Ringing",
            "Alice -> Bob: CANCEL sip:bob@biloxi.example.com SIP/2.0",
            "Bob -> Alice: SIP/2.0 200 OK",
            "Bob -> Alice: SIP/2.0 487 Request Terminated",
            "Alice -> Bob: ACK sip:bob@biloxi.example.com SIP/2.0",
        ],
        "{}",
        s.render()
    );
    let m = messages(&s);
    let branch = |i: usize| {
        m[i].headers()
            .top_via()
            .unwrap()
            .branch()
            .map(str::to_owned)
    };
    // CANCEL and the failure ACK share the INVITE's branch (§9.1, §17.1.1.3).
    assert_eq!(branch(2), branch(0));
    assert_eq!(branch(5), branch(0));
    assert_eq!(m[3].headers().cseq().unwrap().method, Method::Cancel);
    assert_eq!(m[4].headers().cseq().unwrap().method, Method::Invite);
    // The 200 to CANCEL carries the tag of the 180 (§9.2).
    assert_eq!(
        m[3].headers().to().unwrap().tag(),
        m[1].headers().to().unwrap().tag()
    );
    assert_eq!(
        m[5].headers().to().unwrap().tag(),
        m[4].headers().to().unwrap().tag()
    );
    assert_eq!(
        m[5].headers().get(&HeaderName::Via).map(|v| v.to_string()),
        m[0].headers().get(&HeaderName::Via).map(|v| v.to_string())
    );
    assert!(s.a.layer.tx.is_empty() && s.b.layer.tx.is_empty());
    let rec = s.a.tu.calls.values().next().unwrap();
    assert_eq!(rec.final_status, Some(487));
    // The early dialog of the 180 ended with the 487 (§13.2.2.3).
    assert!(
        s.a.tu
            .dialogs
            .iter()
            .all(|d| d.state() == vaxel_sip::dialog::DialogState::Terminated)
    );
}

#[test]
fn slow_answer_gets_100_trying_from_the_layer() {
    // Bob's TU rings only after 2 s: the layer's 100 Trying at 200 ms stops
    // Alice's INVITE retransmissions (§17.2.1) before Timer A's first 500 ms.
    let a = Node {
        layer: Layer::new("Alice", alice_addr(), 1),
        tu: Ua::new("alice", "atlanta.example.com", Answer::RingForever),
    };
    let b = Node {
        layer: Layer::new("Bob", bob_addr(), 2),
        tu: SlowUa::default(),
    };
    let mut s = Sim::new(7, LinkConditions::default(), a, b);
    let t0 = s.clock.now();
    let tu = std::mem::replace(&mut s.a.tu, Ua::new("x", "x", Answer::RingForever));
    s.a.tu = tu.at(
        t0,
        Action::Call {
            target: "sip:bob@biloxi.example.com".into(),
            peer: bob_addr(),
        },
    );
    s.run_for(Duration::from_secs(5));
    assert_eq!(
        s.ladder(),
        [
            "Alice -> Bob: INVITE sip:bob@biloxi.example.com SIP/2.0",
            "Bob -> Alice: SIP/2.0 100 Trying",
            "Bob -> Alice: SIP/2.0 486 Busy Here",
            "Alice -> Bob: ACK sip:bob@biloxi.example.com SIP/2.0",
        ],
        "{}",
        s.render()
    );
    let trace = s.net.trace();
    assert_eq!(s.clock.offset_of(trace[1].at), Duration::from_millis(220));
}

/// A TU that answers every INVITE 486 two seconds late.
#[derive(Default)]
struct SlowUa {
    pending: Vec<(
        std::time::Instant,
        vaxel_sip::transaction::TxKey,
        vaxel_sip::msg::Request,
    )>,
}

impl transaction_support::sim::Tu for SlowUa {
    fn on_event(
        &mut self,
        now: std::time::Instant,
        _layer: &mut Layer,
        event: vaxel_sip::transaction::TxEvent,
    ) {
        if let vaxel_sip::transaction::TxEvent::Request { tx, request, .. } = event {
            self.pending
                .push((now + Duration::from_secs(2), tx, request));
        }
    }
    fn next_wake(&self) -> Option<std::time::Instant> {
        self.pending.iter().map(|p| p.0).min()
    }
    fn on_wake(&mut self, now: std::time::Instant, layer: &mut Layer) {
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|p| p.0 <= now)
            .cloned()
            .collect();
        self.pending.retain(|p| p.0 > now);
        for (_, tx, req) in due {
            let mut r =
                vaxel_sip::msg::Response::from_request(&req, vaxel_sip::msg::StatusCode::BUSY_HERE);
            r.set_to_tag("slow").unwrap();
            layer.tx.send_response(now, tx, r).unwrap();
        }
    }
}
