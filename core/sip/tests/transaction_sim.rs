//! Two endpoints over a lossy, duplicating, reordering network (vaxel-testkit),
//! many seeds: every transaction completes or times out exactly when RFC 3261
//! §17 says, judged against the network's own record of what it delivered.
//!
//! Run with `--nocapture` to see the per-seed figures.

mod transaction_support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use transaction_support::sim::{Action, Answer, Layer, Node, Sim, Tu, Ua};
use vaxel_sip::msg::{self, Message, Method, Response, StatusCode};
use vaxel_sip::transaction::{TxEvent, TxKey};
use vaxel_testkit::{Fate, LinkConditions, TraceEntry};

const T1: Duration = Duration::from_millis(500);
const T1X64: Duration = Duration::from_secs(32);

fn alice() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

fn bob() -> SocketAddr {
    "192.0.2.2:5060".parse().unwrap()
}

fn lossy(loss: f64) -> LinkConditions {
    LinkConditions::default()
        .with_loss(loss)
        .with_duplicate(0.05)
        .with_reorder(0.05, Duration::from_millis(150))
        .with_jitter(Duration::from_millis(30))
}

/// One datagram of the trace, read as SIP.
struct Wire {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    fate: Fate,
    duplicate: bool,
    request: Option<Method>,
    status: Option<u16>,
    cseq_method: Method,
    branch: String,
}

fn wires(trace: &[TraceEntry]) -> Vec<Wire> {
    trace
        .iter()
        .map(|e| {
            let m = msg::parse(e.payload.clone()).unwrap();
            let (request, status) = match &m {
                Message::Request(r) => (Some(r.method.clone()), None),
                Message::Response(r) => (None, Some(r.status.as_u16())),
            };
            Wire {
                at: e.at,
                from: e.from,
                to: e.to,
                fate: e.fate,
                duplicate: e.duplicate,
                request,
                status,
                cseq_method: m.headers().cseq().unwrap().method,
                branch: m.headers().top_via().unwrap().branch().unwrap().to_owned(),
            }
        })
        .collect()
}

/// Instants of the transmissions of a non-INVITE request over UDP: 0, then
/// Timer E at T1, 2T1, 4T1, then every T2, while before Timer F (§17.1.2.2).
fn non_invite_schedule() -> Vec<Duration> {
    let mut at = vec![Duration::ZERO];
    let (mut t, mut e) = (Duration::ZERO, T1);
    loop {
        t += e;
        if t >= T1X64 {
            break;
        }
        at.push(t);
        e = (e * 2).min(Duration::from_secs(4));
    }
    at
}

/// INVITE: Timer A doubles without cap until Timer B (§17.1.1.2).
fn invite_schedule() -> Vec<Duration> {
    let mut at = vec![Duration::ZERO];
    let (mut t, mut a) = (Duration::ZERO, T1);
    loop {
        t += a;
        if t >= T1X64 {
            break;
        }
        at.push(t);
        a *= 2;
    }
    at
}

/// What §17.1 says must have happened to a client transaction, from the trace:
/// the first response delivered before Timer B/F completes it; without one it
/// times out at exactly start + 64·T1 after all scheduled transmissions.
#[derive(Debug, PartialEq)]
enum Expected {
    Completed { at: Instant, sent: usize },
    TimedOut { at: Instant, sent: usize },
}

fn expected(
    w: &[Wire],
    client: SocketAddr,
    branch: &str,
    method: &Method,
    start: Instant,
    schedule: &[Duration],
) -> Expected {
    let first = w
        .iter()
        .filter(|x| {
            x.to == client
                && x.fate == Fate::Delivered
                && x.status.is_some()
                && x.branch == branch
                && &x.cseq_method == method
        })
        .map(|x| x.at)
        .min();
    match first {
        Some(at) if at <= start + T1X64 => Expected::Completed {
            at,
            sent: schedule.iter().filter(|d| start + **d < at).count(),
        },
        _ => Expected::TimedOut {
            at: start + T1X64,
            sent: schedule.len(),
        },
    }
}

