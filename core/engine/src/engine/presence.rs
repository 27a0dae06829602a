//! The engine as the office's presence server, the driver side: PUBLISH of
//! `presence` (RFC 3903) into the [`Compositor`], SUBSCRIBE to `presence` (RFC
//! 3856) and `dialog` (RFC 4235) served by vaxel-sip's [`Notifier`] (RFC 6665), and
//! NOTIFYs when what a watcher sees changes.
//!
//! What a user's presence is comes from [`crate::presence::compose`]: their newest
//! publication (or the one set through the control API), their registrations, the
//! engine's own legs (ringing, answered) and an active `*24*` profile (read from
//! the call flows through `presence_profile`). The engine task calls
//! [`Engine::presence_sync`] after every input; it does nothing while nobody watches
//! (no subscription and no control API listener) but lapse publications and store
//! the ones that changed. Publications (a device's, with its entity-tag and expiry,
//! and the control API's) are kept in the database and restored at start
//! ([`Engine::presence_restore`]), so a refresh PUBLISH after a restart still finds
//! its entity-tag and watchers still see what was published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use tracing::{debug, warn};
use vaxel_sip::auth::ChallengeKind;
use vaxel_sip::msg::{HeaderName, Method, Request, Response, StatusCode, Uri};
use vaxel_sip::transaction::TxKey;
use vaxel_sip::usage::body::DialogInfoState;
use vaxel_sip::usage::publication::{sip_etag, sip_if_match};
use vaxel_sip::usage::subscription::{Notifier, NotifierEvent};
use vaxel_sip::usage::{Local, Output, TxFailure, top_branch};
use vaxel_transport::{Peer, Target};

use super::{
    Command, CommandError, Engine, EngineEvent, EngineHandle, LegState, Side, status, token,
    unix_now, uri_user,
};
use crate::presence::{
    Compositor, DialogTracker, DialogView, Direction, Inputs, MAX_EXPIRES, MIN_EXPIRES, Package,
    Phone, PublishRequest, Published, View, compose, dialog_info, may_subscribe, pidf,
};

/// How often lapsed publications and subscriptions are looked for.
const TICK: Duration = Duration::from_millis(500);

/// One subscription we serve.
struct Sub {
    /// Behind a mutex only because the notifier's random generator is not `Sync` and
    /// the engine task's future must be `Send`; reached through `&mut` only, so never
    /// locked.
    notifier: std::sync::Mutex<Notifier>,
    /// The subscriber (extension).
    watcher: String,
    /// The watched user (extension).
    target: String,
    package: Package,
    /// Where NOTIFYs go: where the SUBSCRIBE came from (NAT-friendly).
    peer: Target,
    call_id: String,
    /// The last body sent (presence), to notify only on change.
    last_body: String,
    dialogs: DialogTracker,
    /// The watcher had a registered device since subscribing: when the last one goes,
    /// the subscription ends (`deactivated`, RFC 6665 §4.2.2).
    watcher_registered: bool,
}

/// The presence server's state in the engine task.
pub(super) struct PresenceServer {
    pub(super) compositor: Compositor,
    subs: HashMap<u64, Sub>,
    /// SIP Call-ID → subscriptions (in-dialog SUBSCRIBEs; a phone may hold several
    /// in one Call-ID, told apart by our tag).
    by_call_id: HashMap<String, Vec<u64>>,
    /// Our NOTIFY client transactions → (subscription, branch).
    txs: HashMap<TxKey, (u64, String)>,
    /// What the control API listeners were last told, per user.
    last: HashMap<String, View>,
    next_id: u64,
    next_tick: Instant,
}

