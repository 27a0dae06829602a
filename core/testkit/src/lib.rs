//! Test fixtures for Vaxel's virtual-time scenario tests: a simulated clock and a
//! seeded simulated network.
//!
//! The protocol crates (`vaxel-sip`, `vaxel-media`, `vaxel-routing`) take time
//! as an argument and never touch sockets (ARCHITECTURE.md §3.1), so a test can
//! run a whole call — phone ↔ engine ↔ phone, retransmissions, timeouts — in
//! microseconds of real time: [`SimClock`] hands out `Instant`s that only move
//! when the test says so, and [`SimNetwork`] carries datagrams between
//! `SocketAddr`s with loss, duplication, reordering and delay drawn from a
//! seeded generator, so every run with the same seed replays exactly.
//!
//! The run loop of a scenario test mirrors the drivers' loop:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use vaxel_testkit::{next_deadline, LinkConditions, SimClock, SimNetwork};
//!
//! let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
//! let b: SocketAddr = "192.0.2.2:5060".parse().unwrap();
//! let mut clock = SimClock::new();
//! let mut net = SimNetwork::new(7, LinkConditions::default().with_delay(Duration::from_millis(20)));
//! net.send(clock.now(), a, b, Bytes::from_static(b"hello"));
//! // Each endpoint would report its own `poll_timeout()` here too.
//! while let Some(at) = next_deadline([net.next_delivery()]) {
//!     clock.advance_to(at);
//!     while let Some(d) = net.poll_delivery(clock.now()) {
//!         assert_eq!((d.from, d.to, &d.payload[..]), (a, b, &b"hello"[..]));
//!     }
//! }
//! assert_eq!(clock.elapsed(), Duration::from_millis(20));
//! ```
//!
//! Nothing here knows SIP; the SIP-aware helpers live in the test suites that
//! use this crate. For tests with real peers, [`peers`] decides whether a
//! missing program skips or fails the test, [`pulse`] runs a private
//! PulseAudio daemon with null sinks: a clocked virtual sound card, and [`keyring`]
//! runs a test again under a private D-Bus bus with an unlocked gnome-keyring.

pub mod keyring;
pub mod peers;
pub mod pulse;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A clock that moves only when told to. All instants it returns are offsets
/// from one base `Instant`, so two runs of a test see the same durations.
#[derive(Clone, Debug)]
pub struct SimClock {
    start: Instant,
    now: Instant,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    /// A clock at virtual time zero.
    pub fn new() -> Self {
        // The only real clock read: a base that makes the virtual instants real
        // `Instant` values. Tests only ever look at offsets from it.
        let start = Instant::now();
        SimClock { start, now: start }
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant at `offset` after virtual time zero.
    pub fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    /// Virtual time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// How far `t` lies after virtual time zero (zero when before it).
    pub fn offset_of(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    /// Moves the clock forward by `d` and returns the new instant.
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.now
    }

    /// Moves the clock to `t`; an instant in the past leaves it where it is
    /// (time never runs backwards).
    pub fn advance_to(&mut self, t: Instant) -> Instant {
        if t > self.now {
            self.now = t;
        }
        self.now
    }
}

/// The earliest of several optional deadlines (an endpoint's `poll_timeout`,
/// the network's next delivery, ...), or `None` when there is nothing left to do.
pub fn next_deadline(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// What the network does to datagrams on one direction of a path.
///
/// Probabilities are in `0.0..=1.0` and drawn per datagram. Delay is
/// `delay + uniform(0..=jitter)`; a reordered datagram gets `reorder_delay`
/// more, so datagrams sent after it overtake it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConditions {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice (the copy with its own delay).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`.
    pub reorder: f64,
    /// One-way base delay.
    pub delay: Duration,
    /// Largest extra random delay.
    pub jitter: Duration,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
}

impl Default for LinkConditions {
    /// A perfect link with 10 ms of one-way delay.
    fn default() -> Self {
        LinkConditions {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            reorder_delay: Duration::from_millis(100),
        }
    }
}

impl LinkConditions {
    /// A link that loses everything.
    pub fn dead() -> Self {
        LinkConditions::default().with_loss(1.0)
    }

