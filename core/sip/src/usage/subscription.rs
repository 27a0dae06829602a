//! Subscriptions (RFC 6665): the subscriber ([`Subscriber`]) and the notifier
//! ([`Notifier`]). Event package bodies are opaque here; presence (RFC 3856,
//! PIDF RFC 3863) and dialog-info (RFC 4235) documents can be built and read
//! with [`super::body`].
//!
//! Subscriber: SUBSCRIBE with Event, Accept and Expires (§4.1.2.1); the 2xx
//! and the NOTIFYs (which may come first, §4.1.2.4: the dialog is then made
//! from the NOTIFY) set the expiry; refresh at the same point as a
//! registration ([`super::registration::refresh_delay`]); NOTIFYs are
//! answered 200 and reported with their Subscription-State (§4.1.3);
//! [`Subscriber::unsubscribe`] sends `Expires: 0` (§4.1.2.3).
//!
//! Notifier: an incoming SUBSCRIBE is reported; [`Notifier::accept`] answers
//! 200 and sends the first NOTIFY at once (§4.2.1.2), [`Notifier::notify`]
//! sends the state on change, refreshes are answered with a NOTIFY, the
//! subscription expires (NOTIFY `terminated;reason=timeout`, §4.2.2) or is
//! ended by [`Notifier::terminate`]; a 481 or 408 to a NOTIFY ends it
//! (§4.2.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::DigestClient;
use crate::dialog::{Dialog, error_response, new_call_id, new_tag};
use crate::msg::{HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri};
use crate::transaction::TxKey;

use super::registration::refresh_delay;
use super::{
    Local, Output, Rng, RngRef, TxFailure, authorize, failure_response, out_of_dialog, set_body,
    take_challenge, top_branch,
};

fn tag_of(h: &crate::msg::Headers, from: bool) -> Option<String> {
    let a = if from { h.from().ok()? } else { h.to().ok()? };
    a.tag().map(str::to_owned)
}

/// The state of a subscription as the Subscription-State header says (§4.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubState {
    /// Not yet confirmed by a 2xx or NOTIFY.
    Init,
    /// Waiting for authorization (`pending`).
    Pending,
    /// Active.
    Active,
    /// Over.
    Terminated,
}

/// What a subscriber tells the application.
// Events are moved once to the application; boxing the address would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// The subscription is accepted for `expires` seconds (2xx to SUBSCRIBE).
    Accepted {
        /// Granted seconds.
        expires: u32,
    },
    /// A NOTIFY arrived (and was answered 200).
    Notify {
        /// Subscription-State value (`active`, `pending`, `terminated`).
        state: String,
        /// Its Content-Type, if any.
        content_type: Option<String>,
        /// The event package body.
        body: Bytes,
    },
    /// The subscription ended (NOTIFY terminated, our unsubscribe, or a
    /// failed SUBSCRIBE/refresh). `reason` and `retry_after` come from
    /// Subscription-State (§4.1.3): the application may resubscribe.
    Terminated {
        /// The reason parameter, or the failing status as text.
        reason: Option<String>,
        /// Seconds to wait before subscribing again, if the notifier said.
        retry_after: Option<u32>,
    },
}

/// How to subscribe.
#[derive(Debug)]
pub struct SubscriberConfig {
    /// Via and Contact.
    pub local: Local,
    /// Our address (From).
    pub from: NameAddr,
    /// Credentials for 401/407.
    pub auth: Option<DigestClient>,
    /// The Event header value (package, maybe `;id=`).
    pub event: String,
    /// The Accept header value (e.g. `application/pidf+xml`).
    pub accept: String,
    /// The expiry we ask for.
    pub expires: u32,
}

/// A subscription we hold (see the module documentation).
pub struct Subscriber {
    cfg: SubscriberConfig,
    rng: Rng,
    initial: Request,
    from_tag: String,
    dialog: Option<Dialog>,
    pending: Option<(String, Request, u32)>,
    state: SubState,
    refresh_at: Option<Instant>,
    unsubscribing: bool,
    out: VecDeque<Output<SubscriberEvent>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("event", &self.cfg.event)
            .field("state", &self.state)
            .finish()
    }
}