impl Sub {
    fn n(&mut self) -> &mut Notifier {
        self.notifier.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

impl PresenceServer {
    pub(super) fn new() -> PresenceServer {
        PresenceServer {
            compositor: Compositor::new(),
            subs: HashMap::new(),
            by_call_id: HashMap::new(),
            txs: HashMap::new(),
            last: HashMap::new(),
            next_id: 0,
            next_tick: Instant::now(),
        }
    }

    /// Whether `tx` is one of our NOTIFYs.
    pub(super) fn owns_tx(&self, tx: TxKey) -> bool {
        self.txs.contains_key(&tx)
    }
}

/// Phone state and dialogs of every user on a call, from the engine's legs.
type Phones = HashMap<String, (Phone, Vec<DialogView>)>;

/// What the control API sets (`PUT /api/me/presence`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPresence {
    /// The activity (`available`, `meeting`, `lunch`…; `offline` closes).
    pub activity: String,
    /// A note.
    #[serde(default)]
    pub note: Option<String>,
    /// When it ends (RFC 3339); the user is back to their devices' word then.
    #[serde(default)]
    pub until: Option<String>,
}

impl Engine {
    /// An out-of-dialog SUBSCRIBE or PUBLISH: digest-challenged like every request from
    /// outside, then served.
    pub(super) async fn presence_request(&mut self, tx: TxKey, req: Request, from: Peer) {
        let Some(user) = self
            .authenticate(tx, &req, from, ChallengeKind::Proxy)
            .await
        else {
            return;
        };
        let event = req
            .headers
            .get(&HeaderName::Event)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let package = Package::from_event(&event);
        let target = uri_user(&req.uri).and_then(|u| self.user_for(&u));
        match (req.method.clone(), package) {
            (Method::Publish, Some(Package::Presence)) => {
                self.presence_publish(tx, &req, &user.extension, target)
                    .await
            }
            (Method::Subscribe, Some(p)) => {
                self.presence_subscribe(tx, req, from, &user.extension, target, p)
                    .await
            }
            _ => {
                // RFC 6665 §4.2.1.1 / RFC 3903 §6 step 2: 489 Bad Event.
                let mut r = Response::from_request(&req, status(489));
                let _ = r.set_to_tag(&self.tag_for(&req));
                let allowed = if req.method == Method::Publish {
                    "presence"
                } else {
                    "presence, dialog"
                };
                r.headers.push(HeaderName::AllowEvents, allowed);
                self.respond(tx, r).await;
            }
        }
    }

    /// PUBLISH (RFC 3903 §6): only one's own presence.
    async fn presence_publish(
        &mut self,
        tx: TxKey,
        req: &Request,
        user: &str,
        target: Option<String>,
    ) {
        match target {
            None => return self.reply(tx, req, 404).await,
            Some(t) if t != user => return self.reply(tx, req, 403).await,
            Some(_) => {}
        }
        let has_body = !req.body.is_empty();
        let pidf_type = req
            .headers
            .content_type()
            .ok()
            .flatten()
            .is_some_and(|t| t.is("application", "pidf+xml"));
        if has_body && !pidf_type {
            // §6 step 3 (RFC 3261 §21.4.13): 415 with what we take.
            let mut r = Response::from_request(req, status(415));
            let _ = r.set_to_tag(&self.tag_for(req));
            r.headers.push(HeaderName::Accept, "application/pidf+xml");
            return self.respond(tx, r).await;
        }
        let if_match = req.headers.get(&sip_if_match()).map(|v| v.to_string());
        let publish = PublishRequest {
            if_match: if_match.as_deref(),
            expires: req.headers.expires().ok().flatten(),
            body: has_body.then_some(&req.body[..]),
        };
        let result = self
            .presence
            .compositor
            .publish(unix_now(), user, &publish, token());
        match result {
            Ok(ok) => {
                // Queued for the disk before the 200 goes out.
                self.presence_persist();
                let mut r = Response::from_request(req, StatusCode::OK);
                let _ = r.set_to_tag(&self.tag_for(req));
                if !ok.etag.is_empty() {
                    r.headers.push(sip_etag(), ok.etag);
                }
                r.headers.push(HeaderName::Expires, ok.expires.to_string());
                self.respond(tx, r).await;
            }
            Err(e) => {
                debug!("PUBLISH from {user} refused: {e}");
                let mut r = Response::from_request(req, status(e.status()));
                let _ = r.set_to_tag(&self.tag_for(req));
                if e.status() == 423 {
                    r.headers
                        .push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
                }
                self.respond(tx, r).await;
            }
        }
    }

