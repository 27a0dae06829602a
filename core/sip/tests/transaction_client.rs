//! Client transactions (RFC 3261 §17.1, RFC 6026 §8.4) in virtual time: every
//! transition of Figures 5 and 6 and every timer at its exact instant.

mod transaction_support;

use std::time::{Duration, Instant};

use transaction_support::*;
use vaxel_sip::msg::{HeaderName, Message, Method};
use vaxel_sip::transaction::{
    Timer, TimerConfig, Transactions, TransportKind, TxError, TxEvent, TxKind, TxState,
};

fn layer() -> (Transactions, Instant) {
    (
        Transactions::new(TimerConfig::default()),
        vaxel_testkit::SimClock::new().now(),
    )
}

/// Fires timers up to `until`, returning (offset from `t0`, first line) of each transmit.
fn run_until(tx: &mut Transactions, t0: Instant, until: Duration) -> Vec<(Duration, String)> {
    let mut sent = Vec::new();
    while let Some(at) = tx.poll_timeout() {
        if at > t0 + until {
            break;
        }
        tx.handle_timeout(at);
        for l in lines(&transmits(tx)) {
            sent.push((at - t0, l));
        }
    }
    sent
}

#[test]
fn invite_timer_a_doubles_without_cap_and_timer_b_times_out_at_64_t1() {
    let (mut tx, t0) = layer();
    let k = tx.send_request(t0, invite("z9hG4bKa1"), udp(BOB)).unwrap();
    assert_eq!(
        lines(&transmits(&mut tx)),
        ["INVITE sip:bob@192.0.2.20 SIP/2.0"]
    );
    assert_eq!(tx.state(k), Some(TxState::Calling));
    assert_eq!(tx.kind(k), Some(TxKind::InviteClient));
    assert_eq!(tx.timer(k, Timer::A), Some(t0 + ms(500)));
    assert_eq!(tx.timer(k, Timer::B), Some(t0 + ms(32_000)));
    let sent = run_until(&mut tx, t0, Duration::from_secs(40));
    let at: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: intervals 0.5, 1, 2, 4, 8, 16 (§17.1.1.2).
    assert_eq!(at, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    let ev = events(&mut tx);
    assert_eq!(
        ev,
        [TxEvent::Timeout { tx: k }, TxEvent::Terminated { tx: k }]
    );
    assert!(tx.is_empty() && tx.poll_timeout().is_none());
    assert_eq!(tx.stats().timeouts, 1);
}

#[test]
fn invite_over_tcp_has_no_timer_a() {
    let (mut tx, t0) = layer();
    let r = request("INVITE", "z9hG4bKt1", TransportKind::Tcp);
    let k = tx.send_request(t0, r, tcp(BOB)).unwrap();
    assert_eq!(transmits(&mut tx).len(), 1);
    assert_eq!(tx.timer(k, Timer::A), None);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
    let sent = run_until(&mut tx, t0, Duration::from_secs(40));
    assert!(sent.is_empty(), "no retransmission over TCP");
    assert_eq!(events(&mut tx)[0], TxEvent::Timeout { tx: k });
}

#[test]
fn invite_provisional_stops_retransmissions_and_timer_b() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKa2");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    tx.handle_message(t0 + ms(100), response(&inv, 180, "b1").into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    assert_eq!(status_of(&events(&mut tx)[0]), Some(180));
    // Figure 5: Proceeding has no timer; the INVITE waits for the TU.
    assert_eq!(tx.poll_timeout(), None);
    tx.handle_message(t0 + ms(200), response(&inv, 183, "b1").into(), udp(BOB));
    assert_eq!(status_of(&events(&mut tx)[0]), Some(183));
    assert!(transmits(&mut tx).is_empty());
}

