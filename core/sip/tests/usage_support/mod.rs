//! Endpoints made of one `Transactions` and the `vaxel_sip::usage` state
//! machines, over the vaxel-testkit network in virtual time. Each endpoint
//! is the thin driver the usage module documentation describes: it routes
//! transaction events to usages and carries out their outputs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use vaxel_sip::auth::{
    ChallengeKind, DigestHash, DigestServer, RequestParts, ServerConfig, StoredUser, Verification,
    ha1,
};
use vaxel_sip::dialog::{error_response, no_dialog_response};
use vaxel_sip::msg::{
    self, HeaderName, Message, Method, NameAddr, Request, Response, StatusCode, Uri,
};
use vaxel_sip::transaction::{Peer, TimerConfig, Transactions, TransportKind, TxEvent, TxKey};
use vaxel_sip::usage::message::{Pager, PagerEvent};
use vaxel_sip::usage::registration::{Registration, RegistrationEvent};
use vaxel_sip::usage::session::{Session, SessionConfig, SessionEvent};
use vaxel_sip::usage::subscription::{Notifier, NotifierEvent, Subscriber, SubscriberEvent};
use vaxel_sip::usage::{ClientTxs, Local, Output, TxFailure};
use vaxel_testkit::{LinkConditions, SimClock, SimNetwork, next_deadline};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Reg,
    Pager,
    Session(usize),
    Sub(usize),
    Notif(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    Reg(RegistrationEvent),
    Pager(PagerEvent),
    Session(usize, SessionEvent),
    Sub(usize, SubscriberEvent),
    Notif(usize, NotifierEvent),
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

pub fn na(s: &str) -> NameAddr {
    NameAddr::new(uri(s))
}

pub fn rng(seed: u64) -> Box<dyn RngCore + Send> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

pub fn sdp(tag: &str, dir: &str) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\na=x-tag:{tag}\r\n"
    ))
}

/// A registrar from `auth::DigestServer` with in-memory bindings.
pub struct Registrar {
    pub server: DigestServer,
    pub users: HashMap<String, String>,
    pub bindings: HashMap<String, Vec<(Uri, Instant)>>,
    pub min_expires: Option<u32>,
    pub fail_next: u32,
    pub max_expires: u32,
    pub registers_seen: u32,
    pub key_seed: u8,
}

impl Registrar {
    pub fn new(key_seed: u8) -> Self {
        let cfg = ServerConfig::new(ChallengeKind::Www, "example.com");
        Registrar {
            server: DigestServer::new(cfg, vec![key_seed; 32]).unwrap(),
            users: HashMap::from([("alice".to_owned(), "secret".to_owned())]),
            bindings: HashMap::new(),
            min_expires: None,
            fail_next: 0,
            max_expires: 7200,
            registers_seen: 0,
            key_seed,
        }
    }

    /// Loses all state and changes its nonce key, as after a restart.
    pub fn restart(&mut self) {
        let mut fresh = Registrar::new(self.key_seed.wrapping_add(1));
        fresh.min_expires = self.min_expires;
        *self = fresh;
    }