    /// SUBSCRIBE (RFC 6665 §4.2.1): any office user may watch any other.
    async fn presence_subscribe(
        &mut self,
        tx: TxKey,
        req: Request,
        from: Peer,
        watcher: &str,
        target: Option<String>,
        package: Package,
    ) {
        if let Err(code) = may_subscribe(self.users.contains_key(watcher), target.is_some()) {
            return self.reply(tx, &req, code).await;
        }
        let Some(target) = target else { return };
        let expires = req.headers.expires().ok().flatten();
        if expires.is_some_and(|e| e != 0 && e < MIN_EXPIRES) {
            let mut r = Response::from_request(&req, status(423));
            let _ = r.set_to_tag(&self.tag_for(&req));
            r.headers
                .push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
            return self.respond(tx, r).await;
        }
        let call_id = req
            .headers
            .call_id()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let via = self.sip.via(from.transport);
        let local = Local {
            transport: via.transport,
            host: via.host,
            port: via.port,
            contact: Uri::Sip(self.sip.contact_uri("presence", from.transport)),
            user_agent: Some(concat!("vaxel-engine/", env!("CARGO_PKG_VERSION")).into()),
        };
        let rng = Box::new(rand::rngs::StdRng::from_rng(&mut rand::rng()));
        let now = Instant::now();
        let mut notifier = Notifier::incoming(now, local, rng, tx, req);
        // The Requested event is ours to answer here.
        while let Some(o) = notifier.poll_output() {
            debug_assert!(matches!(o, Output::Event(NotifierEvent::Requested { .. })));
        }
        let mut sub = Sub {
            notifier: std::sync::Mutex::new(notifier),
            watcher: watcher.to_owned(),
            target: target.clone(),
            package,
            peer: Target::new(from.transport, from.addr),
            call_id: call_id.clone(),
            last_body: String::new(),
            dialogs: DialogTracker::default(),
            watcher_registered: self.bindings.get(watcher).is_some_and(|b| !b.is_empty()),
        };
        let phones = self.presence_phones();
        let body = self.presence_body(&mut sub, &phones).unwrap_or_default();
        sub.last_body = body.clone();
        sub.n().accept(
            now,
            MAX_EXPIRES,
            true,
            package.content_type(),
            Bytes::from(body),
        );
        self.presence.next_id += 1;
        let id = self.presence.next_id;
        debug!("{watcher} watches {target} ({package:?})");
        self.presence.subs.insert(id, sub);
        self.presence
            .by_call_id
            .entry(call_id)
            .or_default()
            .push(id);
        self.presence_drain(id).await;
    }

    /// An in-dialog SUBSCRIBE (refresh or removal, RFC 6665 §4.2.1.2): `true` when it
    /// was one of our subscriptions.
    pub(super) async fn presence_in_dialog(&mut self, tx: TxKey, req: &Request) -> bool {
        let Some(cid) = req.headers.call_id().ok().map(|c| c.to_string()) else {
            return false;
        };
        let Some(ids) = self.presence.by_call_id.get(&cid) else {
            return false;
        };
        let mut owner = None;
        for id in ids.clone() {
            if let Some(sub) = self.presence.subs.get_mut(&id)
                && sub.n().owns_request(req)
            {
                owner = Some(id);
                break;
            }
        }
        let Some(id) = owner else {
            return false;
        };
        let Some(sub) = self.presence.subs.get_mut(&id) else {
            return false;
        };
        sub.n().handle_request(Instant::now(), tx, req);
        self.presence_drain(id).await;
        true
    }

    /// A response to one of our NOTIFYs.
    pub(super) async fn presence_response(&mut self, tx: TxKey, resp: Response) {
        let Some((id, _)) = self.presence.txs.get(&tx).cloned() else {
            return;
        };
        if resp.status.is_final() {
            self.presence.txs.remove(&tx);
            if !resp.status.is_success() {
                debug!(
                    "NOTIFY of subscription {id} answered {}",
                    resp.status.as_u16()
                );
            }
        }
        if let Some(sub) = self.presence.subs.get_mut(&id) {
            sub.n().handle_response(Instant::now(), &resp);
            self.presence_drain(id).await;
        }
    }

    /// One of our NOTIFYs got no response (timeout or transport error: RFC 6665 §4.2.2
    /// ends the subscription).
    pub(super) async fn presence_tx_failed(&mut self, tx: TxKey) {
        let Some((id, branch)) = self.presence.txs.remove(&tx) else {
            return;
        };
        if let Some(sub) = self.presence.subs.get_mut(&id) {
            sub.n()
                .handle_failure(Instant::now(), &branch, TxFailure::Timeout);
            self.presence_drain(id).await;
        }
    }

