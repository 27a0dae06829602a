//! Property tests of the transaction timer rules (RFC 3261 §17) for any
//! T1/T2/T4, and random operation sequences that must never panic and must
//! always let every transaction terminate.

mod transaction_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use transaction_support::*;
use vaxel_sip::msg::{HeaderName, Method, Request};
use vaxel_sip::transaction::{
    Timer, TimerConfig, Transactions, TransportKind, TxEvent, TxKey, TxKind, TxState,
};

fn config() -> impl Strategy<Value = TimerConfig> {
    (1u64..=1_000, 1u64..=16, 1u64..=10_000).prop_map(|(t1, k, t4)| TimerConfig {
        t1: ms(t1),
        t2: ms(t1 * k).max(ms(t1)),
        t4: ms(t4),
    })
}

/// Drives only timers until nothing is armed; returns the transmission
/// offsets and the events with their offsets.
fn drive(tx: &mut Transactions, t0: Instant) -> (Vec<Duration>, Vec<(Duration, TxEvent)>) {
    let mut sent: Vec<Duration> = transmits(tx).iter().map(|_| Duration::ZERO).collect();
    let mut ev = Vec::new();
    let mut guard = 0;
    while let Some(at) = tx.poll_timeout() {
        guard += 1;
        assert!(guard < 10_000, "timers never stop");
        tx.handle_timeout(at);
        sent.extend(transmits(tx).iter().map(|_| at - t0));
        ev.extend(events(tx).into_iter().map(|e| (at - t0, e)));
    }
    (sent, ev)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Timer E: T1, doubling, never above T2; Timer F ends it at 64·T1 (§17.1.2.2).
    #[test]
    fn non_invite_retransmissions_never_exceed_t2(cfg in config()) {
        let mut tx = Transactions::new(cfg);
        let t0 = vaxel_testkit::SimClock::new().now();
        let k = tx.send_request(t0, options("z9hG4bKp1"), udp(BOB)).unwrap();
        let (sent, ev) = drive(&mut tx, t0);
        prop_assert_eq!(sent[0], Duration::ZERO);
        prop_assert_eq!(sent[1], cfg.t1);
        for w in sent.windows(2) {
            prop_assert!(w[1] - w[0] <= cfg.t2);
        }
        for w in sent.windows(3) {
            let (a, b) = (w[1] - w[0], w[2] - w[1]);
            prop_assert!(b == (a * 2).min(cfg.t2), "{:?} then {:?}", a, b);
        }
        prop_assert!(*sent.last().unwrap() < cfg.t1 * 64);
        prop_assert_eq!(
            ev,
            vec![(cfg.t1 * 64, TxEvent::Timeout { tx: k }), (cfg.t1 * 64, TxEvent::Terminated { tx: k })]
        );
        prop_assert!(tx.is_empty());
    }

    /// Timer A: T1 doubling without cap; Timer B ends it at 64·T1 (§17.1.1.2).
    #[test]
    fn invite_retransmissions_double(cfg in config()) {
        let mut tx = Transactions::new(cfg);
        let t0 = vaxel_testkit::SimClock::new().now();
        let k = tx.send_request(t0, invite("z9hG4bKp2"), udp(BOB)).unwrap();
        let (sent, ev) = drive(&mut tx, t0);
        prop_assert_eq!(sent.len(), 7, "0, 1, 3, 7, 15, 31, 63 T1");
        prop_assert_eq!(sent[1], cfg.t1);
        for w in sent.windows(3) {
            prop_assert_eq!(w[2] - w[1], (w[1] - w[0]) * 2);
        }
        prop_assert_eq!(ev.last().unwrap(), &(cfg.t1 * 64, TxEvent::Terminated { tx: k }));
    }

    /// Timer G: the INVITE server's failure response, T1 doubling up to T2,
    /// Timer H at 64·T1 (§17.2.1); and the same pattern for the 2xx (§13.3.1.4).
    #[test]
    fn invite_server_response_retransmissions_never_exceed_t2(cfg in config(), ok in any::<bool>()) {
        let mut tx = Transactions::new(cfg);
        let t0 = vaxel_testkit::SimClock::new().now();
        tx.handle_message(t0, invite("z9hG4bKp3").into(), udp(ALICE));
        let Some(TxEvent::Request { tx: k, request, .. }) = tx.poll_event() else { panic!() };
        tx.send_response(t0, k, response(&request, if ok { 200 } else { 486 }, "t")).unwrap();
        let (sent, ev) = drive(&mut tx, t0);
        for w in sent.windows(2) {
            prop_assert!(w[1] - w[0] <= cfg.t2);
        }
        prop_assert_eq!(sent[1], cfg.t1);
        prop_assert_eq!(
            ev,
            vec![(cfg.t1 * 64, TxEvent::Timeout { tx: k }), (cfg.t1 * 64, TxEvent::Terminated { tx: k })]
        );
    }

    /// Timers D, I, J, K: zero on reliable transports, their RFC values on UDP.
    #[test]
    fn wait_timers_follow_the_transport(cfg in config(), reliable in any::<bool>()) {
        let (t, p) = if reliable { (TransportKind::Tcp, tcp(BOB)) } else { (TransportKind::Udp, udp(BOB)) };
        let t0 = vaxel_testkit::SimClock::new().now();
        // K: non-INVITE client.
        let mut tx = Transactions::new(cfg);
        let r = request("OPTIONS", "z9hG4bKk", t);
        let k = tx.send_request(t0, r.clone(), p).unwrap();
        tx.handle_message(t0, response(&r, 200, "x").into(), p);
        prop_assert_eq!(tx.timer(k, Timer::K), (!reliable).then_some(t0 + cfg.t4));
        // D: INVITE client after a failure, ≥ 32 s and ≥ 64·T1 on UDP.
        let r = request("INVITE", "z9hG4bKd", t);
        let k = tx.send_request(t0, r.clone(), p).unwrap();
        tx.handle_message(t0, response(&r, 404, "x").into(), p);
        let d = Duration::from_secs(32).max(cfg.t1 * 64);
        prop_assert_eq!(tx.timer(k, Timer::D), (!reliable).then_some(t0 + d));
        // J: non-INVITE server.
        let r = request("OPTIONS", "z9hG4bKj", t);
        tx.handle_message(t0, r.into(), p);
        let Some(TxEvent::Request { tx: k, request: req, .. }) = events(&mut tx).into_iter().find(|e| matches!(e, TxEvent::Request { .. })) else { panic!() };
        tx.send_response(t0, k, response(&req, 200, "x")).unwrap();
        prop_assert_eq!(tx.timer(k, Timer::J), (!reliable).then_some(t0 + cfg.t1 * 64));
        // I: INVITE server after the ACK.
        let r = request("INVITE", "z9hG4bKi", t);
        tx.handle_message(t0, r.into(), p);
        let Some(TxEvent::Request { tx: k, request: req, .. }) = events(&mut tx).into_iter().find(|e| matches!(e, TxEvent::Request { .. })) else { panic!() };
        tx.send_response(t0, k, response(&req, 480, "x")).unwrap();
        tx.handle_message(t0, request("ACK", "z9hG4bKi", t).into(), p);
        prop_assert_eq!(tx.timer(k, Timer::I), (!reliable).then_some(t0 + cfg.t4));
        prop_assert_eq!(tx.state(k).is_none(), reliable);
    }
}