fn sent_by(w: &[Wire], client: SocketAddr, branch: &str, method: &Method) -> usize {
    w.iter()
        .filter(|x| {
            x.from == client
                && !x.duplicate
                && x.request.as_ref() == Some(method)
                && x.branch == branch
        })
        .count()
}

// ----------------------------------------------------------------------
// Non-INVITE: Alice sends OPTIONS, Bob answers 200 at once.

#[derive(Default)]
struct OptionsClient {
    starts: Vec<Instant>,
    started: HashMap<TxKey, (Instant, String)>,
    completed: HashMap<TxKey, Instant>,
    timed_out: HashMap<TxKey, Instant>,
    terminated: u32,
}

impl Tu for OptionsClient {
    fn on_event(&mut self, now: Instant, _layer: &mut Layer, event: TxEvent) {
        match event {
            TxEvent::Response { tx, response } if response.status.is_final() => {
                assert!(self.completed.insert(tx, now).is_none(), "one final per tx");
            }
            TxEvent::Timeout { tx } => {
                self.timed_out.insert(tx, now);
            }
            TxEvent::Terminated { .. } => self.terminated += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    fn next_wake(&self) -> Option<Instant> {
        self.starts.first().copied()
    }
    fn on_wake(&mut self, now: Instant, layer: &mut Layer) {
        while self.starts.first().is_some_and(|t| *t <= now) {
            self.starts.remove(0);
            let n = self.started.len();
            let via = layer.via();
            let text = format!(
                "OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
                 To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\n\
                 Call-ID: opt{n}\r\nCSeq: 1 OPTIONS\r\n\r\n"
            );
            let Ok(Message::Request(r)) = msg::parse(text.into()) else {
                unreachable!()
            };
            let branch = r.headers.top_via().unwrap().branch().unwrap().to_owned();
            let k = layer.tx.send_request(now, r, layer.peer(bob())).unwrap();
            self.started.insert(k, (now, branch));
        }
    }
}

#[derive(Default)]
struct OptionsServer {
    requests: u32,
    terminated: u32,
}

impl Tu for OptionsServer {
    fn on_event(&mut self, now: Instant, layer: &mut Layer, event: TxEvent) {
        match event {
            TxEvent::Request { tx, request, .. } => {
                self.requests += 1;
                let mut ok = Response::from_request(&request, StatusCode::OK);
                ok.set_to_tag("b").unwrap();
                layer.tx.send_response(now, tx, ok).unwrap();
            }
            TxEvent::Terminated { .. } => self.terminated += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[derive(Default)]
struct Figures {
    run: usize,
    completed: usize,
    timed_out: usize,
    all_requests_lost: usize,
    datagrams: u64,
    lost: u64,
    retransmitted: u64,
}

fn non_invite_run(seed: u64, conditions: LinkConditions, n: usize) -> Figures {
    let a = Node {
        layer: Layer::new("Alice", alice(), seed * 2 + 1),
        tu: OptionsClient::default(),
    };
    let b = Node {
        layer: Layer::new("Bob", bob(), seed * 2 + 2),
        tu: OptionsServer::default(),
    };
    let mut s = Sim::new(seed, conditions, a, b);
    let t0 = s.clock.now();
    s.a.tu.starts = (0..n as u32).map(|i| t0 + T1 * 3 * i).collect();
    s.run_for(Duration::from_secs(600));
    let w = wires(s.net.trace());
    let schedule = non_invite_schedule();
    assert_eq!(schedule.len(), 11, "11 transmissions in 64·T1");
    let mut f = Figures {
        datagrams: s.net.stats().sent,
        lost: s.net.stats().dropped,
        retransmitted: s.a.layer.tx.stats().retransmitted + s.b.layer.tx.stats().responses_resent,
        ..Figures::default()
    };
    let client = &s.a.tu;
    for (k, (start, branch)) in &client.started {
        f.run += 1;
        let exp = expected(&w, alice(), branch, &Method::Options, *start, &schedule);
        let sent = sent_by(&w, alice(), branch, &Method::Options);
        match exp {
            Expected::Completed { at, sent: n } => {
                assert_eq!(client.completed.get(k), Some(&at), "seed {seed} {k}");
                assert!(!client.timed_out.contains_key(k));
                assert_eq!(
                    sent, n,
                    "seed {seed} {k}: transmissions before the response"
                );
                f.completed += 1;
            }
            Expected::TimedOut { at, sent: n } => {
                assert_eq!(client.timed_out.get(k), Some(&at), "seed {seed} {k}");
                assert!(!client.completed.contains_key(k));
                assert_eq!(sent, n, "seed {seed} {k}: all 11 transmissions");
                f.timed_out += 1;
                let delivered = w
                    .iter()
                    .any(|x| x.from == alice() && x.branch == *branch && x.fate == Fate::Delivered);
                if !delivered {
                    f.all_requests_lost += 1;
                }
            }
        }
    }
    // Every transaction on both sides ended, and said so once.
    assert!(
        s.a.layer.tx.is_empty() && s.b.layer.tx.is_empty(),
        "seed {seed}"
    );
    assert_eq!(client.terminated as usize, n);
    assert_eq!(s.b.tu.terminated, s.b.tu.requests);
    // The server saw one transaction per branch that reached it.
    let reached: std::collections::HashSet<&str> = w
        .iter()
        .filter(|x| x.to == bob() && x.fate == Fate::Delivered)
        .map(|x| x.branch.as_str())
        .collect();
    assert_eq!(s.b.tu.requests as usize, reached.len(), "seed {seed}");
    f
}

#[test]
fn non_invite_over_20_percent_loss_completes_or_times_out_as_17_1_2_says() {
    let mut total = Figures::default();
    println!("seed  run  completed  timed-out  datagrams  lost  resent");
    for seed in 0..40 {
        let f = non_invite_run(seed, lossy(0.2), 50);
        println!(
            "{seed:>4} {:>4} {:>10} {:>10} {:>10} {:>5} {:>7}",
            f.run, f.completed, f.timed_out, f.datagrams, f.lost, f.retransmitted
        );
        total.run += f.run;
        total.completed += f.completed;
        total.timed_out += f.timed_out;
        total.all_requests_lost += f.all_requests_lost;
        total.datagrams += f.datagrams;
        total.lost += f.lost;
        total.retransmitted += f.retransmitted;
    }
    println!(
        "non-INVITE, 20% loss, 40 seeds: {} run, {} completed, {} timed out ({} with all 11 requests lost); \
         {} datagrams, {} lost, {} retransmissions and resent responses",
        total.run,
        total.completed,
        total.timed_out,
        total.all_requests_lost,
        total.datagrams,
        total.lost,
        total.retransmitted
    );
    // With 20% loss a request and its response both get through on some try
    // almost always: (1 - 0.8²)^11 ≈ 1e-5 per transaction.
    assert!(total.timed_out <= 2, "{}", total.timed_out);
}

#[test]
fn non_invite_over_a_dead_link_times_out_at_exactly_64_t1_after_11_transmissions() {
    let f = non_invite_run(7, LinkConditions::dead(), 5);
    assert_eq!((f.run, f.completed, f.timed_out), (5, 0, 5));
    assert_eq!(f.all_requests_lost, 5);
}

#[test]
fn only_responses_lost_still_times_out_at_64_t1_and_the_server_absorbs_retransmissions() {
    let a = Node {
        layer: Layer::new("Alice", alice(), 1),
        tu: OptionsClient::default(),
    };
    let b = Node {
        layer: Layer::new("Bob", bob(), 2),
        tu: OptionsServer::default(),
    };
    let mut s = Sim::new(1, LinkConditions::default(), a, b);
    s.net.set_link(bob(), alice(), LinkConditions::dead());
    let t0 = s.clock.now();
    s.a.tu.starts = vec![t0];
    s.run_for(Duration::from_secs(100));
    let (&k, _) = s.a.tu.started.iter().next().unwrap();
    assert_eq!(s.a.tu.timed_out.get(&k), Some(&(t0 + T1X64)));
    // One server transaction; it resent its 200 for each of the 10 retransmissions.
    assert_eq!(s.b.tu.requests, 1);
    assert_eq!(s.b.layer.tx.stats().responses_resent, 10);
}

// ----------------------------------------------------------------------
// INVITE: Alice calls Bob, who rings and answers (or refuses) after 1 s.

struct CallFigures {
    established: bool,
    failed: bool,
    invite_timed_out: bool,
    unacked: bool,
}

fn call_run(seed: u64, conditions: LinkConditions, answer: Answer) -> CallFigures {
    let a = Node {
        layer: Layer::new("Alice", alice(), seed * 2 + 1),
        tu: Ua::new("alice", "atlanta.example.com", Answer::RingForever),
    };
    let b = Node {
        layer: Layer::new("Bob", bob(), seed * 2 + 2),
        tu: Ua::new("bob", "biloxi.example.com", answer),
    };
    let mut s = Sim::new(seed, conditions, a, b);
    let t0 = s.clock.now();
    let tu = std::mem::replace(&mut s.a.tu, Ua::new("x", "x", Answer::RingForever));
    s.a.tu = tu
        .at(
            t0,
            Action::Call {
                target: "sip:bob@biloxi.example.com".into(),
                peer: bob(),
            },
        )
        // A provisional switches Timer B off (Figure 5); if every 2xx is then
        // lost the TU gives up with CANCEL, whose Timer B ends the INVITE (§9.1).
        .at(t0 + Duration::from_secs(45), Action::Cancel)
        .at(t0 + Duration::from_secs(50), Action::Bye);
    s.run_for(Duration::from_secs(400));
    let w = wires(s.net.trace());
    let (&k, inv) = s.a.tu.invites.iter().next().unwrap();
    let branch = inv.headers.top_via().unwrap().branch().unwrap().to_owned();
    let rec = s.a.tu.calls[&k].clone();
    let ctx = || format!("seed {seed}\n{}", s.render());

    // Alice's INVITE: times out at 64·T1 after 7 transmissions iff no response
    // came back in time.
    let schedule = invite_schedule();
    assert_eq!(schedule.len(), 7);
    match expected(&w, alice(), &branch, &Method::Invite, t0, &schedule) {
        Expected::TimedOut { at, sent } => {
            assert_eq!(rec.timed_out, Some(at), "{}", ctx());
            assert_eq!(sent_by(&w, alice(), &branch, &Method::Invite), sent);
            assert!(rec.first_response.is_none());
        }
        Expected::Completed { at, sent } => {
            assert_eq!(rec.first_response, Some(at), "{}", ctx());
            assert_eq!(
                sent_by(&w, alice(), &branch, &Method::Invite),
                sent,
                "{}",
                ctx()
            );
        }
    }

    // Bob's final response: the ACK must reach him within 64·T1 of the first
    // transmission of the final response, else Timer L (2xx) or H (failure)
    // reports a timeout.
    let final_sent = w
        .iter()
        .filter(|x| {
            x.from == bob() && x.status.is_some_and(|c| c >= 200) && x.cseq_method == Method::Invite
        })
        .map(|x| x.at)
        .min();
    let bob_invites: Vec<TxKey> = s.b.tu.incoming.keys().copied().collect();
    if let Some(sent_at) = final_sent {
        let acked = w.iter().any(|x| {
            x.to == bob()
                && x.fate == Fate::Delivered
                && x.request == Some(Method::Ack)
                && x.at >= sent_at
                && x.at <= sent_at + T1X64
        });
        assert_eq!(bob_invites.len(), 1, "{}", ctx());
        assert_eq!(
            s.b.tu.unacked_2xx.contains(&bob_invites[0]),
            !acked,
            "{}",
            ctx()
        );
    }

    // BYE, when the call was up, follows the non-INVITE rules.
    for (k, (method, status, timed_out)) in &s.a.tu.others {
        if *method != Method::Bye {
            continue;
        }
        let bye_branch = w
            .iter()
            .find(|x| x.from == alice() && x.request == Some(Method::Bye))
            .map(|x| x.branch.clone())
            .unwrap();
        let start = w
            .iter()
            .find(|x| x.branch == bye_branch)
            .map(|x| x.at)
            .unwrap();
        match expected(
            &w,
            alice(),
            &bye_branch,
            &Method::Bye,
            start,
            &non_invite_schedule(),
        ) {
            Expected::Completed { .. } => assert!(status.is_some(), "{k} {}", ctx()),
            Expected::TimedOut { .. } => assert!(*timed_out, "{k} {}", ctx()),
        }
    }

    // Everything ended on both sides.
    assert!(
        s.a.layer.tx.is_empty() && s.b.layer.tx.is_empty(),
        "left: {} {}\n{}",
        s.a.layer.tx.len(),
        s.b.layer.tx.len(),
        ctx()
    );
    CallFigures {
        established: rec.established.is_some(),
        failed: rec.final_status.is_some_and(|c| c >= 300),
        invite_timed_out: rec.timed_out.is_some(),
        unacked: !s.b.tu.unacked_2xx.is_empty(),
    }
}

#[test]
fn invite_calls_over_20_percent_loss_follow_17_1_1_and_17_2_1() {
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..120 {
        let answer = if seed % 3 == 2 {
            Answer::RingThenFail(Duration::from_secs(1), 486)
        } else {
            Answer::RingThenOk(Duration::from_secs(1))
        };
        let f = call_run(seed, lossy(0.2), answer);
        *tally.entry("run").or_default() += 1;
        *tally.entry("established").or_default() += usize::from(f.established);
        *tally.entry("refused (486)").or_default() += usize::from(f.failed);
        *tally.entry("INVITE timed out").or_default() += usize::from(f.invite_timed_out);
        *tally.entry("final never ACKed").or_default() += usize::from(f.unacked);
    }
    println!("INVITE calls, 20% loss, 120 seeds: {tally:?}");
    assert_eq!(
        tally["established"] + tally["refused (486)"] + tally["INVITE timed out"],
        120
    );
}

#[test]
fn invite_over_a_dead_link_times_out_at_exactly_64_t1_after_7_transmissions() {
    let f = call_run(
        3,
        LinkConditions::dead(),
        Answer::RingThenOk(Duration::from_secs(1)),
    );
    assert!(f.invite_timed_out && !f.established);
}

#[test]
fn calls_over_a_perfect_link_all_establish_without_retransmission() {
    for seed in 0..5 {
        let f = call_run(seed, LinkConditions::default(), Answer::RingThenOk(T1));
        assert!(f.established && !f.unacked && !f.invite_timed_out);
    }
}

#[test]
fn heavy_loss_exercises_both_outcomes_and_the_oracle_still_holds() {
    // At 75% loss a try succeeds (request and response through) 1 time in 16,
    // so many transactions time out, some after a request got through but
    // every response was lost: the client still times out at exactly 64·T1.
    let (mut completed, mut timed_out, mut reached_server_yet_timed_out) = (0, 0, 0);
    for seed in 100..110 {
        let f = non_invite_run(seed, lossy(0.75), 30);
        completed += f.completed;
        timed_out += f.timed_out;
        reached_server_yet_timed_out += f.timed_out - f.all_requests_lost;
    }
    println!(
        "non-INVITE, 75% loss, 10 seeds: 300 run, {completed} completed, {timed_out} timed out \
         ({reached_server_yet_timed_out} of them after the request reached the server)"
    );
    assert!(completed > 50 && timed_out > 50);
    assert!(reached_server_yet_timed_out > 0);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 200..260 {
        let f = call_run(
            seed,
            lossy(0.75),
            Answer::RingThenOk(Duration::from_secs(1)),
        );
        *tally.entry("established").or_default() += usize::from(f.established);
        *tally.entry("INVITE timed out").or_default() += usize::from(f.invite_timed_out);
        *tally.entry("2xx never ACKed").or_default() += usize::from(f.unacked);
    }
    println!("INVITE calls, 75% loss, 60 seeds: {tally:?}");
    assert!(tally["INVITE timed out"] > 0 && tally["established"] > 0);
}