#[test]
fn invite_failure_is_acked_by_the_transaction_and_timer_d_is_32s_on_udp() {
    let (mut tx, t0) = layer();
    let mut inv = invite("z9hG4bKa3");
    inv.headers
        .push(HeaderName::Route, "<sip:p1.example.com;lr>");
    inv.headers
        .push(HeaderName::Route, "<sip:p2.example.com;lr>");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    let busy = response(&inv, 486, "b2");
    tx.handle_message(t0 + ms(300), busy.clone().into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Completed));
    assert_eq!(status_of(&events(&mut tx)[0]), Some(486));
    let ack = transmits(&mut tx);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].peer, udp(BOB));
    let Message::Request(ack) = parse_bytes(&ack[0].bytes) else {
        panic!()
    };
    // §17.1.1.3: same Request-URI, branch, From, Call-ID, CSeq number; To of the
    // response; the Route headers of the INVITE.
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKa3"));
    assert_eq!(ack.headers.count(&HeaderName::Via), 1);
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b2"));
    assert_eq!(ack.headers.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(ack.headers.cseq().unwrap().seq, 1);
    assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.headers.routes().unwrap().len(), 2);
    assert_eq!(tx.timer(k, Timer::D), Some(t0 + ms(300) + ms(32_000)));
    // A retransmitted 486 is absorbed and ACKed again.
    tx.handle_message(t0 + ms(900), busy.into(), udp(BOB));
    assert!(events(&mut tx).is_empty());
    assert_eq!(
        lines(&transmits(&mut tx)),
        ["ACK sip:bob@192.0.2.20 SIP/2.0"]
    );
    tx.handle_timeout(t0 + ms(32_299));
    assert_eq!(tx.state(k), Some(TxState::Completed));
    tx.handle_timeout(t0 + ms(32_300));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn invite_failure_over_tcp_terminates_at_once() {
    let (mut tx, t0) = layer();
    let inv = request("INVITE", "z9hG4bKa4", TransportKind::Tcp);
    let k = tx.send_request(t0, inv.clone(), tcp(BOB)).unwrap();
    transmits(&mut tx);
    tx.handle_message(t0, response(&inv, 404, "x").into(), tcp(BOB));
    assert_eq!(
        lines(&transmits(&mut tx))[0],
        "ACK sip:bob@192.0.2.20 SIP/2.0"
    );
    let ev = events(&mut tx);
    assert_eq!(status_of(&ev[0]), Some(404));
    assert_eq!(ev[1], TxEvent::Terminated { tx: k });
}

#[test]
fn invite_2xx_enters_accepted_passes_retransmissions_up_and_timer_m_ends_it() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKa5");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    let ok = response(&inv, 200, "b5");
    tx.handle_message(t0 + ms(50), ok.clone().into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Accepted));
    // The 2xx ACK is the TU's (§13.2.2.4): nothing sent by the transaction.
    assert!(transmits(&mut tx).is_empty());
    assert_eq!(status_of(&events(&mut tx)[0]), Some(200));
    assert_eq!(tx.timer(k, Timer::M), Some(t0 + ms(50) + ms(32_000)));
    // A retransmission and a forked 2xx both reach the TU (RFC 6026 §8.4).
    tx.handle_message(t0 + ms(550), ok.into(), udp(BOB));
    tx.handle_message(
        t0 + ms(600),
        response(&inv, 200, "other-fork").into(),
        udp(BOB),
    );
    let ev = events(&mut tx);
    assert_eq!(ev.len(), 2);
    // A late 180 or 486 in Accepted is absorbed.
    tx.handle_message(t0 + ms(700), response(&inv, 180, "b5").into(), udp(BOB));
    assert!(events(&mut tx).is_empty());
    tx.handle_timeout(t0 + ms(32_050));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
    // After the transaction, a 2xx is a stray the TU must still ACK (§13.2.2.4).
    tx.handle_message(t0 + ms(33_000), response(&inv, 200, "b5").into(), udp(BOB));
    assert!(matches!(
        &events(&mut tx)[..],
        [TxEvent::Stray {
            message: Message::Response(_),
            ..
        }]
    ));
    // But other strays are dropped (§17.1.3).
    tx.handle_message(t0 + ms(33_000), response(&inv, 486, "b5").into(), udp(BOB));
    assert!(events(&mut tx).is_empty());
    assert_eq!(tx.stats().strays_dropped, 1);
}