    /// Carries out what a subscription's notifier asks for; forgets it once over.
    async fn presence_drain(&mut self, id: u64) {
        let mut outputs = Vec::new();
        let Some(sub) = self.presence.subs.get_mut(&id) else {
            return;
        };
        while let Some(o) = sub.n().poll_output() {
            outputs.push(o);
        }
        let peer = sub.peer.clone();
        let mut over = false;
        for o in outputs {
            match o {
                Output::Request(r) => {
                    let branch = top_branch(&r.headers).unwrap_or_default();
                    match self.sip.send_request(r, peer.clone()).await {
                        Ok(key) => {
                            self.presence.txs.insert(key, (id, branch));
                        }
                        Err(e) => debug!("cannot send NOTIFY: {e}"),
                    }
                }
                Output::Response { tx, response } => self.respond(tx, response).await,
                Output::Event(NotifierEvent::Terminated { reason }) => {
                    debug!("presence subscription {id} ended: {reason}");
                    over = true;
                }
                _ => {}
            }
        }
        if over
            && let Some(sub) = self.presence.subs.remove(&id)
            && let Some(ids) = self.presence.by_call_id.get_mut(&sub.call_id)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.presence.by_call_id.remove(&sub.call_id);
            }
        }
    }

    /// Phone state and dialogs per user, from the legs of live calls.
    fn presence_phones(&self) -> Phones {
        let mut out: Phones = HashMap::new();
        for (leg_id, leg) in &self.legs {
            if leg.state == LegState::Ended || !self.users.contains_key(&leg.party) {
                continue;
            }
            let Some(call) = self.calls.get(&leg.call) else {
                continue;
            };
            let (state, phone) = match leg.state {
                LegState::Confirmed => (DialogInfoState::Confirmed, Phone::Busy),
                LegState::Early => (DialogInfoState::Early, Phone::Ringing),
                _ => (DialogInfoState::Trying, Phone::Ringing),
            };
            let (direction, remote) = match leg.side {
                Side::A => (Direction::Initiator, &call.callee),
                Side::B => (Direction::Recipient, &call.caller),
            };
            let e = out.entry(leg.party.clone()).or_default();
            if phone == Phone::Busy || e.0 == Phone::Idle {
                e.0 = phone;
            }
            e.1.push(DialogView {
                id: format!("{}-{leg_id}", call.record),
                state,
                direction,
                remote: Some(remote.clone()),
            });
        }
        for (_, list) in out.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        out
    }

    fn presence_view(&self, ext: &str, phones: &Phones) -> View {
        compose(&Inputs {
            published: self.presence.compositor.current(ext),
            devices: self.bindings.get(ext).map_or(0, Vec::len),
            phone: phones.get(ext).map_or(Phone::Idle, |p| p.0),
            profile: self
                .presence_profile(ext)
                .map(|(p, until)| (p, until.map(|t| t.as_second()))),
        })
    }

    /// The NOTIFY body a subscription should carry now; `None` when unchanged.
    fn presence_body(&self, sub: &mut Sub, phones: &Phones) -> Option<String> {
        let entity = format!("sip:{}@{}", sub.target, self.realm);
        match sub.package {
            Package::Presence => {
                let body = pidf(&entity, &self.presence_view(&sub.target, phones));
                (body != sub.last_body).then_some(body)
            }
            Package::Dialog => {
                let now = phones
                    .get(&sub.target)
                    .map(|p| p.1.clone())
                    .unwrap_or_default();
                let doc = sub.dialogs.update(now)?;
                let version = sub.dialogs.next_version();
                Some(dialog_info(&entity, version, &doc, &self.realm))
            }
        }
    }

    /// After every input of the engine task: lapse publications and subscriptions,
    /// end subscriptions whose watcher unregistered or whose target left the office,
    /// and NOTIFY (and tell the control API) what changed.
    pub(super) async fn presence_sync(&mut self) {
        let now = Instant::now();
        let mut touched: Vec<u64> = Vec::new();
        let tick = now >= self.presence.next_tick;
        if tick {
            self.presence.next_tick = now + TICK;
            self.presence.compositor.expire(unix_now());
        }
        self.presence_persist();
        if tick {
            for (id, sub) in self.presence.subs.iter_mut() {
                sub.n().handle_timeout(now);
                let devices = self.bindings.get(&sub.watcher).map_or(0, Vec::len);
                if !self.users.contains_key(&sub.target) {
                    sub.n().terminate(now, "noresource");
                } else if devices > 0 {
                    sub.watcher_registered = true;
                } else if sub.watcher_registered {
                    sub.n().terminate(now, "deactivated");
                }
                touched.push(*id);
            }
        }
        let api = self.events.receiver_count() > 0;
        if !api && !self.presence.last.is_empty() {
            // Nobody listens: what they were told is forgotten, and the next listener
            // hears everyone's presence first.
            self.presence.last.clear();
        }
        if self.presence.subs.is_empty() && !api {
            for id in touched {
                self.presence_drain(id).await;
            }
            return;
        }
        let phones = self.presence_phones();
        if api {
            let mut exts: Vec<&String> = self.users.keys().collect();
            exts.sort();
            let mut changed = Vec::new();
            for ext in exts {
                let v = self.presence_view(ext, &phones);
                if self.presence.last.get(ext) != Some(&v) {
                    changed.push((ext.clone(), v));
                }
            }
            for (extension, presence) in changed {
                self.presence
                    .last
                    .insert(extension.clone(), presence.clone());
                self.emit(EngineEvent::Presence {
                    extension,
                    presence,
                });
            }
        }
        let ids: Vec<u64> = self.presence.subs.keys().copied().collect();
        for id in ids {
            let Some(mut sub) = self.presence.subs.remove(&id) else {
                continue;
            };
            if let Some(body) = self.presence_body(&mut sub, &phones) {
                sub.last_body = body.clone();
                let ct = sub.package.content_type();
                sub.n().notify(now, true, ct, Bytes::from(body));
                touched.push(id);
            }
            self.presence.subs.insert(id, sub);
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            self.presence_drain(id).await;
        }
    }

    /// At start: takes back the publications stored before the restart (lapsed ones
    /// are dropped, RFC 3903 §6); how many.
    pub(super) fn presence_restore(&mut self) -> usize {
        let now = unix_now();
        let stored = match self.db.get().publications(now) {
            Ok(p) => p,
            Err(e) => {
                warn!("presence publications not restored: {e}");
                return 0;
            }
        };
        let n = stored.len();
        self.presence.compositor.restore(now, stored);
        n
    }

    /// Stores the publications of the users whose publications changed (the
    /// database's writer queue commits them within a batch).
    fn presence_persist(&mut self) {
        for user in self.presence.compositor.take_changed() {
            let pubs = self.presence.compositor.stored(&user);
            if let Err(e) = self.db.get().store_publications(&user, pubs) {
                warn!("presence publications not stored: {e}");
            }
        }
    }

    /// Every user's presence, by extension.
    fn presence_all(&self) -> Vec<(String, View)> {
        let phones = self.presence_phones();
        let mut list: Vec<(String, View)> = self
            .users
            .keys()
            .map(|e| (e.clone(), self.presence_view(e, &phones)))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }
}