impl Subscriber {
    /// Subscribes to `to` at `target` now.
    pub fn subscribe(
        _now: Instant,
        cfg: SubscriberConfig,
        mut rng: Rng,
        target: Uri,
        to: NameAddr,
    ) -> Subscriber {
        let call_id = new_call_id(&mut RngRef(&mut *rng), &cfg.local.host.to_string());
        let tag = new_tag(&mut RngRef(&mut *rng));
        let mut r = out_of_dialog(Method::Subscribe, target, &to, &cfg.from, &tag, &call_id, 1);
        r.headers
            .push(HeaderName::Contact, cfg.local.contact_value());
        r.headers.push(HeaderName::Event, cfg.event.clone());
        r.headers.push(HeaderName::Accept, cfg.accept.clone());
        r.headers.push(HeaderName::Expires, cfg.expires.to_string());
        cfg.local.decorate(&mut r);
        let mut s = Subscriber {
            cfg,
            rng,
            initial: r.clone(),
            from_tag: tag,
            dialog: None,
            pending: None,
            state: SubState::Init,
            refresh_at: None,
            unsubscribing: false,
            out: VecDeque::new(),
        };
        s.send(r, 0);
        s
    }

    fn send(&mut self, mut r: Request, rounds: u32) {
        let b = self.cfg.local.stamp(&mut r, &mut *self.rng);
        if let Some(a) = self.cfg.auth.as_mut() {
            authorize(a, &mut r, &mut *self.rng);
        }
        self.pending = Some((b, r.clone(), rounds));
        self.out.push_back(Output::Request(r));
    }

    /// The state.
    pub fn state(&self) -> &SubState {
        &self.state
    }

    /// Whether an incoming request (a NOTIFY) belongs here: Call-ID and our
    /// From tag in its To (§4.1.2.4; forked NOTIFYs with another From tag
    /// are taken only while no dialog exists).
    pub fn owns_request(&self, r: &Request) -> bool {
        let same_call = self.initial.headers.call_id().ok() == r.headers.call_id().ok();
        let ours = tag_of(&r.headers, false).as_deref() == Some(&self.from_tag);
        let same_dialog = match &self.dialog {
            Some(d) => tag_of(&r.headers, true).as_deref() == Some(&*d.id().remote_tag),
            None => true,
        };
        same_call && ours && same_dialog
    }

    fn subscribe_in_dialog(&mut self, expires: u32) {
        let Some(d) = self.dialog.as_mut() else {
            // No dialog yet: a fresh out-of-dialog SUBSCRIBE with CSeq + 1.
            let mut r = self.initial.clone();
            if let Ok(mut c) = r.headers.cseq() {
                c.seq += 1;
                r.headers.set(HeaderName::CSeq, c.to_string());
            }
            r.headers.set(HeaderName::Expires, expires.to_string());
            self.initial = r.clone();
            self.send(r, 0);
            return;
        };
        let mut r = d.new_request(Method::Subscribe);
        r.headers
            .push(HeaderName::Contact, self.cfg.local.contact_value());
        r.headers.push(HeaderName::Event, self.cfg.event.clone());
        r.headers.push(HeaderName::Accept, self.cfg.accept.clone());
        r.headers.push(HeaderName::Expires, expires.to_string());
        self.cfg.local.decorate(&mut r);
        self.send(r, 0);
    }

    /// Ends the subscription (SUBSCRIBE with `Expires: 0`, §4.1.2.3). The
    /// final NOTIFY reports [`SubscriberEvent::Terminated`].
    pub fn unsubscribe(&mut self, _now: Instant) {
        if self.state == SubState::Terminated {
            return;
        }
        self.unsubscribing = true;
        self.refresh_at = None;
        self.subscribe_in_dialog(0);
    }

    fn terminate(&mut self, reason: Option<String>, retry_after: Option<u32>) {
        if self.state == SubState::Terminated {
            return;
        }
        self.state = SubState::Terminated;
        self.refresh_at = None;
        if let Some(d) = self.dialog.as_mut() {
            d.terminate();
        }
        self.out
            .push_back(Output::Event(SubscriberEvent::Terminated {
                reason,
                retry_after,
            }));
    }

    fn set_expiry(&mut self, now: Instant, expires: u32) {
        if expires > 0 && !self.unsubscribing {
            self.refresh_at = Some(now + refresh_delay(expires));
        }
    }