#[test]
fn non_invite_timer_e_doubles_to_t2_and_timer_f_times_out_at_64_t1() {
    let (mut tx, t0) = layer();
    let k = tx.send_request(t0, options("z9hG4bKn1"), udp(BOB)).unwrap();
    assert_eq!(transmits(&mut tx).len(), 1);
    assert_eq!(tx.kind(k), Some(TxKind::NonInviteClient));
    assert_eq!(tx.state(k), Some(TxState::Trying));
    let sent = run_until(&mut tx, t0, Duration::from_secs(40));
    let at: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // Intervals 0.5, 1, 2, 4, 4, ...: 10 retransmissions before F at 32 s (§17.1.2.2).
    assert_eq!(
        at,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(
        events(&mut tx),
        [TxEvent::Timeout { tx: k }, TxEvent::Terminated { tx: k }]
    );
}

#[test]
fn non_invite_proceeding_retransmits_every_t2() {
    let (mut tx, t0) = layer();
    let opt = options("z9hG4bKn2");
    let k = tx.send_request(t0, opt.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    tx.handle_timeout(t0 + ms(500)); // first retransmission, E now 1 s
    transmits(&mut tx);
    tx.handle_message(t0 + ms(600), response(&opt, 100, "").into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    assert_eq!(status_of(&events(&mut tx)[0]), Some(100));
    // E was armed for 1.5 s; from then on it is T2 (Figure 6).
    let sent = run_until(&mut tx, t0, Duration::from_secs(12));
    let at: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    assert_eq!(at, [1_500, 5_500, 9_500]);
    tx.handle_message(t0 + ms(12_000), response(&opt, 200, "x").into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Completed));
    assert_eq!(tx.timer(k, Timer::K), Some(t0 + ms(17_000)));
    assert_eq!(tx.timer(k, Timer::E), None);
    assert_eq!(tx.timer(k, Timer::F), None);
    // Retransmitted finals are absorbed in Completed.
    events(&mut tx);
    tx.handle_message(t0 + ms(12_100), response(&opt, 200, "x").into(), udp(BOB));
    assert!(events(&mut tx).is_empty());
    tx.handle_timeout(t0 + ms(17_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { tx: k }]);
}

#[test]
fn non_invite_over_tcp_has_no_timer_e_and_k_is_zero() {
    let (mut tx, t0) = layer();
    let r = request("REGISTER", "z9hG4bKn3", TransportKind::Tcp);
    let k = tx.send_request(t0, r.clone(), tcp(BOB)).unwrap();
    assert_eq!(tx.timer(k, Timer::E), None);
    assert_eq!(tx.timer(k, Timer::F), Some(t0 + ms(32_000)));
    tx.handle_message(t0 + ms(10), response(&r, 200, "x").into(), tcp(BOB));
    let ev = events(&mut tx);
    assert_eq!(status_of(&ev[0]), Some(200));
    assert_eq!(ev[1], TxEvent::Terminated { tx: k });
    assert!(tx.is_empty());
}

#[test]
fn configurable_t1_and_t2_scale_every_timer() {
    let cfg = TimerConfig {
        t1: ms(100),
        t2: ms(400),
        t4: ms(1_000),
    };
    let mut tx = Transactions::new(cfg);
    let t0 = vaxel_testkit::SimClock::new().now();
    let k = tx.send_request(t0, options("z9hG4bKc1"), udp(BOB)).unwrap();
    transmits(&mut tx);
    assert_eq!(tx.timer(k, Timer::F), Some(t0 + ms(6_400)));
    let sent = run_until(&mut tx, t0, Duration::from_secs(7));
    let at: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    assert_eq!(&at[..5], [100, 300, 700, 1_100, 1_500]);
    assert_eq!(events(&mut tx)[0], TxEvent::Timeout { tx: k });
}

#[test]
fn request_misuse_is_a_typed_error() {
    let (mut tx, t0) = layer();
    assert!(matches!(
        tx.send_request(t0, invite("nocookie"), udp(BOB)),
        Err(TxError::InvalidRequest(_))
    ));
    assert!(matches!(
        tx.send_request(t0, request("ACK", "z9hG4bKx", TransportKind::Udp), udp(BOB)),
        Err(TxError::InvalidRequest(_))
    ));
    let k = tx.send_request(t0, invite("z9hG4bKdup"), udp(BOB)).unwrap();
    assert_eq!(
        tx.send_request(t0, invite("z9hG4bKdup"), udp(BOB)),
        Err(TxError::DuplicateBranch)
    );
    assert!(matches!(
        tx.send_response(t0, k, response(&invite("z9hG4bKdup"), 200, "x")),
        Err(TxError::WrongKind { .. })
    ));
    let opt = tx.send_request(t0, options("z9hG4bKo"), udp(BOB)).unwrap();
    assert!(matches!(tx.cancel(t0, opt), Err(TxError::WrongKind { .. })));
}

// ----------------------------------------------------------------------
// CANCEL (§9.1)

#[test]
fn cancel_waits_for_a_provisional_then_goes_to_the_same_peer_with_the_same_branch() {
    let (mut tx, t0) = layer();
    let mut inv = invite("z9hG4bKc2");
    inv.headers
        .push(HeaderName::Route, "<sip:p1.example.com;lr>");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    let c = tx.cancel(t0 + ms(100), k).unwrap();
    assert_eq!(tx.cancel(t0 + ms(100), k), Ok(c), "idempotent");
    assert!(
        transmits(&mut tx).is_empty(),
        "no CANCEL before a provisional"
    );
    tx.handle_message(t0 + ms(200), response(&inv, 180, "b").into(), udp(BOB));
    let out = transmits(&mut tx);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, udp(BOB));
    let Message::Request(cancel) = parse_bytes(&out[0].bytes) else {
        panic!()
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        Some("z9hG4bKc2")
    );
    assert_eq!(cancel.headers.cseq().unwrap().seq, 1);
    assert_eq!(cancel.headers.cseq().unwrap().method, Method::Cancel);
    assert_eq!(cancel.headers.to().unwrap().tag(), None);
    assert_eq!(cancel.headers.routes().unwrap().len(), 1);
    // The CANCEL is its own non-INVITE transaction: Timer E from its sending.
    assert_eq!(tx.timer(c, Timer::E), Some(t0 + ms(700)));
    // §9.1: and the INVITE gives up 64·T1 after the CANCEL if no final arrives.
    assert_eq!(tx.timer(k, Timer::B), Some(t0 + ms(200) + ms(32_000)));
    tx.handle_message(t0 + ms(300), response(&cancel, 200, "b").into(), udp(BOB));
    tx.handle_message(t0 + ms(310), response(&inv, 487, "b").into(), udp(BOB));
    let ev = events(&mut tx);
    let statuses: Vec<_> = ev.iter().filter_map(status_of).collect();
    assert_eq!(statuses, [180, 200, 487]);
    assert_eq!(tx.state(k), Some(TxState::Completed));
    assert_eq!(
        lines(&transmits(&mut tx)),
        ["ACK sip:bob@192.0.2.20 SIP/2.0"]
    );
}

#[test]
fn cancel_is_never_sent_when_a_final_response_comes_first() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKc3");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    transmits(&mut tx);
    let c = tx.cancel(t0, k).unwrap();
    tx.handle_message(t0 + ms(100), response(&inv, 200, "b").into(), udp(BOB));
    assert!(transmits(&mut tx).is_empty());
    let ev = events(&mut tx);
    assert!(ev.contains(&TxEvent::Terminated { tx: c }));
    assert_eq!(tx.state(c), None);
    assert!(matches!(
        tx.cancel(t0, k),
        Err(TxError::InvalidState {
            state: TxState::Accepted,
            ..
        })
    ));
}

