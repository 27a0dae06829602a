//! Server transactions (RFC 3261 §17.2, RFC 6026 §8.5–8.7) in virtual time:
//! Figures 7 and 8, matching (§17.2.3, RFC 2543 fallback), CANCEL (§9.2) and
//! response destinations (§18.2.2, RFC 3581).

mod transaction_support;

use std::time::{Duration, Instant};

use transaction_support::*;
use vaxel_sip::msg::{HeaderName, Message, Method, Request};
use vaxel_sip::transaction::{
    Peer, Timer, TimerConfig, Transactions, TransportKind, TxError, TxEvent, TxKey, TxKind, TxState,
};

fn layer() -> (Transactions, Instant) {
    (
        Transactions::new(TimerConfig::default()),
        vaxel_testkit::SimClock::new().now(),
    )
}

/// Feeds `req` from `from` and returns the key of the new server transaction.
fn receive(tx: &mut Transactions, now: Instant, req: &Request, from: Peer) -> (TxKey, Request) {
    tx.handle_message(now, req.clone().into(), from);
    match events(tx).as_slice() {
        [
            TxEvent::Request {
                tx,
                request,
                from: f,
            },
        ] => {
            assert_eq!(*f, from);
            (*tx, request.clone())
        }
        other => panic!("expected one Request event, got {other:?}"),
    }
}

fn offsets(tx: &mut Transactions, t0: Instant, until: Duration) -> Vec<(u64, String)> {
    let mut sent = Vec::new();
    while let Some(at) = tx.poll_timeout() {
        if at > t0 + until {
            break;
        }
        tx.handle_timeout(at);
        for l in lines(&transmits(tx)) {
            sent.push(((at - t0).as_millis() as u64, l));
        }
    }
    sent
}

