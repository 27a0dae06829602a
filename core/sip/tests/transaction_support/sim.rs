//! Two SIP endpoints over the vaxel-testkit network in virtual time: each a
//! transaction layer plus a scripted TU, driven by the run loop of
//! `vaxel_sip::transaction`'s documentation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use vaxel_sip::dialog::{Dialogs, InviteOutcome, new_call_id, new_tag};
use vaxel_sip::msg::{self, HeaderName, Message, Method, Request, Response, StatusCode};
use vaxel_sip::transaction::{
    Peer, TimerConfig, Transactions, TransportKind, TxEvent, TxKey, new_branch,
};
use vaxel_testkit::{LinkConditions, SimClock, SimNetwork, next_deadline};

/// One endpoint's transaction layer, address and RNG.
pub struct Layer {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub tx: Transactions,
    pub rng: ChaCha8Rng,
}

impl Layer {
    pub fn new(name: &'static str, addr: SocketAddr, seed: u64) -> Self {
        Layer {
            name,
            addr,
            tx: Transactions::new(TimerConfig::default()),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn peer(&self, addr: SocketAddr) -> Peer {
        Peer {
            transport: TransportKind::Udp,
            addr,
        }
    }

    /// A top Via for a new request from this endpoint, with a fresh branch.
    pub fn via(&mut self) -> String {
        format!(
            "SIP/2.0/UDP {};branch={}",
            self.addr,
            new_branch(&mut self.rng)
        )
    }

    /// Sets a fresh top Via on `r`.
    pub fn stamp(&mut self, r: &mut Request) {
        let via = self.via();
        r.headers.remove(&HeaderName::Via);
        r.headers.insert_first(HeaderName::Via, via);
    }
}

/// The TU of one endpoint.
pub trait Tu {
    fn on_event(&mut self, now: Instant, layer: &mut Layer, event: TxEvent);
    fn next_wake(&self) -> Option<Instant> {
        None
    }
    fn on_wake(&mut self, _now: Instant, _layer: &mut Layer) {}
}

pub struct Node<T> {
    pub layer: Layer,
    pub tu: T,
}

impl<T: Tu> Node<T> {
    fn pump(&mut self, now: Instant, net: &mut SimNetwork) {
        loop {
            let mut busy = false;
            while let Some(t) = self.layer.tx.poll_transmit() {
                net.send(now, self.layer.addr, t.peer.addr, t.bytes);
                busy = true;
            }
            while let Some(e) = self.layer.tx.poll_event() {
                self.tu.on_event(now, &mut self.layer, e);
                busy = true;
            }
            if !busy {
                break;
            }
        }
    }

    fn deliver(&mut self, now: Instant, from: SocketAddr, payload: bytes::Bytes) {
        let m = msg::parse(payload).expect("endpoints only send what msg parses");
        let peer = self.layer.peer(from);
        self.layer.tx.handle_message(now, m, peer);
    }

    fn tick(&mut self, now: Instant) {
        if self.layer.tx.poll_timeout().is_some_and(|t| t <= now) {
            self.layer.tx.handle_timeout(now);
        }
        if self.tu.next_wake().is_some_and(|t| t <= now) {
            self.tu.on_wake(now, &mut self.layer);
        }
    }

    fn next(&self) -> Option<Instant> {
        next_deadline([self.layer.tx.poll_timeout(), self.tu.next_wake()])
    }
}

pub struct Sim<A, B> {
    pub clock: SimClock,
    pub net: SimNetwork,
    pub a: Node<A>,
    pub b: Node<B>,
}

impl<A: Tu, B: Tu> Sim<A, B> {
    pub fn new(seed: u64, conditions: LinkConditions, a: Node<A>, b: Node<B>) -> Self {
        Sim {
            clock: SimClock::new(),
            net: SimNetwork::new(seed, conditions),
            a,
            b,
        }
    }

    /// Runs until nothing is left to do or `limit` of virtual time has passed.
    pub fn run_for(&mut self, limit: Duration) {
        let end = self.clock.now() + limit;
        loop {
            let now = self.clock.now();
            self.a.pump(now, &mut self.net);
            self.b.pump(now, &mut self.net);
            let next = next_deadline([self.net.next_delivery(), self.a.next(), self.b.next()]);
            match next {
                Some(t) if t <= end => self.clock.advance_to(t),
                _ => break,
            };
            let now = self.clock.now();
            while let Some(d) = self.net.poll_delivery(now) {
                if d.to == self.a.layer.addr {
                    self.a.deliver(now, d.from, d.payload);
                    self.a.pump(now, &mut self.net);
                } else if d.to == self.b.layer.addr {
                    self.b.deliver(now, d.from, d.payload);
                    self.b.pump(now, &mut self.net);
                }
            }
            self.a.tick(now);
            self.b.tick(now);
        }
    }

    pub fn name(&self, addr: SocketAddr) -> String {
        if addr == self.a.layer.addr {
            self.a.layer.name.to_owned()
        } else if addr == self.b.layer.addr {
            self.b.layer.name.to_owned()
        } else {
            addr.to_string()
        }
    }

    pub fn ladder(&self) -> Vec<String> {
        self.net.ladder(|a| self.name(a))
    }

    pub fn render(&self) -> String {
        self.net.render_trace(&self.clock, |a| self.name(a))
    }
}

/// The top Via branch of a message on the wire.
pub fn branch_of(payload: &bytes::Bytes) -> Option<String> {
    let m = msg::parse(payload.clone()).ok()?;
    m.headers().top_via().ok()?.branch().map(str::to_owned)
}

pub fn is_request(payload: &bytes::Bytes) -> bool {
    !payload.starts_with(b"SIP/2.0 ")
}

// ----------------------------------------------------------------------
// A user agent that calls, answers, cancels and hangs up on a script.

/// How the UA answers an INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Answer {
    /// 180 at once, then 200 after the delay.
    RingThenOk(Duration),
    /// 180 at once, then this failure after the delay.
    RingThenFail(Duration, u16),
    /// 180 and nothing more (until CANCEL).
    RingForever,
}

/// Something the UA does at a given time.
#[derive(Clone, Debug)]
pub enum Action {
    /// Call `target` (a SIP URI) at the peer address.
    Call { target: String, peer: SocketAddr },
    /// CANCEL the pending outgoing INVITE.
    Cancel,
    /// Hang up the confirmed dialog with BYE.
    Bye,
}

/// What happened to one outgoing INVITE, as the UA saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallRecord {
    pub started: Option<Instant>,
    pub first_response: Option<Instant>,
    pub final_status: Option<u16>,
    pub timed_out: Option<Instant>,
    pub established: Option<Instant>,
    pub acks_sent: u32,
}