    /// A response to our SUBSCRIBE.
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let Some(b) = top_branch(&response.headers) else {
            return;
        };
        if self.pending.as_ref().map(|p| &p.0) != Some(&b) || !response.status.is_final() {
            return;
        }
        let (_, req, rounds) = self.pending.take().expect("checked");
        let code = response.status.as_u16();
        if response.status.is_success() {
            if self.dialog.is_none() {
                self.dialog = Dialog::from_uac(&req, response).ok();
            } else if let Some(d) = self.dialog.as_mut() {
                d.handle_response(&req, response);
            }
            if self.unsubscribing {
                return;
            }
            let expires = response
                .headers
                .expires()
                .ok()
                .flatten()
                .unwrap_or(self.cfg.expires);
            if self.state == SubState::Init {
                self.state = SubState::Pending;
            }
            self.set_expiry(now, expires);
            self.out
                .push_back(Output::Event(SubscriberEvent::Accepted { expires }));
            return;
        }
        if (code == 401 || code == 407)
            && rounds < 2
            && let Some(a) = self.cfg.auth.as_mut()
            && take_challenge(a, response).is_ok()
        {
            let mut r = req;
            let seq = match self.dialog.as_mut() {
                Some(d) => d
                    .new_request(Method::Subscribe)
                    .headers
                    .cseq()
                    .map(|c| c.seq)
                    .ok(),
                None => r.headers.cseq().ok().map(|c| c.seq + 1),
            };
            if let (Some(seq), Ok(mut c)) = (seq, r.headers.cseq()) {
                c.seq = seq;
                r.headers.set(HeaderName::CSeq, c.to_string());
            }
            self.send(r, rounds + 1);
            return;
        }
        if code == 423
            && let Some(min) = response.headers.min_expires().ok().flatten()
            && min > self.cfg.expires
        {
            self.cfg.expires = min;
            self.subscribe_in_dialog(min);
            return;
        }
        let retry = response.headers.retry_after().ok().flatten();
        self.terminate(Some(format!("{code}")), retry);
    }

    /// Our SUBSCRIBE got no response.
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        if let Some((b, r, _)) = &self.pending
            && b == branch
        {
            let resp = failure_response(r, failure);
            self.handle_response(now, &resp);
        }
    }

    /// A NOTIFY for which [`Subscriber::owns_request`] holds.
    pub fn handle_request(&mut self, now: Instant, tx: TxKey, request: &Request) {
        let reply = |s: &mut Subscriber, code: StatusCode| {
            let r = error_response(request, code);
            s.out.push_back(Output::Response { tx, response: r });
        };
        if request.method != Method::Notify {
            reply(self, StatusCode::METHOD_NOT_ALLOWED);
            return;
        }
        if self.state == SubState::Terminated {
            reply(self, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST);
            return;
        }
        let Ok(Some(ss)) = request.headers.subscription_state() else {
            reply(self, StatusCode::BAD_REQUEST);
            return;
        };
        if self.dialog.is_none() {
            // §4.1.2.4: the NOTIFY came before the 2xx; it creates the dialog.
            let mut fake = Response::from_request(&self.initial, StatusCode::OK);
            if let Some(t) = tag_of(&request.headers, true) {
                let _ = fake.set_to_tag(&t);
            }
            for c in request.headers.get_all(&HeaderName::Contact) {
                fake.headers.push(HeaderName::Contact, c.clone());
            }
            let mut rr: Vec<_> = request
                .headers
                .get_all(&HeaderName::RecordRoute)
                .cloned()
                .collect();
            rr.reverse();
            for v in rr {
                fake.headers.push(HeaderName::RecordRoute, v);
            }
            self.dialog = Dialog::from_uac(&self.initial, &fake).ok();
        }
        if let Some(d) = self.dialog.as_mut()
            && let Err(e) = d.handle_request(request)
        {
            reply(
                self,
                e.status().unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
            );
            return;
        }
        reply(self, StatusCode::OK);
        let content_type = request
            .headers
            .get(&HeaderName::ContentType)
            .map(|v| v.to_string());
        self.out.push_back(Output::Event(SubscriberEvent::Notify {
            state: ss.state.to_string(),
            content_type,
            body: request.body.clone(),
        }));
        if ss.is_terminated() {
            self.terminate(ss.reason().map(str::to_owned), ss.retry_after());
            return;
        }
        self.state = if ss.state.eq_ignore_ascii_case("active") {
            SubState::Active
        } else {
            SubState::Pending
        };
        if let Some(e) = ss.expires() {
            self.set_expiry(now, e);
        }
    }

    /// Runs the refresh timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            if self.pending.is_none() && self.state != SubState::Terminated {
                let e = self.cfg.expires;
                self.subscribe_in_dialog(e);
            }
        }
    }

    /// When [`Subscriber::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refresh_at
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<SubscriberEvent>> {
        self.out.pop_front()
    }
}