#[test]
fn non_invite_server_trying_proceeding_completed_and_timer_j() {
    let (mut tx, t0) = layer();
    let opt = options("z9hG4bKs1");
    let (k, req) = receive(&mut tx, t0, &opt, udp(ALICE));
    assert_eq!(tx.kind(k), Some(TxKind::NonInviteServer));
    assert_eq!(tx.state(k), Some(TxState::Trying));
    // A retransmission in Trying is absorbed: nothing to resend yet.
    tx.handle_message(t0 + ms(500), opt.clone().into(), udp(ALICE));
    assert!(transmits(&mut tx).is_empty() && events(&mut tx).is_empty());
    tx.send_response(t0 + ms(600), k, response(&req, 100, ""))
        .unwrap();
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 100 Trying"]);
    tx.handle_message(t0 + ms(1_500), opt.clone().into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 100 Trying"]);
    tx.send_response(t0 + ms(2_000), k, response(&req, 200, "s1"))
        .unwrap();
    assert_eq!(tx.state(k), Some(TxState::Completed));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert_eq!(tx.timer(k, Timer::J), Some(t0 + ms(34_000)));
    tx.handle_message(t0 + ms(3_500), opt.into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert_eq!(
        tx.send_response(t0 + ms(3_600), k, response(&req, 500, "s1")),
        Err(TxError::InvalidState {
            op: "send_response",
            state: TxState::Completed
        })
    );
    tx.handle_timeout(t0 + ms(34_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
    assert_eq!(tx.stats().responses_resent, 2);
}

#[test]
fn non_invite_server_over_tcp_j_is_zero() {
    let (mut tx, t0) = layer();
    let r = request("BYE", "z9hG4bKs2", TransportKind::Tcp);
    let (k, req) = receive(&mut tx, t0, &r, tcp(ALICE));
    tx.send_response(t0, k, response(&req, 200, "x")).unwrap();
    assert_eq!(transmits(&mut tx)[0].peer, tcp(ALICE));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn invite_server_sends_100_trying_when_the_tu_is_slow() {
    let (mut tx, t0) = layer();
    let mut inv = invite("z9hG4bKs3");
    inv.headers.push(HeaderName::Timestamp, "54");
    let (k, _) = receive(&mut tx, t0, &inv, udp(ALICE));
    assert_eq!(tx.kind(k), Some(TxKind::InviteServer));
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    assert_eq!(tx.timer(k, Timer::Trying), Some(t0 + ms(200)));
    tx.handle_timeout(t0 + ms(199));
    assert!(transmits(&mut tx).is_empty());
    tx.handle_timeout(t0 + ms(200));
    let out = transmits(&mut tx);
    assert_eq!(lines(&out), ["SIP/2.0 100 Trying"]);
    let m = parse_bytes(&out[0].bytes);
    // §8.2.6.1: Timestamp copied; 100 carries no To tag.
    assert_eq!(header(&m, HeaderName::Timestamp).as_deref(), Some("54"));
    assert_eq!(m.headers().to().unwrap().tag(), None);
    // Retransmitted INVITE: the 100 again.
    tx.handle_message(t0 + ms(500), inv.into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 100 Trying"]);
}

#[test]
fn invite_server_stays_quiet_when_the_tu_answers_within_200ms() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKs4");
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    tx.send_response(t0 + ms(50), k, response(&req, 180, "b"))
        .unwrap();
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 180 Ringing"]);
    assert_eq!(tx.timer(k, Timer::Trying), None);
    assert_eq!(tx.poll_timeout(), None);
    // A retransmitted INVITE gets the last provisional (§17.2.1).
    tx.handle_message(t0 + ms(500), inv.into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 180 Ringing"]);
}

#[test]
fn invite_server_failure_timer_g_doubles_to_t2_and_timer_h_times_out() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKs5");
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    tx.send_response(t0, k, response(&req, 486, "b")).unwrap();
    transmits(&mut tx);
    assert_eq!(tx.state(k), Some(TxState::Completed));
    assert_eq!(tx.timer(k, Timer::H), Some(t0 + ms(32_000)));
    let sent = offsets(&mut tx, t0, Duration::from_secs(40));
    let at: Vec<u64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(
        at,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert!(sent.iter().all(|s| s.1 == "SIP/2.0 486 Busy Here"));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Timeout { tx: k }, TxEvent::Terminated { tx: k }]
    );
}

#[test]
fn invite_server_ack_confirms_and_timer_i_is_t4_on_udp() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKs6");
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    let busy = response(&req, 486, "b6");
    tx.send_response(t0, k, busy.clone()).unwrap();
    transmits(&mut tx);
    // Retransmitted INVITE in Completed: the 486 again.
    tx.handle_message(t0 + ms(100), inv.clone().into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 486 Busy Here"]);
    // The ACK the client transaction builds (§17.1.1.3) matches by branch.
    let mut ack = request("ACK", "z9hG4bKs6", TransportKind::Udp);
    ack.headers
        .set(HeaderName::To, "Bob <sip:bob@example.com>;tag=b6");
    tx.handle_message(t0 + ms(700), ack.clone().into(), udp(ALICE));
    assert_eq!(tx.state(k), Some(TxState::Confirmed));
    assert!(
        events(&mut tx).is_empty(),
        "the ACK for a failure stays in the layer"
    );
    assert_eq!(tx.timer(k, Timer::G), None);
    assert_eq!(tx.timer(k, Timer::H), None);
    assert_eq!(tx.timer(k, Timer::I), Some(t0 + ms(5_700)));
    // ACK retransmissions are absorbed in Confirmed.
    tx.handle_message(t0 + ms(800), ack.into(), udp(ALICE));
    assert!(events(&mut tx).is_empty() && transmits(&mut tx).is_empty());
    tx.handle_timeout(t0 + ms(5_700));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn invite_server_over_tcp_terminates_on_ack_and_never_retransmits() {
    let (mut tx, t0) = layer();
    let inv = request("INVITE", "z9hG4bKs7", TransportKind::Tcp);
    let (k, req) = receive(&mut tx, t0, &inv, tcp(ALICE));
    tx.send_response(t0, k, response(&req, 603, "b")).unwrap();
    assert_eq!(tx.timer(k, Timer::G), None);
    assert_eq!(tx.timer(k, Timer::H), Some(t0 + ms(32_000)));
    let ack = request("ACK", "z9hG4bKs7", TransportKind::Tcp);
    tx.handle_message(t0 + ms(10), ack.into(), tcp(ALICE));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn invite_server_2xx_goes_to_accepted_retransmits_until_the_ack_and_timer_l_ends_it() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKs8");
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    tx.send_response(t0, k, response(&req, 200, "b8")).unwrap();
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert_eq!(tx.state(k), Some(TxState::Accepted));
    assert_eq!(tx.timer(k, Timer::L), Some(t0 + ms(32_000)));
    // §13.3.1.4: the 2xx is retransmitted at T1, 2T1, 4T1 ... up to T2.
    let sent = offsets(&mut tx, t0, ms(8_000));
    let at: Vec<u64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(at, [500, 1_500, 3_500, 7_500]);
    // An INVITE retransmission in Accepted is absorbed (RFC 6026 §8.7).
    tx.handle_message(t0 + ms(8_000), inv.into(), udp(ALICE));
    assert!(transmits(&mut tx).is_empty() && events(&mut tx).is_empty());
    // The ACK for the 2xx has its own branch; it stops the retransmissions and
    // reaches the TU as a stray.
    let mut ack = request("ACK", "z9hG4bKnewbranch", TransportKind::Udp);
    ack.headers
        .set(HeaderName::To, "Bob <sip:bob@example.com>;tag=b8");
    tx.handle_message(t0 + ms(8_100), ack.into(), udp(ALICE));
    assert!(matches!(
        &events(&mut tx)[..],
        [TxEvent::Stray { message: Message::Request(r), .. }] if r.method == Method::Ack
    ));
    assert_eq!(tx.timer(k, Timer::Retransmit2xx), None);
    assert!(offsets(&mut tx, t0, ms(31_000)).is_empty());
    tx.handle_timeout(t0 + ms(32_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn an_unacknowledged_2xx_reports_a_timeout_at_64_t1() {
    let (mut tx, t0) = layer();
    let (k, req) = receive(&mut tx, t0, &invite("z9hG4bKs9"), udp(ALICE));
    tx.send_response(t0, k, response(&req, 200, "b9")).unwrap();
    transmits(&mut tx);
    let sent = offsets(&mut tx, t0, ms(40_000));
    // 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5 s.
    assert_eq!(sent.len(), 10);
    assert_eq!(
        events(&mut tx),
        [TxEvent::Timeout { tx: k }, TxEvent::Terminated { tx: k }]
    );
    // Responses other than 2xx are refused in Accepted; another 2xx is fine.
    let (k2, req2) = receive(&mut tx, t0, &invite("z9hG4bKs10"), udp(ALICE));
    tx.send_response(t0, k2, response(&req2, 200, "b")).unwrap();
    tx.send_response(t0, k2, response(&req2, 200, "b")).unwrap();
    assert!(matches!(
        tx.send_response(t0, k2, response(&req2, 180, "b")),
        Err(TxError::InvalidState { .. })
    ));
}

#[test]
fn cancel_is_answered_200_and_the_tu_answers_the_invite_487() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKc1");
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    tx.send_response(t0, k, response(&req, 180, "tagb"))
        .unwrap();
    transmits(&mut tx);
    let cancel = request("CANCEL", "z9hG4bKc1", TransportKind::Udp);
    tx.handle_message(t0 + ms(1_000), cancel.clone().into(), udp(ALICE));
    let out = transmits(&mut tx);
    assert_eq!(lines(&out), ["SIP/2.0 200 OK"]);
    let m = parse_bytes(&out[0].bytes);
    assert_eq!(m.headers().cseq().unwrap().method, Method::Cancel);
    // §9.2: the To tag of the INVITE's response.
    assert_eq!(m.headers().to().unwrap().tag(), Some("tagb"));
    match &events(&mut tx)[..] {
        [TxEvent::Cancelled { invite, request }] => {
            assert_eq!(*invite, k);
            assert_eq!(request.method, Method::Cancel);
        }
        other => panic!("{other:?}"),
    }
    // A retransmitted CANCEL gets the same 200 from its own transaction.
    tx.handle_message(t0 + ms(1_500), cancel.into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert!(events(&mut tx).is_empty());
    tx.send_response(t0 + ms(1_600), k, response(&req, 487, "tagb"))
        .unwrap();
    assert_eq!(
        lines(&transmits(&mut tx)),
        ["SIP/2.0 487 Request Terminated"]
    );
}

#[test]
fn cancel_without_a_transaction_is_answered_481() {
    let (mut tx, t0) = layer();
    let cancel = request("CANCEL", "z9hG4bKnone", TransportKind::Udp);
    tx.handle_message(t0, cancel.into(), udp(ALICE));
    assert_eq!(
        lines(&transmits(&mut tx)),
        ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
    assert!(events(&mut tx).is_empty());
    assert_eq!(tx.stats().cancels_unmatched, 1);
}

#[test]
fn cancel_after_the_final_response_is_answered_200_without_effect() {
    let (mut tx, t0) = layer();
    let (k, req) = receive(&mut tx, t0, &invite("z9hG4bKc2"), udp(ALICE));
    tx.send_response(t0, k, response(&req, 200, "b")).unwrap();
    transmits(&mut tx);
    tx.handle_message(
        t0 + ms(10),
        request("CANCEL", "z9hG4bKc2", TransportKind::Udp).into(),
        udp(ALICE),
    );
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert!(events(&mut tx).is_empty());
}

#[test]
fn matching_uses_branch_sent_by_and_method() {
    let (mut tx, t0) = layer();
    let (k, _) = receive(&mut tx, t0, &options("z9hG4bKm1"), udp(ALICE));
    // Same branch, other sent-by: a different transaction (§17.2.3).
    let mut other = options("z9hG4bKm1");
    other.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKm1",
    );
    let (k2, _) = receive(&mut tx, t0, &other, udp("192.0.2.99:5060"));
    assert_ne!(k, k2);
    // Same branch and sent-by, other method: a different transaction too.
    let (k3, _) = receive(
        &mut tx,
        t0,
        &request("INFO", "z9hG4bKm1", TransportKind::Udp),
        udp(ALICE),
    );
    assert_ne!(k3, k);
    // The port defaults to 5060 when absent: same sent-by as ":5060".
    let mut noport = options("z9hG4bKm1");
    noport
        .headers
        .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKm1");
    tx.handle_message(t0, noport.into(), udp(ALICE));
    assert!(events(&mut tx).is_empty(), "a retransmission of the first");
}

fn rfc2543_request(method: &str, cseq: u32, to_tag: Option<&str>) -> Request {
    let to = match to_tag {
        Some(t) => format!("<sip:bob@example.com>;tag={t}"),
        None => "<sip:bob@example.com>".to_owned(),
    };
    let Message::Request(r) = parse(&format!(
        "{method} sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060
To: {to}
From: <sip:alice@example.com>;tag=old
Call-ID: 2543@192.0.2.10
CSeq: {cseq} {method}

"
    )) else {
        unreachable!()
    };
    r
}

#[test]
fn rfc2543_requests_match_without_a_branch() {
    let (mut tx, t0) = layer();
    let inv = rfc2543_request("INVITE", 5, None);
    let (k, req) = receive(&mut tx, t0, &inv, udp(ALICE));
    tx.send_response(t0, k, response(&req, 404, "t404"))
        .unwrap();
    transmits(&mut tx);
    // Retransmission: same Request-URI, tags, Call-ID, CSeq and top Via.
    tx.handle_message(t0 + ms(100), inv.clone().into(), udp(ALICE));
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 404 Not Found"]);
    // Another CSeq is another transaction.
    let (k2, _) = receive(&mut tx, t0, &rfc2543_request("INVITE", 6, None), udp(ALICE));
    assert_ne!(k, k2);
    // CANCEL matches the INVITE by the same fields (§9.2).
    tx.handle_message(
        t0 + ms(150),
        rfc2543_request("CANCEL", 6, None).into(),
        udp(ALICE),
    );
    assert_eq!(lines(&transmits(&mut tx)), ["SIP/2.0 200 OK"]);
    assert!(matches!(&events(&mut tx)[..], [TxEvent::Cancelled { invite, .. }] if *invite == k2));
    // ACK matches with the To tag of the response (§17.2.3).
    tx.handle_message(
        t0 + ms(200),
        rfc2543_request("ACK", 5, Some("t404")).into(),
        udp(ALICE),
    );
    assert_eq!(tx.state(k), Some(TxState::Confirmed));
    assert!(events(&mut tx).is_empty());
}

#[test]
fn received_and_rport_are_stamped_and_responses_follow_18_2_2() {
    let (mut tx, t0) = layer();
    // sent-by is a name and rport is asked for: received + rport (RFC 3581 §4),
    // and the response goes to the source address and port.
    let mut r = options("z9hG4bKd1");
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP alice.example.com:5070;branch=z9hG4bKd1;rport",
    );
    let from = udp("198.51.100.7:40000");
    let (k, req) = receive(&mut tx, t0, &r, from);
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.params.get("received"), Some("198.51.100.7"));
    assert_eq!(via.rport(), Some(40000));
    assert_eq!(tx.peer(k), Some(from));
    tx.send_response(t0, k, response(&req, 200, "x")).unwrap();
    let out = transmits(&mut tx);
    assert_eq!(out[0].peer, from);
    let m = parse_bytes(&out[0].bytes);
    assert_eq!(m.headers().top_via().unwrap().rport(), Some(40000));

    // No rport: received + the sent-by port.
    let mut r = options("z9hG4bKd2");
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP alice.example.com:5070;branch=z9hG4bKd2",
    );
    let (k, _) = receive(&mut tx, t0, &r, udp("198.51.100.7:40000"));
    assert_eq!(tx.peer(k), Some(udp("198.51.100.7:5070")));

    // sent-by is the source address: no received, sent-by port (default 5060).
    let mut r = options("z9hG4bKd3");
    r.headers
        .set(HeaderName::Via, "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKd3");
    let (k, req) = receive(&mut tx, t0, &r, udp("198.51.100.7:40001"));
    assert!(req.headers.top_via().unwrap().received().is_none());
    assert_eq!(tx.peer(k), Some(udp("198.51.100.7:5060")));

    // maddr wins on unreliable transports.
    let mut r = options("z9hG4bKd4");
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKd4;maddr=239.255.255.1;ttl=1",
    );
    let (k, _) = receive(&mut tx, t0, &r, udp("198.51.100.7:5062"));
    assert_eq!(tx.peer(k), Some(udp("239.255.255.1:5062")));

    // Reliable: back where it came from, whatever the Via says.
    let mut r = request("OPTIONS", "z9hG4bKd5", TransportKind::Tls);
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/TLS alice.example.com;branch=z9hG4bKd5",
    );
    let from = peer(TransportKind::Tls, "198.51.100.7:51000");
    let (k, _) = receive(&mut tx, t0, &r, from);
    assert_eq!(tx.peer(k), Some(from));

    // Several Via values: only the top one changes and the order is kept.
    let mut r = options("z9hG4bKd6");
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKd6",
    );
    r.headers
        .push(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKorig");
    let (_, req) = receive(&mut tx, t0, &r, udp("203.0.113.5:5060"));
    let vias = req.headers.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].params.get("received"), Some("203.0.113.5"));
    assert_eq!(vias[1].branch(), Some("z9hG4bKorig"));
}

#[test]
fn transport_error_on_the_response_path_ends_the_server_transaction() {
    let (mut tx, t0) = layer();
    let (k, req) = receive(
        &mut tx,
        t0,
        &request("INVITE", "z9hG4bKx1", TransportKind::Tcp),
        tcp(ALICE),
    );
    tx.send_response(t0, k, response(&req, 180, "t")).unwrap();
    tx.handle_transport_error(t0 + ms(1), tcp(ALICE));
    assert_eq!(
        events(&mut tx),
        [
            TxEvent::TransportError { tx: k },
            TxEvent::Terminated { tx: k }
        ]
    );
    assert_eq!(
        tx.send_response(t0 + ms(2), k, response(&req, 200, "t")),
        Err(TxError::UnknownTransaction(k))
    );
}

#[test]
fn unreadable_requests_are_dropped_and_counted() {
    let (mut tx, t0) = layer();
    let mut r = options("z9hG4bKbad");
    r.headers.remove(&HeaderName::CSeq);
    tx.handle_message(t0, r.into(), udp(ALICE));
    let mut r = options("z9hG4bKbad");
    r.headers.remove(&HeaderName::Via);
    tx.handle_message(t0, r.into(), udp(ALICE));
    assert!(events(&mut tx).is_empty() && transmits(&mut tx).is_empty());
    assert_eq!(tx.stats().malformed_dropped, 2);
}

#[test]
fn a_request_the_driver_already_stamped_is_left_as_it_is() {
    let (mut tx, t0) = layer();
    let mut r = options("z9hG4bKst");
    r.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP alice.example.com:5070;branch=z9hG4bKst;rport=40000;received=198.51.100.7",
    );
    r.headers
        .push(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKorig");
    let before: Vec<String> = r
        .headers
        .get_all(&HeaderName::Via)
        .map(|v| v.to_string())
        .collect();
    let from = udp("198.51.100.7:40000");
    let (k, req) = receive(&mut tx, t0, &r, from);
    let after: Vec<String> = req
        .headers
        .get_all(&HeaderName::Via)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(before, after);
    assert_eq!(tx.peer(k), Some(from));
}