/// An incoming INVITE: the request, our To tag, and the final response due (when, code).
pub type Incoming = (Request, String, Option<(Instant, u16)>);

pub struct Ua {
    pub user: &'static str,
    pub domain: &'static str,
    pub answer: Answer,
    pub script: Vec<(Instant, Action)>,
    pub dialogs: Dialogs,
    /// Outgoing INVITE client transactions and their requests.
    pub invites: HashMap<TxKey, Request>,
    /// Outgoing INVITE by Call-ID (for stray 2xx).
    pub invites_by_call: HashMap<String, Request>,
    pub calls: HashMap<TxKey, CallRecord>,
    /// Incoming INVITE server transactions with the To tag and the pending final.
    pub incoming: HashMap<TxKey, Incoming>,
    /// Server INVITE transactions whose 2xx went unacknowledged (Timer L timeout).
    pub unacked_2xx: Vec<TxKey>,
    /// Client transactions other than INVITE: started and outcome.
    pub others: HashMap<TxKey, (Method, Option<u16>, bool)>,
    pub terminated: u32,
    pub log: Vec<(Instant, String)>,
    peer: Option<SocketAddr>,
}

impl Ua {
    pub fn new(user: &'static str, domain: &'static str, answer: Answer) -> Self {
        Ua {
            user,
            domain,
            answer,
            script: Vec::new(),
            dialogs: Dialogs::new(),
            invites: HashMap::new(),
            invites_by_call: HashMap::new(),
            calls: HashMap::new(),
            incoming: HashMap::new(),
            unacked_2xx: Vec::new(),
            others: HashMap::new(),
            terminated: 0,
            log: Vec::new(),
            peer: None,
        }
    }