    /// Sets the loss probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the duplication probability.
    pub fn with_duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Sets the reordering probability and how long a reordered datagram is held back.
    pub fn with_reorder(mut self, reorder: f64, reorder_delay: Duration) -> Self {
        self.reorder = reorder;
        self.reorder_delay = reorder_delay;
        self
    }

    /// Sets the base one-way delay.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the largest random extra delay.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
}

/// One datagram handed to its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// The bytes as sent.
    pub payload: Bytes,
    /// When it was sent.
    pub sent_at: Instant,
    /// When it arrives.
    pub delivered_at: Instant,
    /// Number of the `send` call it came from (copies share it).
    pub send_id: u64,
    /// Whether this is the network's extra copy.
    pub duplicate: bool,
}

/// What happened to one datagram, as recorded in the [`SimNetwork::trace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost on the way (recorded at send time).
    Dropped,
    /// Handed to the receiver (recorded at delivery time).
    Delivered,
}

/// One line of the network trace: a message ladder for assertions and for
/// reading a failed test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Send time for drops, arrival time for deliveries.
    pub at: Instant,
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
    /// What happened.
    pub fate: Fate,
    /// Whether this was the network's extra copy.
    pub duplicate: bool,
}

impl TraceEntry {
    /// The first line of the payload (for a SIP message: the request or status line).
    pub fn first_line(&self) -> String {
        let end = self
            .payload
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(self.payload.len());
        String::from_utf8_lossy(&self.payload[..end]).into_owned()
    }
}

/// Counters over the life of a [`SimNetwork`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// `send` calls.
    pub sent: u64,
    /// Datagrams lost.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back for reordering.
    pub reordered: u64,
    /// Datagrams handed to receivers (copies included).
    pub delivered: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: Instant,
    order: u64,
}

#[derive(Debug)]
struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    payload: Bytes,
    sent_at: Instant,
    send_id: u64,
    duplicate: bool,
}

/// A datagram network between `SocketAddr`s, deterministic from a seed.
///
/// Datagrams to any address are accepted (there is no notion of a bound
/// socket); the test routes each delivered [`Datagram`] to the endpoint that
/// owns `to`. Two datagrams due at the same instant are delivered in the order
/// they were scheduled.
#[derive(Debug)]
pub struct SimNetwork {
    rng: ChaCha8Rng,
    default: LinkConditions,
    links: HashMap<(SocketAddr, SocketAddr), LinkConditions>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    in_flight: HashMap<u64, InFlight>,
    next_order: u64,
    next_send_id: u64,
    stats: NetStats,
    tracing: bool,
    trace: Vec<TraceEntry>,
}

impl SimNetwork {
    /// A network where every path has `conditions`, with all random choices drawn from `seed`.
    pub fn new(seed: u64, conditions: LinkConditions) -> Self {
        SimNetwork {
            rng: ChaCha8Rng::seed_from_u64(seed),
            default: conditions,
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_order: 0,
            next_send_id: 0,
            stats: NetStats::default(),
            tracing: true,
            trace: Vec::new(),
        }
    }