#[test]
fn cancel_with_no_final_response_times_the_invite_out_64_t1_later() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKc4");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    tx.handle_message(t0 + ms(100), response(&inv, 180, "b").into(), udp(BOB));
    let c = tx.cancel(t0 + ms(10_000), k).unwrap();
    let out = transmits(&mut tx);
    assert_eq!(lines(&out)[1], "CANCEL sip:bob@192.0.2.20 SIP/2.0");
    events(&mut tx);
    tx.handle_timeout(t0 + ms(41_999));
    assert!(!events(&mut tx).contains(&TxEvent::Timeout { tx: k }));
    tx.handle_timeout(t0 + ms(42_000));
    let ev = events(&mut tx);
    assert!(ev.contains(&TxEvent::Timeout { tx: k }));
    assert!(ev.contains(&TxEvent::Timeout { tx: c }));
}

#[test]
fn transport_error_ends_every_transaction_to_that_peer() {
    let (mut tx, t0) = layer();
    let a = tx
        .send_request(
            t0,
            request("INVITE", "z9hG4bKe1", TransportKind::Tcp),
            tcp(BOB),
        )
        .unwrap();
    let b = tx
        .send_request(
            t0,
            request("OPTIONS", "z9hG4bKe2", TransportKind::Tcp),
            tcp(BOB),
        )
        .unwrap();
    let other = tx
        .send_request(t0, options("z9hG4bKe3"), udp(ALICE))
        .unwrap();
    tx.handle_transport_error(t0 + ms(5), tcp(BOB));
    assert_eq!(
        events(&mut tx),
        [
            TxEvent::TransportError { tx: a },
            TxEvent::Terminated { tx: a },
            TxEvent::TransportError { tx: b },
            TxEvent::Terminated { tx: b },
        ]
    );
    assert_eq!(tx.state(other), Some(TxState::Trying));
}