    fn handle(&mut self, now: Instant, wall: u64, rng: &mut ChaCha8Rng, req: &Request) -> Response {
        self.registers_seen += 1;
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return error_response(req, StatusCode::SERVICE_UNAVAILABLE);
        }
        let creds: Vec<String> = req
            .headers
            .get_all(&HeaderName::Authorization)
            .map(|v| v.to_string())
            .collect();
        let refs: Vec<&str> = creds.iter().map(String::as_str).collect();
        let uri = req.uri.to_string();
        let parts = RequestParts {
            method: "REGISTER",
            request_uri: &uri,
            body: b"",
        };
        let users = self.users.clone();
        let verdict = self.server.verify(&parts, &refs, wall, |q| {
            let pw = users.get(q.username)?;
            Some(StoredUser {
                username: q.username.to_owned(),
                ha1: ha1(q.hash, q.username, "example.com", pw),
            })
        });
        let _ = DigestHash::Sha256;
        match verdict {
            Verification::Authenticated(_) => {}
            other => {
                let mut random = [0u8; 16];
                rng.fill_bytes(&mut random);
                let mut r = error_response(req, StatusCode::UNAUTHORIZED);
                for c in self.server.challenge(wall, random, other.is_stale()) {
                    r.headers.push(HeaderName::WwwAuthenticate, c.to_string());
                }
                return r;
            }
        }
        let aor = req.headers.to().unwrap().uri.to_string();
        let header_expires = req.headers.expires().ok().flatten();
        let contacts = req.headers.contacts().unwrap();
        for c in &contacts {
            let e = c.expires().or(header_expires).unwrap_or(3600);
            if e != 0
                && let Some(min) = self.min_expires
                && e < min
            {
                let mut r = error_response(req, StatusCode::new(423).unwrap());
                r.headers.push(HeaderName::MinExpires, min.to_string());
                return r;
            }
        }
        let list = self.bindings.entry(aor).or_default();
        list.retain(|(_, until)| *until > now);
        for c in contacts {
            let Some(a) = c.address() else { continue };
            let e = c
                .expires()
                .or(header_expires)
                .unwrap_or(3600)
                .min(self.max_expires);
            list.retain(|(u, _)| !u.equivalent(&a.uri));
            if e > 0 {
                list.push((a.uri.clone(), now + Duration::from_secs(u64::from(e))));
            }
        }
        let mut r = error_response(req, StatusCode::OK);
        // Another device's binding too, so the client must find its own.
        r.headers.push(
            HeaderName::Contact,
            "<sip:alice@198.51.100.7:5070>;expires=1234",
        );
        for (u, until) in list.iter() {
            let left = until.saturating_duration_since(now).as_secs();
            r.headers
                .push(HeaderName::Contact, format!("<{u}>;expires={left}"));
        }
        r
    }
}

pub struct Ep {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub tx: Transactions,
    pub rng: ChaCha8Rng,
    pub local: Local,
    pub aor: NameAddr,
    pub reg: Option<Registration>,
    pub pager: Option<Pager>,
    pub sessions: Vec<Session>,
    pub subs: Vec<Subscriber>,
    pub notifiers: Vec<Notifier>,
    pub registrar: Option<Registrar>,
    pub client: ClientTxs<Owner>,
    pub events: Vec<(Instant, Ev)>,
    pub unrouted_481: u32,
    pub start: Instant,
    /// Answer every re-INVITE/UPDATE offer at once with a sendrecv (or, to a
    /// hold, recvonly) answer.
    pub auto_offer: bool,
    to_accept: Vec<(usize, bool)>,
}