// ----------------------------------------------------------------------
// Random operation sequences (the fuzzing-by-operations of quinn-proto).

#[derive(Clone, Debug)]
enum Op {
    SendRequest {
        invite: bool,
        branch: u8,
        reliable: bool,
    },
    Respond {
        pick: u8,
        code: u16,
    },
    ReceiveRequest {
        method: u8,
        branch: u8,
        reliable: bool,
    },
    ReceiveResponse {
        pick: u8,
        code: u16,
        tag: u8,
    },
    Cancel {
        pick: u8,
    },
    TransportError {
        reliable: bool,
    },
    Advance {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let code = prop_oneof![
        Just(100u16),
        Just(180),
        Just(200),
        Just(486),
        Just(503),
        100u16..700
    ];
    prop_oneof![
        (any::<bool>(), 0u8..6, any::<bool>()).prop_map(|(invite, branch, reliable)| {
            Op::SendRequest {
                invite,
                branch,
                reliable,
            }
        }),
        (any::<u8>(), code.clone()).prop_map(|(pick, code)| Op::Respond { pick, code }),
        (0u8..5, 0u8..6, any::<bool>()).prop_map(|(method, branch, reliable)| Op::ReceiveRequest {
            method,
            branch,
            reliable
        }),
        (any::<u8>(), code, 0u8..3).prop_map(|(pick, code, tag)| Op::ReceiveResponse {
            pick,
            code,
            tag
        }),
        any::<u8>().prop_map(|pick| Op::Cancel { pick }),
        any::<bool>().prop_map(|reliable| Op::TransportError { reliable }),
        (0u32..40_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

struct Model {
    tx: Transactions,
    now: Instant,
    /// Client transactions and their requests (for building responses).
    clients: Vec<(TxKey, Request)>,
    /// Server transactions and their requests.
    servers: Vec<(TxKey, Request)>,
    terminated: HashSet<TxKey>,
    known: HashSet<TxKey>,
}

impl Model {
    fn drain(&mut self) {
        transmits(&mut self.tx);
        for e in events(&mut self.tx) {
            let key = match &e {
                TxEvent::Request { tx, request, .. } => {
                    self.servers.push((*tx, request.clone()));
                    self.known.insert(*tx);
                    Some(*tx)
                }
                TxEvent::Response { tx, .. }
                | TxEvent::Timeout { tx }
                | TxEvent::TransportError { tx } => Some(*tx),
                TxEvent::Cancelled { invite, .. } => Some(*invite),
                TxEvent::Terminated { tx } => {
                    assert!(self.terminated.insert(*tx), "{tx} terminated twice");
                    None
                }
                TxEvent::Stray { .. } => None,
            };
            if let Some(k) = key {
                assert!(
                    !self.terminated.contains(&k),
                    "event after Terminated: {e:?}"
                );
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let peer = |reliable: bool| if reliable { tcp(BOB) } else { udp(BOB) };
        let kind = |reliable: bool| {
            if reliable {
                TransportKind::Tcp
            } else {
                TransportKind::Udp
            }
        };
        match op {
            Op::SendRequest {
                invite,
                branch,
                reliable,
            } => {
                let m = if *invite { "INVITE" } else { "MESSAGE" };
                let r = request(m, &format!("z9hG4bKout{branch}"), kind(*reliable));
                if let Ok(k) = self.tx.send_request(self.now, r.clone(), peer(*reliable)) {
                    self.clients.push((k, r));
                    self.known.insert(k);
                }
            }
            Op::Respond { pick, code } => {
                if !self.servers.is_empty() {
                    let (k, r) = self.servers[*pick as usize % self.servers.len()].clone();
                    let _ = self.tx.send_response(self.now, k, response(&r, *code, "s"));
                }
            }
            Op::ReceiveRequest {
                method,
                branch,
                reliable,
            } => {
                let m = ["INVITE", "BYE", "ACK", "CANCEL", "OPTIONS"][*method as usize];
                let b = if *branch == 5 {
                    "no-cookie".to_owned()
                } else {
                    format!("z9hG4bKin{branch}")
                };
                let mut r = request(m, &b, kind(*reliable));
                if m == "ACK" {
                    r.headers
                        .set(HeaderName::To, "Bob <sip:bob@example.com>;tag=s");
                }
                self.tx.handle_message(self.now, r.into(), peer(*reliable));
            }
            Op::ReceiveResponse { pick, code, tag } => {
                if !self.clients.is_empty() {
                    let (_, r) = &self.clients[*pick as usize % self.clients.len()];
                    let resp = response(r, *code, &format!("t{tag}"));
                    self.tx.handle_message(self.now, resp.into(), udp(BOB));
                }
            }
            Op::Cancel { pick } => {
                if !self.clients.is_empty() {
                    let (k, r) = self.clients[*pick as usize % self.clients.len()].clone();
                    if let Ok(c) = self.tx.cancel(self.now, k) {
                        let mut cr = r.clone();
                        cr.method = Method::Cancel;
                        cr.headers.set(HeaderName::CSeq, "1 CANCEL");
                        self.clients.push((c, cr));
                        self.known.insert(c);
                    }
                }
            }
            Op::TransportError { reliable } => {
                self.tx.handle_transport_error(self.now, peer(*reliable))
            }
            Op::Advance { ms: d } => {
                let target = self.now + ms(u64::from(*d));
                while let Some(at) = self.tx.poll_timeout().filter(|t| *t <= target) {
                    self.now = at;
                    self.tx.handle_timeout(at);
                    self.drain();
                }
                self.now = target;
            }
        }
        self.drain();
        assert!(
            self.tx.poll_timeout().is_none_or(|t| t >= self.now),
            "a due timer was left"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens, nothing panics, no event follows Terminated, and once
    /// the TU has answered every server transaction and cancelled every
    /// pending INVITE, every transaction terminates within 64·T1 + 32 s.
    #[test]
    fn random_operations_always_terminate(ops in proptest::collection::vec(op(), 1..60)) {
        let t0 = vaxel_testkit::SimClock::new().now();
        let mut m = Model {
            tx: Transactions::new(TimerConfig::default()),
            now: t0,
            clients: Vec::new(),
            servers: Vec::new(),
            terminated: HashSet::new(),
            known: HashSet::new(),
        };
        for op in &ops {
            m.apply(op);
        }
        // The TU's duty: a final response for every server transaction it was
        // given, and CANCEL (or a final response) for INVITEs stuck in Proceeding.
        let servers = m.servers.clone();
        for (k, r) in servers {
            let _ = m.tx.send_response(m.now, k, response(&r, 500, "s"));
        }
        let stuck: Vec<TxKey> = m.clients.iter().map(|c| c.0)
            .filter(|k| m.tx.kind(*k) == Some(TxKind::InviteClient) && m.tx.state(*k) == Some(TxState::Proceeding))
            .collect();
        for k in stuck {
            let _ = m.tx.cancel(m.now, k);
        }
        m.drain();
        let deadline = m.now + ms(64 * 500) + ms(32_000) + ms(5_000);
        let mut states: HashMap<TxKey, TxState> = HashMap::new();
        for k in &m.known {
            if let Some(s) = m.tx.state(*k) { states.insert(*k, s); }
        }
        while let Some(at) = m.tx.poll_timeout() {
            prop_assert!(at <= deadline, "a timer beyond the bound: {:?} ({states:?})", at - m.now);
            m.now = at;
            m.tx.handle_timeout(at);
            m.drain();
        }
        prop_assert!(m.tx.is_empty(), "left: {} ({states:?})", m.tx.len());
        for k in &m.known {
            prop_assert!(m.terminated.contains(k), "{k} never reported Terminated");
        }
    }
}