#[test]
fn responses_match_on_branch_and_cseq_method() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKm1");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    // Same branch, other method: not this transaction (§17.1.3).
    let mut wrong = response(&inv, 200, "b");
    wrong.headers.set(HeaderName::CSeq, "1 OPTIONS");
    tx.handle_message(t0, wrong.into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Calling));
    // Other branch: not this transaction.
    let mut wrong = response(&inv, 180, "b");
    wrong.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKm2",
    );
    tx.handle_message(t0, wrong.into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Calling));
    assert_eq!(tx.stats().strays_dropped, 2);
}

#[test]
fn non_invite_proceeding_still_times_out_on_timer_f() {
    let (mut tx, t0) = layer();
    let opt = options("z9hG4bKf1");
    let k = tx.send_request(t0, opt.clone(), udp(BOB)).unwrap();
    tx.handle_message(t0 + ms(100), response(&opt, 100, "").into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    events(&mut tx);
    tx.handle_timeout(t0 + ms(31_999));
    assert_eq!(tx.state(k), Some(TxState::Proceeding));
    tx.handle_timeout(t0 + ms(32_000));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Timeout { tx: k }, TxEvent::Terminated { tx: k }]
    );
}

#[test]
fn invite_proceeding_to_accepted_on_2xx() {
    let (mut tx, t0) = layer();
    let inv = invite("z9hG4bKpa");
    let k = tx.send_request(t0, inv.clone(), udp(BOB)).unwrap();
    tx.handle_message(t0 + ms(10), response(&inv, 183, "x").into(), udp(BOB));
    tx.handle_message(t0 + ms(20), response(&inv, 200, "x").into(), udp(BOB));
    assert_eq!(tx.state(k), Some(TxState::Accepted));
    assert_eq!(tx.timer(k, Timer::M), Some(t0 + ms(32_020)));
    let st: Vec<_> = events(&mut tx).iter().filter_map(status_of).collect();
    assert_eq!(st, [183, 200]);
}

#[test]
fn transport_kinds_map_to_via_tokens_and_default_ports() {
    for k in [
        TransportKind::Udp,
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Ws,
        TransportKind::Wss,
    ] {
        assert_eq!(TransportKind::from_via_token(k.via_token()), Some(k));
        assert_eq!(
            TransportKind::from_via_token(&k.via_token().to_lowercase()),
            Some(k)
        );
        assert_eq!(TransportKind::from_transport(&k.to_transport()), Some(k));
        assert_eq!(k.is_reliable(), k != TransportKind::Udp);
    }
    assert_eq!(TransportKind::from_via_token("SCTP"), None);
    assert_eq!(TransportKind::Tls.default_port(), 5061);
    assert_eq!(TransportKind::Udp.default_port(), 5060);
}