impl Ep {
    pub fn new(name: &'static str, a: &str, user: &str, seed: u64, start: Instant) -> Ep {
        let address = addr(a);
        let local = Local::udp(address, Some(user));
        let aor = na(&format!("sip:{user}@example.com"));
        let pager = Pager::new(local.clone(), aor.clone(), None, rng(seed ^ 0x55));
        Ep {
            name,
            addr: address,
            tx: Transactions::new(TimerConfig::default()),
            rng: ChaCha8Rng::seed_from_u64(seed),
            local,
            aor,
            reg: None,
            pager: Some(pager),
            sessions: Vec::new(),
            subs: Vec::new(),
            notifiers: Vec::new(),
            registrar: None,
            client: ClientTxs::new(),
            events: Vec::new(),
            unrouted_481: 0,
            start,
            auto_offer: true,
            to_accept: Vec::new(),
        }
    }

    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            local: self.local.clone(),
            from: self.aor.clone(),
            auth: None,
        }
    }

    pub fn seed(&mut self) -> Box<dyn RngCore + Send> {
        rng(self.rng.next_u64())
    }

    fn resolve(r: &Request) -> Peer {
        let target = r
            .headers
            .routes()
            .ok()
            .and_then(|v| v.into_iter().next().map(|n| n.uri))
            .unwrap_or_else(|| r.uri.clone());
        let sip = target.as_sip().expect("sip uri");
        let a: SocketAddr = format!("{}:{}", sip.host, sip.port.unwrap_or(5060))
            .parse()
            .unwrap();
        Peer {
            transport: TransportKind::Udp,
            addr: a,
        }
    }

    fn carry<E>(&mut self, now: Instant, owner: Owner, o: Output<E>, wrap: impl Fn(E) -> Ev) {
        match o {
            Output::Request(r) => {
                let branch = vaxel_sip::usage::top_branch(&r.headers).unwrap();
                let peer = Self::resolve(&r);
                let key = self.tx.send_request(now, r, peer).unwrap();
                self.client.insert(key, owner, branch);
            }
            Output::Ack(r) => {
                let peer = Self::resolve(&r);
                self.tx.send_ack(&r, peer).unwrap();
            }
            Output::Cancel { branch } => {
                if let Some(k) = self.client.key_of(&branch) {
                    let _ = self.tx.cancel(now, k);
                }
            }
            Output::Response { tx, response } => {
                let _ = self.tx.send_response(now, tx, response);
            }
            Output::Event(e) => {
                let ev = wrap(e);
                if let Ev::Session(i, SessionEvent::Offer { offer }) = &ev {
                    let hold = vaxel_sip::usage::body::sdp_direction(offer).is_hold();
                    self.to_accept.push((*i, hold));
                }
                self.events.push((now, ev));
            }
        }
    }

    /// Drains every usage's output into the transaction layer.
    pub fn drain_usages(&mut self, now: Instant) -> bool {
        let mut busy = false;
        if self.auto_offer {
            for (i, hold) in std::mem::take(&mut self.to_accept) {
                let dir = if hold { "recvonly" } else { "sendrecv" };
                let _ = self.sessions[i].accept_offer(now, sdp(self.name, dir));
            }
        }
        while let Some(o) = self.reg.as_mut().and_then(|r| r.poll_output()) {
            busy = true;
            self.carry(now, Owner::Reg, o, Ev::Reg);
        }
        while let Some(o) = self.pager.as_mut().and_then(|p| p.poll_output()) {
            busy = true;
            self.carry(now, Owner::Pager, o, Ev::Pager);
        }
        for i in 0..self.sessions.len() {
            while let Some(o) = self.sessions[i].poll_output() {
                busy = true;
                self.carry(now, Owner::Session(i), o, move |e| Ev::Session(i, e));
            }
        }
        for i in 0..self.subs.len() {
            while let Some(o) = self.subs[i].poll_output() {
                busy = true;
                self.carry(now, Owner::Sub(i), o, move |e| Ev::Sub(i, e));
            }
        }
        for i in 0..self.notifiers.len() {
            while let Some(o) = self.notifiers[i].poll_output() {
                busy = true;
                self.carry(now, Owner::Notif(i), o, move |e| Ev::Notif(i, e));
            }
        }
        busy
    }

    fn on_response(&mut self, now: Instant, owner: Owner, r: &Response) {
        match owner {
            Owner::Reg => self.reg.as_mut().unwrap().handle_response(now, r),
            Owner::Pager => self.pager.as_mut().unwrap().handle_response(now, r),
            Owner::Session(i) => self.sessions[i].handle_response(now, r),
            Owner::Sub(i) => self.subs[i].handle_response(now, r),
            Owner::Notif(i) => self.notifiers[i].handle_response(now, r),
        }
    }

    fn on_failure(&mut self, now: Instant, owner: Owner, b: &str, f: TxFailure) {
        match owner {
            Owner::Reg => self.reg.as_mut().unwrap().handle_failure(now, b, f),
            Owner::Pager => self.pager.as_mut().unwrap().handle_failure(now, b, f),
            Owner::Session(i) => self.sessions[i].handle_failure(now, b, f),
            Owner::Sub(i) => self.subs[i].handle_failure(now, b, f),
            Owner::Notif(i) => self.notifiers[i].handle_failure(now, b, f),
        }
    }

    fn wall(&self, now: Instant) -> u64 {
        1_700_000_000 + now.saturating_duration_since(self.start).as_secs()
    }

    fn on_request(&mut self, now: Instant, tx: TxKey, req: Request) {
        if let Some(i) = self.sessions.iter().position(|s| s.owns_request(&req)) {
            self.sessions[i].handle_request(now, tx, &req);
            return;
        }
        if let Some(i) = self.subs.iter().position(|s| s.owns_request(&req)) {
            self.subs[i].handle_request(now, tx, &req);
            return;
        }
        if let Some(i) = self.notifiers.iter().position(|s| s.owns_request(&req)) {
            self.notifiers[i].handle_request(now, tx, &req);
            return;
        }
        if vaxel_sip::dialog::Dialogs::is_in_dialog(&req) {
            self.unrouted_481 += 1;
            let _ = self.tx.send_response(now, tx, no_dialog_response(&req));
            return;
        }
        match req.method {
            Method::Invite => {
                let cfg = self.session_config();
                let r = self.seed();
                self.sessions.push(Session::incoming(now, cfg, r, tx, req));
            }
            Method::Message => self.pager.as_mut().unwrap().handle_request(now, tx, &req),
            Method::Subscribe => {
                let r = self.seed();
                self.notifiers
                    .push(Notifier::incoming(now, self.local.clone(), r, tx, req));
            }
            Method::Register if self.registrar.is_some() => {
                let wall = self.wall(now);
                let resp = self
                    .registrar
                    .as_mut()
                    .unwrap()
                    .handle(now, wall, &mut self.rng, &req);
                let _ = self.tx.send_response(now, tx, resp);
            }
            _ => {
                let _ = self.tx.send_response(
                    now,
                    tx,
                    error_response(&req, StatusCode::METHOD_NOT_ALLOWED),
                );
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: TxEvent) {
        match e {
            TxEvent::Request { tx, request, .. } => self.on_request(now, tx, request),
            TxEvent::Response { tx, response } => {
                if let Some((o, _)) = self.client.get(tx).cloned() {
                    self.on_response(now, o, &response);
                }
            }
            TxEvent::Cancelled { invite, .. } => {
                if let Some(s) = self
                    .sessions
                    .iter_mut()
                    .find(|s| s.server_tx() == Some(invite))
                {
                    s.handle_cancelled(now);
                }
            }
            TxEvent::Stray { message, .. } => match message {
                Message::Request(r) if r.method == Method::Ack => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.owns_request(&r)) {
                        s.handle_ack(now, &r);
                    }
                }
                Message::Response(r) => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.owns_response(&r)) {
                        s.handle_response(now, &r);
                    }
                }
                _ => {}
            },
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => {
                let f = if matches!(e, TxEvent::Timeout { .. }) {
                    TxFailure::Timeout
                } else {
                    TxFailure::Transport
                };
                if let Some((o, b)) = self.client.get(tx).cloned() {
                    self.on_failure(now, o, &b, f);
                } else if let Some(s) = self.sessions.iter_mut().find(|s| s.server_tx() == Some(tx))
                {
                    s.handle_server_timeout(now, tx);
                }
            }
            TxEvent::Terminated { tx } => {
                self.client.remove(tx);
            }
        }
    }

    fn pump(&mut self, now: Instant, net: &mut SimNetwork) {
        loop {
            let mut busy = self.drain_usages(now);
            while let Some(t) = self.tx.poll_transmit() {
                net.send(now, self.addr, t.peer.addr, t.bytes);
                busy = true;
            }
            while let Some(e) = self.tx.poll_event() {
                self.on_event(now, e);
                busy = true;
            }
            if !busy {
                break;
            }
        }
    }

    fn next(&self) -> Option<Instant> {
        let mut d = vec![self.tx.poll_timeout()];
        d.push(self.reg.as_ref().and_then(|r| r.poll_timeout()));
        d.extend(self.sessions.iter().map(|s| s.poll_timeout()));
        d.extend(self.subs.iter().map(|s| s.poll_timeout()));
        d.extend(self.notifiers.iter().map(|s| s.poll_timeout()));
        next_deadline(d)
    }

    fn tick(&mut self, now: Instant) {
        if self.tx.poll_timeout().is_some_and(|t| t <= now) {
            self.tx.handle_timeout(now);
        }
        if let Some(r) = self.reg.as_mut()
            && r.poll_timeout().is_some_and(|t| t <= now)
        {
            r.handle_timeout(now);
        }
        for s in &mut self.sessions {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        for s in &mut self.subs {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        for s in &mut self.notifiers {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    pub fn session_events(&self, i: usize) -> Vec<SessionEvent> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Session(j, e) if *j == i => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn reg_events(&self) -> Vec<(Instant, RegistrationEvent)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Ev::Reg(e) => Some((*t, e.clone())),
                _ => None,
            })
            .collect()
    }
}