    pub fn at(mut self, t: Instant, a: Action) -> Self {
        self.script.push((t, a));
        self.script.sort_by_key(|(t, _)| *t);
        self
    }

    fn contact(&self, layer: &Layer) -> String {
        format!("<sip:{}@{}>", self.user, layer.addr)
    }

    fn call(&mut self, now: Instant, layer: &mut Layer, target: &str, peer: SocketAddr) {
        let call_id = new_call_id(&mut layer.rng, self.domain);
        let tag = new_tag(&mut layer.rng);
        let text = format!(
            "INVITE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nTo: <{target}>\r\n\
             From: <sip:{user}@{domain}>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: {contact}\r\nContent-Length: 0\r\n\r\n",
            via = layer.via(),
            user = self.user,
            domain = self.domain,
            contact = self.contact(layer),
        );
        let Ok(Message::Request(inv)) = msg::parse(text.into()) else {
            panic!("bad INVITE")
        };
        let k = layer
            .tx
            .send_request(now, inv.clone(), layer.peer(peer))
            .unwrap();
        self.peer = Some(peer);
        self.invites.insert(k, inv.clone());
        self.invites_by_call.insert(call_id, inv);
        self.calls.insert(
            k,
            CallRecord {
                started: Some(now),
                ..Default::default()
            },
        );
        self.log.push((now, format!("call {k}")));
    }

    fn send_ack(&mut self, layer: &mut Layer, invite: &Request, response: &Response) {
        let Some(id) = self.dialogs.find_for_response(response).cloned() else {
            return;
        };
        let Some(d) = self.dialogs.get(&id) else {
            return;
        };
        let mut ack = d.new_ack(invite);
        layer.stamp(&mut ack);
        let peer = self.peer.unwrap();
        layer.tx.send_ack(&ack, layer.peer(peer)).unwrap();
    }

    fn on_invite_response(&mut self, now: Instant, layer: &mut Layer, k: TxKey, r: Response) {
        let Some(inv) = self.invites.get(&k).cloned() else {
            return;
        };
        let rec = self.calls.entry(k).or_default();
        rec.first_response.get_or_insert(now);
        if r.status.is_final() {
            rec.final_status.get_or_insert(r.status.as_u16());
        }
        let outcome = self.dialogs.handle_invite_response(&inv, &r).unwrap();
        if let InviteOutcome::Confirmed { .. } = outcome {
            let rec = self.calls.entry(k).or_default();
            rec.established.get_or_insert(now);
            rec.acks_sent += 1;
            self.send_ack(layer, &inv, &r);
        }
    }

    fn answer_incoming(&mut self, now: Instant, layer: &mut Layer, k: TxKey, req: Request) {
        let tag = new_tag(&mut layer.rng);
        let mut ringing = Response::from_request(&req, StatusCode::RINGING);
        ringing.set_to_tag(&tag).unwrap();
        ringing
            .headers
            .push(HeaderName::Contact, self.contact(layer));
        layer.tx.send_response(now, k, ringing).unwrap();
        let pending = match self.answer {
            Answer::RingThenOk(d) => Some((now + d, 200)),
            Answer::RingThenFail(d, code) => Some((now + d, code)),
            Answer::RingForever => None,
        };
        self.incoming.insert(k, (req, tag, pending));
    }

    fn final_response(&mut self, now: Instant, layer: &mut Layer, k: TxKey, code: u16) {
        let Some((req, tag, pending)) = self.incoming.get_mut(&k) else {
            return;
        };
        *pending = None;
        let mut r = Response::from_request(req, StatusCode::new(code).unwrap());
        r.set_to_tag(tag).unwrap();
        let req = req.clone();
        if code == 200 {
            r.headers.push(HeaderName::Contact, self.contact(layer));
            let d = vaxel_sip::dialog::Dialog::from_uas(&req, &r).unwrap();
            self.dialogs.insert(d);
        }
        if layer.tx.send_response(now, k, r).is_ok() {
            self.log.push((now, format!("answered {k} {code}")));
        }
    }
}