    /// Sets the conditions of the direction `from` → `to` only.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, conditions: LinkConditions) {
        self.links.insert((from, to), conditions);
    }

    /// Sets the conditions of both directions between `a` and `b`.
    pub fn set_path(&mut self, a: SocketAddr, b: SocketAddr, conditions: LinkConditions) {
        self.set_link(a, b, conditions);
        self.set_link(b, a, conditions);
    }

    /// Sets the conditions of every path without its own.
    pub fn set_default(&mut self, conditions: LinkConditions) {
        self.default = conditions;
    }

    /// Turns the trace on or off (on by default; long soak runs turn it off).
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    fn conditions(&self, from: SocketAddr, to: SocketAddr) -> LinkConditions {
        self.links.get(&(from, to)).copied().unwrap_or(self.default)
    }

    /// A uniform draw in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn delay(&mut self, c: &LinkConditions) -> Duration {
        let mut d = c.delay;
        if !c.jitter.is_zero() {
            let nanos = c.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
            d += Duration::from_nanos(self.rng.next_u64() % (nanos + 1));
        }
        if c.reorder > 0.0 && self.unit() < c.reorder {
            self.stats.reordered += 1;
            d += c.reorder_delay;
        }
        d
    }

    fn schedule(&mut self, at: Instant, flight: InFlight) {
        let order = self.next_order;
        self.next_order += 1;
        self.in_flight.insert(order, flight);
        self.queue.push(Reverse(Scheduled { at, order }));
    }

    /// Sends `payload` from `from` to `to` at `now`; returns the send's number.
    /// Whether it arrives, when, and how often is decided here, from the seed.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, payload: Bytes) -> u64 {
        let send_id = self.next_send_id;
        self.next_send_id += 1;
        self.stats.sent += 1;
        let c = self.conditions(from, to);
        // Draw every random number in a fixed order whatever the outcome, so that
        // changing one probability does not shift all later draws.
        let lost = self.unit() < c.loss;
        let dup = self.unit() < c.duplicate;
        if lost {
            self.stats.dropped += 1;
            if self.tracing {
                self.trace.push(TraceEntry {
                    at: now,
                    from,
                    to,
                    payload,
                    fate: Fate::Dropped,
                    duplicate: false,
                });
            }
            return send_id;
        }
        let d = self.delay(&c);
        self.schedule(
            now + d,
            InFlight {
                from,
                to,
                payload: payload.clone(),
                sent_at: now,
                send_id,
                duplicate: false,
            },
        );
        if dup {
            self.stats.duplicated += 1;
            let d2 = self.delay(&c);
            self.schedule(
                now + d2,
                InFlight {
                    from,
                    to,
                    payload,
                    sent_at: now,
                    send_id,
                    duplicate: true,
                },
            );
        }
        send_id
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// The earliest datagram due at or before `now`; call until `None`.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Datagram> {
        let Reverse(head) = self.queue.peek()?;
        if head.at > now {
            return None;
        }
        let Reverse(Scheduled { at, order }) = self.queue.pop()?;
        let f = self.in_flight.remove(&order)?;
        self.stats.delivered += 1;
        if self.tracing {
            self.trace.push(TraceEntry {
                at,
                from: f.from,
                to: f.to,
                payload: f.payload.clone(),
                fate: Fate::Delivered,
                duplicate: f.duplicate,
            });
        }
        Some(Datagram {
            from: f.from,
            to: f.to,
            payload: f.payload,
            sent_at: f.sent_at,
            delivered_at: at,
            send_id: f.send_id,
            duplicate: f.duplicate,
        })
    }

    /// Datagrams still on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Everything dropped and delivered so far, in the order it happened.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Forgets the trace so far.
    pub fn clear_trace(&mut self) {
        self.trace.clear();
    }

    /// The delivered datagrams as a ladder, one line each:
    /// `"<from> -> <to>: <first line>"`, with addresses named by `name`.
    pub fn ladder(&self, name: impl Fn(SocketAddr) -> String) -> Vec<String> {
        self.trace
            .iter()
            .filter(|e| e.fate == Fate::Delivered)
            .map(|e| format!("{} -> {}: {}", name(e.from), name(e.to), e.first_line()))
            .collect()
    }

    /// The whole trace as text with virtual times relative to `clock`, drops
    /// marked: for printing when a scenario fails.
    pub fn render_trace(&self, clock: &SimClock, name: impl Fn(SocketAddr) -> String) -> String {
        let mut out = String::new();
        for e in &self.trace {
            let t = clock.offset_of(e.at);
            let mark = match (e.fate, e.duplicate) {
                (Fate::Dropped, _) => " (lost)",
                (Fate::Delivered, true) => " (copy)",
                (Fate::Delivered, false) => "",
            };
            let _ = writeln!(
                out,
                "{:>9.3}s {} -> {}: {}{}",
                t.as_secs_f64(),
                name(e.from),
                name(e.to),
                e.first_line(),
                mark
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "192.0.2.1:5060".parse().unwrap(),
            "192.0.2.2:5060".parse().unwrap(),
        )
    }

    fn run(seed: u64, c: LinkConditions, n: usize) -> Vec<(u64, Duration, bool)> {
        let (a, b) = addrs();
        let mut clock = SimClock::new();
        let mut net = SimNetwork::new(seed, c);
        for i in 0..n {
            net.send(clock.now(), a, b, Bytes::from(format!("m{i}")));
            clock.advance(Duration::from_millis(5));
        }
        let mut got = Vec::new();
        while let Some(at) = net.next_delivery() {
            clock.advance_to(at);
            while let Some(d) = net.poll_delivery(clock.now()) {
                got.push((d.send_id, clock.offset_of(d.delivered_at), d.duplicate));
            }
        }
        got
    }

    #[test]
    fn clock_moves_only_forward() {
        let mut c = SimClock::new();
        let t0 = c.now();
        c.advance(Duration::from_secs(2));
        c.advance_to(t0);
        assert_eq!(c.elapsed(), Duration::from_secs(2));
        assert_eq!(c.at(Duration::from_secs(2)), c.now());
        assert_eq!(c.offset_of(t0), Duration::ZERO);
    }

    #[test]
    fn perfect_link_delivers_in_order_after_the_delay() {
        let got = run(1, LinkConditions::default(), 5);
        let ids: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        assert_eq!(got[0].1, Duration::from_millis(10));
        assert_eq!(got[4].1, Duration::from_millis(30));
    }

    #[test]
    fn same_seed_same_run_other_seed_other_run() {
        let c = LinkConditions::default()
            .with_loss(0.3)
            .with_duplicate(0.2)
            .with_reorder(0.2, Duration::from_millis(50))
            .with_jitter(Duration::from_millis(7));
        assert_eq!(run(42, c, 200), run(42, c, 200));
        assert_ne!(run(42, c, 200), run(43, c, 200));
    }

    #[test]
    fn rates_are_roughly_what_was_asked() {
        let (a, b) = addrs();
        let mut net = SimNetwork::new(
            9,
            LinkConditions::default()
                .with_loss(0.2)
                .with_duplicate(0.1)
                .with_reorder(0.1, Duration::from_millis(30)),
        );
        net.set_tracing(false);
        let clock = SimClock::new();
        for _ in 0..10_000 {
            net.send(clock.now(), a, b, Bytes::new());
        }
        let s = net.stats();
        assert!((1_800..2_200).contains(&s.dropped), "{s:?}");
        assert!((700..900).contains(&s.duplicated), "{s:?}");
        assert!(net.trace().is_empty());
        assert_eq!(net.in_flight() as u64, s.sent - s.dropped + s.duplicated);
    }

    #[test]
    fn reordering_and_duplicates_show_in_the_ladder() {
        let (a, b) = addrs();
        let mut clock = SimClock::new();
        let mut net = SimNetwork::new(3, LinkConditions::default());
        net.set_link(
            a,
            b,
            LinkConditions::default()
                .with_reorder(1.0, Duration::from_millis(100))
                .with_duplicate(1.0),
        );
        net.send(clock.now(), a, b, Bytes::from_static(b"first\r\nbody"));
        clock.advance(Duration::from_millis(20));
        net.send(clock.now(), b, a, Bytes::from_static(b"second"));
        while let Some(at) = net.next_delivery() {
            clock.advance_to(at);
            while net.poll_delivery(clock.now()).is_some() {}
        }
        let name = |s: SocketAddr| if s == a { "A".into() } else { "B".into() };
        assert_eq!(
            net.ladder(name),
            ["B -> A: second", "A -> B: first", "A -> B: first"]
        );
        assert!(net.render_trace(&clock, name).contains("(copy)"));
        assert_eq!(
            next_deadline([None, Some(clock.now()), None]),
            Some(clock.now())
        );
    }

    #[test]
    fn a_dead_link_loses_everything() {
        let (a, b) = addrs();
        let clock = SimClock::new();
        let mut net = SimNetwork::new(5, LinkConditions::default());
        net.set_path(a, b, LinkConditions::dead());
        for _ in 0..50 {
            net.send(clock.now(), a, b, Bytes::new());
            net.send(clock.now(), b, a, Bytes::new());
        }
        assert_eq!(net.next_delivery(), None);
        assert_eq!(net.stats().dropped, 100);
        assert!(net.trace().iter().all(|e| e.fate == Fate::Dropped));
    }
}