pub struct Sim {
    pub clock: SimClock,
    pub net: SimNetwork,
    pub eps: Vec<Ep>,
}

impl Sim {
    pub fn new(seed: u64, conditions: LinkConditions) -> Sim {
        let mut net = SimNetwork::new(seed, conditions);
        net.set_tracing(true);
        Sim {
            clock: SimClock::new(),
            net,
            eps: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &'static str, a: &str, user: &str) -> usize {
        let seed = 1000 + self.eps.len() as u64 * 77;
        let start = self.clock.now();
        self.eps.push(Ep::new(name, a, user, seed, start));
        self.eps.len() - 1
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Runs until nothing is left to do or `limit` of virtual time has passed.
    pub fn run_for(&mut self, limit: Duration) {
        let end = self.clock.now() + limit;
        loop {
            let now = self.clock.now();
            for ep in &mut self.eps {
                ep.pump(now, &mut self.net);
            }
            let mut ds = vec![self.net.next_delivery()];
            ds.extend(self.eps.iter().map(|e| e.next()));
            match next_deadline(ds) {
                Some(t) if t <= end => self.clock.advance_to(t),
                _ => {
                    self.clock.advance_to(end);
                    break;
                }
            };
            let now = self.clock.now();
            while let Some(d) = self.net.poll_delivery(now) {
                if let Some(ep) = self.eps.iter_mut().find(|e| e.addr == d.to) {
                    let m = msg::parse(d.payload).expect("endpoints send what msg parses");
                    let peer = Peer {
                        transport: TransportKind::Udp,
                        addr: d.from,
                    };
                    ep.tx.handle_message(now, m, peer);
                    ep.pump(now, &mut self.net);
                }
            }
            for ep in &mut self.eps {
                ep.tick(now);
            }
        }
        let now = self.clock.now();
        for ep in &mut self.eps {
            ep.pump(now, &mut self.net);
        }
    }

    /// Runs in steps until `done` holds or `limit` passes; true when it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.clock.now() + limit;
        while self.clock.now() < end {
            if done(self) {
                return true;
            }
            self.run_for(Duration::from_millis(50));
        }
        done(self)
    }

    /// The first lines of delivered SIP messages (a ladder).
    pub fn ladder(&self) -> Vec<String> {
        let names: HashMap<SocketAddr, &str> = self.eps.iter().map(|e| (e.addr, e.name)).collect();
        self.net.ladder(|a| {
            names
                .get(&a)
                .map_or_else(|| a.to_string(), |n| n.to_string())
        })
    }

    /// Starts a call from endpoint `a` to endpoint `b`'s user; returns the session index at `a`.
    pub fn call(&mut self, a: usize, b: usize, offer: Bytes) -> usize {
        let now = self.now();
        let to_user = self.eps[b].aor.uri.as_sip().unwrap().user.clone().unwrap();
        let target = uri(&format!("sip:{}@{}", to_user, self.eps[b].addr));
        let cfg = self.eps[a].session_config();
        let r = self.eps[a].seed();
        let to = na(&format!("sip:{to_user}@example.com"));
        let s = Session::invite(now, cfg, r, target, to, offer, Vec::new());
        self.eps[a].sessions.push(s);
        self.eps[a].sessions.len() - 1
    }
}