impl Tu for Ua {
    fn on_event(&mut self, now: Instant, layer: &mut Layer, event: TxEvent) {
        match event {
            TxEvent::Request { tx, request, from } => {
                self.peer.get_or_insert(from.addr);
                match request.method {
                    Method::Invite if !Dialogs::is_in_dialog(&request) => {
                        self.answer_incoming(now, layer, tx, request)
                    }
                    _ => {
                        let resp = match self.dialogs.handle_request(&request) {
                            Ok(_) => Response::from_request(&request, StatusCode::OK),
                            Err(e) => vaxel_sip::dialog::error_response(
                                &request,
                                e.status().unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
                            ),
                        };
                        self.log
                            .push((now, format!("{} -> {}", request.method, resp.status)));
                        layer.tx.send_response(now, tx, resp).unwrap();
                    }
                }
            }
            TxEvent::Response { tx, response } => {
                if self.invites.contains_key(&tx) {
                    self.on_invite_response(now, layer, tx, response);
                } else if let Some(o) = self.others.get_mut(&tx)
                    && response.status.is_final()
                {
                    o.1 = Some(response.status.as_u16());
                    // Our BYE was answered: the dialog ends (§15.1.1).
                    if o.0 == Method::Bye
                        && let Some(id) = self.dialogs.find_for_response(&response).cloned()
                    {
                        self.dialogs.remove(&id);
                    }
                }
            }
            TxEvent::Cancelled { invite, .. } => {
                self.log.push((now, format!("cancelled {invite}")));
                self.final_response(now, layer, invite, 487);
            }
            TxEvent::Stray { message, .. } => match message {
                Message::Request(r) if r.method == Method::Ack => {
                    self.log.push((now, "ACK".into()));
                }
                Message::Response(r) if r.status.is_success() => {
                    // §13.2.2.4: a 2xx after the transaction: ACK it again.
                    let call_id = r.headers.call_id().unwrap().to_string();
                    if let Some(inv) = self.invites_by_call.get(&call_id).cloned() {
                        let _ = self.dialogs.handle_invite_response(&inv, &r);
                        self.send_ack(layer, &inv, &r);
                    }
                }
                _ => {}
            },
            TxEvent::Timeout { tx } => {
                self.log.push((now, format!("timeout {tx}")));
                if let Some(rec) = self.calls.get_mut(&tx) {
                    rec.timed_out = Some(now);
                } else if let Some(o) = self.others.get_mut(&tx) {
                    o.2 = true;
                } else if self.incoming.contains_key(&tx) {
                    self.unacked_2xx.push(tx);
                }
            }
            TxEvent::TransportError { .. } => {}
            TxEvent::Terminated { tx } => {
                self.terminated += 1;
                if let Some(inv) = self.invites.get(&tx) {
                    self.dialogs.invite_finished(inv);
                }
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let pending = self
            .incoming
            .values()
            .filter_map(|(_, _, p)| p.map(|p| p.0))
            .min();
        next_deadline([self.script.first().map(|s| s.0), pending])
    }

    fn on_wake(&mut self, now: Instant, layer: &mut Layer) {
        let due: Vec<(TxKey, u16)> = self
            .incoming
            .iter()
            .filter_map(|(k, (_, _, p))| p.filter(|p| p.0 <= now).map(|p| (*k, p.1)))
            .collect();
        for (k, code) in due {
            self.final_response(now, layer, k, code);
        }
        while self.script.first().is_some_and(|s| s.0 <= now) {
            let (_, action) = self.script.remove(0);
            match action {
                Action::Call { target, peer } => self.call(now, layer, &target, peer),
                Action::Cancel => {
                    let keys: Vec<TxKey> = self.invites.keys().copied().collect();
                    for k in keys {
                        if let Ok(c) = layer.tx.cancel(now, k) {
                            self.others.insert(c, (Method::Cancel, None, false));
                        }
                    }
                }
                Action::Bye => {
                    let ids: Vec<_> = self
                        .dialogs
                        .iter()
                        .filter(|d| d.state() == vaxel_sip::dialog::DialogState::Confirmed)
                        .map(|d| d.id().clone())
                        .collect();
                    for id in ids {
                        let d = self.dialogs.get_mut(&id).unwrap();
                        let mut bye = d.new_request(Method::Bye);
                        layer.stamp(&mut bye);
                        let peer = self.peer.unwrap();
                        let k = layer.tx.send_request(now, bye, layer.peer(peer)).unwrap();
                        self.others.insert(k, (Method::Bye, None, false));
                    }
                }
            }
        }
    }
}