impl EngineHandle {
    async fn on_engine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, CommandError> + Send + 'static,
    ) -> Result<T, CommandError> {
        self.ask(|reply| {
            Command::Flow(Box::new(move |e: &mut Engine| {
                let _ = reply.send(f(e));
            }))
        })
        .await
    }

    /// Every user's presence, by extension.
    pub async fn presence(&self) -> Result<Vec<(String, View)>, CommandError> {
        self.on_engine(|e| Ok(e.presence_all())).await
    }

    /// Sets a user's presence as the control API's `PUT /api/me/presence` does: the
    /// newest word, like a PUBLISH from one of their devices; watchers are told.
    pub async fn set_presence(
        &self,
        extension: &str,
        set: SetPresence,
    ) -> Result<View, CommandError> {
        let activity = set.activity.trim().to_ascii_lowercase();
        if activity.is_empty() || activity.contains(char::is_whitespace) || activity.len() > 40 {
            return Err(CommandError::Invalid(format!(
                "the activity is one word, not {:?}",
                set.activity
            )));
        }
        let until = match set
            .until
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            None => None,
            Some(u) => Some(u.parse::<jiff::Timestamp>().map_err(|e| {
                CommandError::Invalid(format!("until: give an RFC 3339 time, not {u:?} ({e})"))
            })?),
        };
        if until.is_some_and(|t| t <= jiff::Timestamp::now()) {
            return Err(CommandError::Invalid("until: that time has passed".into()));
        }
        let (open, activity) = match activity.as_str() {
            "available" | "open" | "online" => (true, None),
            "offline" | "closed" => (false, None),
            _ => (true, Some(activity)),
        };
        let state = Published {
            open,
            until: until.filter(|_| activity.is_some()).map(|t| t.to_string()),
            activity,
            note: set.note.filter(|n| !n.trim().is_empty()),
        };
        let ext = extension.to_owned();
        self.on_engine(move |e| {
            if !e.users.contains_key(&ext) {
                return Err(CommandError::Invalid(format!("no user {ext}")));
            }
            e.presence
                .compositor
                .set_api(&ext, state, until.map(|t| t.as_second()));
            // Watchers hear of it at the next sync, right after this command.
            let phones = e.presence_phones();
            Ok(e.presence_view(&ext, &phones))
        })
        .await
    }
}