/// What a notifier tells the application.
// Events are moved once to the application; boxing the address would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifierEvent {
    /// A SUBSCRIBE arrived: accept (with the current state) or reject it.
    Requested {
        /// The subscriber (From, without tag).
        from: NameAddr,
        /// The Event package.
        event: String,
        /// The expiry asked for.
        expires: Option<u32>,
    },
    /// The subscriber refreshed (or asked to end, `expires == 0`).
    Refreshed {
        /// The new expiry.
        expires: u32,
    },
    /// The subscription ended.
    Terminated {
        /// Why (`timeout`, `noresource`, `unsubscribed`, `rejected`, or the failing status).
        reason: String,
    },
}

/// The notifier side of one subscription (see the module documentation).
pub struct Notifier {
    local: Local,
    rng: Rng,
    subscribe: Request,
    tx: Option<TxKey>,
    local_tag: String,
    event: String,
    dialog: Option<Dialog>,
    state: SubState,
    expires_at: Option<Instant>,
    max_expires: u32,
    content_type: String,
    body: Bytes,
    pending: Vec<(String, Request)>,
    out: VecDeque<Output<NotifierEvent>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("event", &self.event)
            .field("state", &self.state)
            .finish()
    }
}

impl Notifier {
    /// A SUBSCRIBE (out of dialog) arrived in server transaction `tx`.
    pub fn incoming(
        _now: Instant,
        local: Local,
        mut rng: Rng,
        tx: TxKey,
        request: Request,
    ) -> Notifier {
        let tag = new_tag(&mut RngRef(&mut *rng));
        let event = request
            .headers
            .get(&HeaderName::Event)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut from = request
            .headers
            .from()
            .unwrap_or_else(|_| NameAddr::new(request.uri.clone()));
        from.params.remove("tag");
        let expires = request.headers.expires().ok().flatten();
        let package = event.split(';').next().unwrap_or("").trim().to_owned();
        let mut n = Notifier {
            local,
            rng,
            subscribe: request,
            tx: Some(tx),
            local_tag: tag,
            event,
            dialog: None,
            state: SubState::Init,
            expires_at: None,
            max_expires: 3600,
            content_type: String::new(),
            body: Bytes::new(),
            pending: Vec::new(),
            out: VecDeque::new(),
        };
        n.out.push_back(Output::Event(NotifierEvent::Requested {
            from,
            event: package,
            expires,
        }));
        n
    }

    /// The state.
    pub fn state(&self) -> &SubState {
        &self.state
    }

    /// Whether an in-dialog request (refresh SUBSCRIBE) belongs here.
    pub fn owns_request(&self, r: &Request) -> bool {
        self.subscribe.headers.call_id().ok() == r.headers.call_id().ok()
            && tag_of(&r.headers, false).as_deref() == Some(&self.local_tag)
    }

    fn granted(&self, asked: Option<u32>) -> u32 {
        asked.unwrap_or(self.max_expires).min(self.max_expires)
    }

    /// Accepts the SUBSCRIBE (200, §4.2.1.1) for at most `max_expires`
    /// seconds and sends the first NOTIFY with this state at once (§4.2.1.2);
    /// `active` false sends `pending` instead.
    pub fn accept(
        &mut self,
        now: Instant,
        max_expires: u32,
        active: bool,
        content_type: &str,
        body: Bytes,
    ) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        self.max_expires = max_expires.max(1);
        let expires = self.granted(self.subscribe.headers.expires().ok().flatten());
        let mut r = Response::from_request(&self.subscribe, StatusCode::OK);
        let _ = r.set_to_tag(&self.local_tag);
        r.headers
            .push(HeaderName::Contact, self.local.contact_value());
        r.headers.push(HeaderName::Expires, expires.to_string());
        self.dialog = Dialog::from_uas(&self.subscribe, &r).ok();
        self.out.push_back(Output::Response { tx, response: r });
        self.content_type = content_type.to_owned();
        self.body = body;
        self.state = if active {
            SubState::Active
        } else {
            SubState::Pending
        };
        if expires == 0 {
            // A fetch (§4.4.3): one NOTIFY, then over.
            self.send_notify(now, Some("timeout"));
            self.finish("timeout");
            return;
        }
        self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
        self.send_notify(now, None);
    }

    /// Rejects the SUBSCRIBE (e.g. 403, 489 Bad Event).
    pub fn reject(&mut self, _now: Instant, code: u16) {
        if let Some(tx) = self.tx.take() {
            let r = error_response(&self.subscribe, super::status(code));
            self.out.push_back(Output::Response { tx, response: r });
            self.finish("rejected");
        }
    }

    /// Sends a NOTIFY with new state (on change, §4.2.2); `active` switches
    /// from pending to active.
    pub fn notify(&mut self, now: Instant, active: bool, content_type: &str, body: Bytes) {
        if matches!(self.state, SubState::Terminated | SubState::Init) {
            return;
        }
        if active {
            self.state = SubState::Active;
        }
        self.content_type = content_type.to_owned();
        self.body = body;
        self.send_notify(now, None);
    }

    /// Ends the subscription with a final NOTIFY `terminated;reason=...`.
    pub fn terminate(&mut self, now: Instant, reason: &str) {
        if matches!(self.state, SubState::Terminated | SubState::Init) {
            return;
        }
        self.send_notify(now, Some(reason));
        self.finish(reason);
    }

    fn finish(&mut self, reason: &str) {
        if self.state == SubState::Terminated {
            return;
        }
        self.state = SubState::Terminated;
        self.expires_at = None;
        self.out.push_back(Output::Event(NotifierEvent::Terminated {
            reason: reason.to_owned(),
        }));
    }

    fn send_notify(&mut self, now: Instant, terminated: Option<&str>) {
        let Some(d) = self.dialog.as_mut() else {
            return;
        };
        let mut r = d.new_request(Method::Notify);
        r.headers
            .push(HeaderName::Contact, self.local.contact_value());
        r.headers.push(HeaderName::Event, self.event.clone());
        let ss = match terminated {
            Some("") => "terminated".to_owned(),
            Some(reason) => format!("terminated;reason={reason}"),
            None => {
                let left = self
                    .expires_at
                    .map_or(0, |t| t.saturating_duration_since(now).as_secs());
                let st = if self.state == SubState::Active {
                    "active"
                } else {
                    "pending"
                };
                format!("{st};expires={left}")
            }
        };
        r.headers.push(HeaderName::SubscriptionState, ss);
        if !self.content_type.is_empty() {
            set_body(&mut r, &self.content_type.clone(), self.body.clone());
        }
        self.local.decorate(&mut r);
        let b = self.local.stamp(&mut r, &mut *self.rng);
        self.pending.push((b, r.clone()));
        self.out.push_back(Output::Request(r));
    }

    /// A refresh or removing SUBSCRIBE in the dialog (§4.2.1.2, §4.2.1.4).
    pub fn handle_request(&mut self, now: Instant, tx: TxKey, request: &Request) {
        let reply =
            |s: &mut Notifier, r: Response| s.out.push_back(Output::Response { tx, response: r });
        if request.method != Method::Subscribe {
            reply(
                self,
                error_response(request, StatusCode::METHOD_NOT_ALLOWED),
            );
            return;
        }
        if self.state == SubState::Terminated {
            reply(
                self,
                error_response(request, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
            );
            return;
        }
        let Some(d) = self.dialog.as_mut() else {
            reply(
                self,
                error_response(request, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
            );
            return;
        };
        if let Err(e) = d.handle_request(request) {
            reply(
                self,
                error_response(
                    request,
                    e.status().unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
                ),
            );
            return;
        }
        let expires = self.granted(request.headers.expires().ok().flatten());
        let mut r = error_response(request, StatusCode::OK);
        r.headers.push(HeaderName::Expires, expires.to_string());
        r.headers
            .push(HeaderName::Contact, self.local.contact_value());
        reply(self, r);
        self.out
            .push_back(Output::Event(NotifierEvent::Refreshed { expires }));
        if expires == 0 {
            self.send_notify(now, Some("timeout"));
            self.finish("unsubscribed");
        } else {
            self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
            self.send_notify(now, None);
        }
    }

    /// A response to one of our NOTIFYs: 481 or 408 ends the subscription (§4.2.2).
    pub fn handle_response(&mut self, _now: Instant, response: &Response) {
        let Some(b) = top_branch(&response.headers) else {
            return;
        };
        if !response.status.is_final() {
            return;
        }
        let Some(i) = self.pending.iter().position(|(pb, _)| *pb == b) else {
            return;
        };
        self.pending.remove(i);
        let code = response.status.as_u16();
        if code == 481 || code == 408 || (code >= 300 && code != 401 && code != 407) {
            self.finish(&code.to_string());
        }
    }

    /// A NOTIFY of ours got no response.
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        if let Some((_, r)) = self.pending.iter().find(|(b, _)| b == branch) {
            let resp = failure_response(r, failure);
            self.handle_response(now, &resp);
        }
    }

    /// Runs the expiry timer: NOTIFY `terminated;reason=timeout` (§4.2.2).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.expires_at.is_some_and(|t| t <= now) {
            self.expires_at = None;
            self.send_notify(now, Some("timeout"));
            self.finish("timeout");
        }
    }

    /// When [`Notifier::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expires_at
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<NotifierEvent>> {
        self.out.pop_front()
    }
}
