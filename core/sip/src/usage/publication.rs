//! Event state publication (RFC 3903): the event publication agent (EPA) side.
//!
//! A [`Publisher`] keeps one piece of event state (a presence document, say) at the
//! state compositor of one resource:
//!
//! - [`Publisher::publish`] sends the state: an initial PUBLISH with the body
//!   (§4.2), or, once the compositor has given us an entity-tag, a modifying one
//!   with `SIP-If-Match` (§4.4);
//! - the 2xx gives the entity-tag (`SIP-ETag`) and the granted `Expires`; the
//!   publication is refreshed before it lapses with a body-less PUBLISH carrying
//!   `SIP-If-Match` (§4.3), at the same point a registration would be
//!   ([`super::registration::refresh_delay`]);
//! - 412 Conditional Request Failed (the compositor forgot our entity-tag, e.g. it
//!   restarted) makes us publish the whole state again as an initial PUBLISH
//!   (§6, step 4);
//! - 401/407 are answered with credentials, 423 with the Min-Expires asked for
//!   (§4.1, RFC 3261 §10.2.8);
//! - other failures (including timeouts and transport errors) are reported and
//!   retried with back-off (30 s doubling to 10 min), the whole state again;
//! - [`Publisher::remove`] sends `Expires: 0` with `SIP-If-Match` (§4.5).
//!
//! At most one PUBLISH is outstanding (§4.1); what is asked for meanwhile is sent
//! when its final response arrives, only the newest state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::DigestClient;
use crate::dialog::{new_call_id, new_tag};
use crate::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};

use super::registration::refresh_delay;
use super::{
    Local, Output, Rng, RngRef, TxFailure, authorize, failure_response, out_of_dialog, set_body,
    take_challenge, top_branch,
};

/// The `SIP-ETag` header name (RFC 3903 §11.3.1).
pub fn sip_etag() -> HeaderName {
    HeaderName::new("SIP-ETag").expect("a valid header name")
}

/// The `SIP-If-Match` header name (RFC 3903 §11.3.2).
pub fn sip_if_match() -> HeaderName {
    HeaderName::new("SIP-If-Match").expect("a valid header name")
}

/// How to publish.
#[derive(Debug)]
pub struct PublisherConfig {
    /// Via and Contact of this endpoint.
    pub local: Local,
    /// The resource whose state we publish: Request-URI, To and From (RFC 3903 §4:
    /// the presentity's address-of-record).
    pub resource: NameAddr,
    /// Credentials for 401/407.
    pub auth: Option<DigestClient>,
    /// The Event header value (`presence`, `dialog`).
    pub event: String,
    /// The Content-Type of the state (`application/pidf+xml`).
    pub content_type: String,
    /// The expiry we ask for, in seconds.
    pub expires: u32,
}

/// What a publisher tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublisherEvent {
    /// The compositor took our state (a 2xx to a PUBLISH with a body, or to the
    /// republication after 412 or a failure); refreshes are not reported.
    Published {
        /// Granted seconds.
        expires: u32,
    },
    /// A PUBLISH failed with this final status (408 timeout, 503 transport).
    Failed {
        /// The status.
        status: u16,
        /// When we try again by ourselves; `None` when we do not (refused
        /// credentials, a removal that failed).
        retry_in: Option<Duration>,
    },
    /// Our state was removed (`Expires: 0` answered, or nothing was published).
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// The state, as an initial or modifying PUBLISH.
    State,
    /// A refresh without body.
    Refresh,
    /// `Expires: 0`.
    Remove,
}

#[derive(Clone, Debug)]
struct Pending {
    branch: String,
    request: Request,
    kind: Kind,
    auth_rounds: u32,
}

/// One publication (see the module documentation).
pub struct Publisher {
    cfg: PublisherConfig,
    rng: Rng,
    call_id: String,
    from_tag: String,
    seq: u32,
    /// The state we want published (`None`: removed or never set).
    body: Option<Bytes>,
    /// The compositor's entity-tag for our publication.
    etag: Option<String>,
    pending: Option<Pending>,
    /// What to send once `pending` is answered.
    next: Option<Kind>,
    timer: Option<Instant>,
    failures: u32,
    out: VecDeque<Output<PublisherEvent>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("event", &self.cfg.event)
            .field("etag", &self.etag)
            .field("timer", &self.timer)
            .finish()
    }
}

impl Publisher {
    /// A publisher with nothing published yet.
    pub fn new(cfg: PublisherConfig, mut rng: Rng) -> Publisher {
        let call_id = new_call_id(&mut RngRef(&mut *rng), &cfg.local.host.to_string());
        let from_tag = new_tag(&mut RngRef(&mut *rng));
        Publisher {
            cfg,
            rng,
            call_id,
            from_tag,
            seq: 0,
            body: None,
            etag: None,
            pending: None,
            next: None,
            timer: None,
            failures: 0,
            out: VecDeque::new(),
        }
    }

    /// The compositor's entity-tag for our state, once it has taken it.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Whether no PUBLISH is outstanding or queued.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none() && self.next.is_none()
    }

    /// Whether state is set (published, or being published).
    pub fn has_state(&self) -> bool {
        self.body.is_some()
    }

    /// Publishes `body` as our state (§4.2 initial, §4.4 modify).
    pub fn publish(&mut self, _now: Instant, body: Bytes) {
        self.body = Some(body);
        self.failures = 0;
        self.want(Kind::State);
    }

    /// Removes our state (§4.5); reported by [`PublisherEvent::Removed`].
    pub fn remove(&mut self, _now: Instant) {
        self.body = None;
        self.timer = None;
        if self.etag.is_none() && self.pending.is_none() {
            self.out.push_back(Output::Event(PublisherEvent::Removed));
            return;
        }
        self.want(Kind::Remove);
    }

    fn want(&mut self, kind: Kind) {
        if self.pending.is_some() {
            // A removal or new state supersedes whatever was queued.
            self.next = Some(kind);
            return;
        }
        self.send(kind);
    }

    fn send(&mut self, kind: Kind) {
        self.timer = None;
        if kind == Kind::Remove && self.etag.is_none() {
            self.out.push_back(Output::Event(PublisherEvent::Removed));
            return;
        }
        if kind != Kind::Remove && self.body.is_none() {
            return;
        }
        self.seq += 1;
        let to = &self.cfg.resource;
        let mut r = out_of_dialog(
            Method::Publish,
            to.uri.clone(),
            to,
            to,
            &self.from_tag,
            &self.call_id,
            self.seq,
        );
        r.headers.push(HeaderName::Event, self.cfg.event.clone());
        let expires = if kind == Kind::Remove {
            0
        } else {
            self.cfg.expires
        };
        r.headers.push(HeaderName::Expires, expires.to_string());
        if let Some(e) = &self.etag {
            r.headers.push(sip_if_match(), e.clone());
        }
        if kind == Kind::State
            && let Some(b) = &self.body
        {
            set_body(&mut r, &self.cfg.content_type, b.clone());
        }
        self.cfg.local.decorate(&mut r);
        self.dispatch(Pending {
            branch: String::new(),
            request: r,
            kind,
            auth_rounds: 0,
        });
    }

    fn dispatch(&mut self, mut p: Pending) {
        p.branch = self.cfg.local.stamp(&mut p.request, &mut *self.rng);
        if let Some(a) = self.cfg.auth.as_mut() {
            authorize(a, &mut p.request, &mut *self.rng);
        }
        self.out.push_back(Output::Request(p.request.clone()));
        self.pending = Some(p);
    }

    /// A response to our PUBLISH.
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let Some(b) = top_branch(&response.headers) else {
            return;
        };
        if !response.status.is_final() || self.pending.as_ref().map(|p| &p.branch) != Some(&b) {
            return;
        }
        let mut p = self.pending.take().expect("checked");
        let code = response.status.as_u16();
        if response.status.is_success() {
            self.failures = 0;
            if p.kind == Kind::Remove {
                self.etag = None;
                if self.next.is_none() {
                    self.out.push_back(Output::Event(PublisherEvent::Removed));
                }
            } else {
                if let Some(e) = response.headers.get(&sip_etag()) {
                    self.etag = Some(e.trim().to_owned());
                }
                let expires = response
                    .headers
                    .expires()
                    .ok()
                    .flatten()
                    .unwrap_or(self.cfg.expires);
                if expires > 0 {
                    self.timer = Some(now + refresh_delay(expires));
                }
                if p.kind == Kind::State {
                    self.out
                        .push_back(Output::Event(PublisherEvent::Published { expires }));
                }
            }
            self.send_next();
            return;
        }
        if (code == 401 || code == 407)
            && p.auth_rounds < 2
            && let Some(a) = self.cfg.auth.as_mut()
            && take_challenge(a, response).is_ok()
        {
            p.auth_rounds += 1;
            self.seq += 1;
            if let Ok(mut c) = p.request.headers.cseq() {
                c.seq = self.seq;
                p.request.headers.set(HeaderName::CSeq, c.to_string());
            }
            self.dispatch(p);
            return;
        }
        if code == 423
            && let Some(min) = response.headers.min_expires().ok().flatten()
            && min > self.cfg.expires
        {
            self.cfg.expires = min;
            self.send(if p.kind == Kind::Remove {
                Kind::Remove
            } else {
                Kind::State
            });
            return;
        }
        if code == 412 {
            // §6 step 4: the compositor lost our entity-tag; publish afresh.
            self.etag = None;
            match p.kind {
                Kind::Remove => {
                    if self.next.is_none() {
                        self.out.push_back(Output::Event(PublisherEvent::Removed));
                    }
                    self.send_next();
                }
                _ => {
                    self.next = None;
                    self.send(Kind::State);
                }
            }
            return;
        }
        // Failed: a removal is given up (the state lapses by itself); a state is
        // published again later.
        if p.kind == Kind::Remove {
            self.etag = None;
            self.out.push_back(Output::Event(PublisherEvent::Failed {
                status: code,
                retry_in: None,
            }));
            self.send_next();
            return;
        }
        let refused = code == 401 || code == 403 || code == 407 || code == 489;
        self.failures += 1;
        let retry_in = (!refused).then(|| {
            let after = response.headers.retry_after().ok().flatten();
            match after {
                Some(s) => Duration::from_secs(u64::from(s)),
                None => {
                    let n = self.failures.min(6) - 1;
                    Duration::from_secs(30 * (1u64 << n)).min(Duration::from_secs(600))
                }
            }
        });
        if code == 408 || code >= 500 {
            // A compositor that timed out or restarted may have lost our tag.
            self.etag = None;
        }
        self.timer = retry_in.map(|d| now + d);
        self.out.push_back(Output::Event(PublisherEvent::Failed {
            status: code,
            retry_in,
        }));
        self.send_next();
    }

    fn send_next(&mut self) {
        if let Some(k) = self.next.take() {
            self.send(k);
        }
    }

    /// Our PUBLISH got no response (Timer F, transport error).
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        if let Some(p) = &self.pending
            && p.branch == branch
        {
            let r = failure_response(&p.request, failure);
            self.handle_response(now, &r);
        }
    }

    /// Runs the refresh and retry timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            if self.body.is_some() {
                let kind = if self.etag.is_some() {
                    Kind::Refresh
                } else {
                    Kind::State
                };
                self.want(kind);
            }
        }
    }

    /// When [`Publisher::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<PublisherEvent>> {
        self.out.pop_front()
    }

    /// The resource (for the driver's routing).
    pub fn resource(&self) -> &Uri {
        &self.cfg.resource.uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::StatusCode;
    use rand::SeedableRng;

    fn publisher() -> Publisher {
        let local = Local::udp("127.0.0.1:5070".parse().unwrap(), Some("alice"));
        let resource = NameAddr::new("sip:alice@example.com".parse::<Uri>().unwrap());
        Publisher::new(
            PublisherConfig {
                local,
                resource,
                auth: None,
                event: "presence".into(),
                content_type: "application/pidf+xml".into(),
                expires: 600,
            },
            Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(7)),
        )
    }

    fn sent(p: &mut Publisher) -> Request {
        loop {
            match p.poll_output() {
                Some(Output::Request(r)) => return r,
                Some(_) => continue,
                None => panic!("no request"),
            }
        }
    }

    fn events(p: &mut Publisher) -> Vec<PublisherEvent> {
        let mut v = Vec::new();
        while let Some(o) = p.poll_output() {
            if let Output::Event(e) = o {
                v.push(e);
            }
        }
        v
    }

    fn reply(r: &Request, code: u16, extra: &[(HeaderName, &str)]) -> Response {
        let mut resp = Response::from_request(r, StatusCode::new(code).unwrap());
        for (n, v) in extra {
            resp.headers.push(n.clone(), v.to_string());
        }
        resp
    }

    #[test]
    fn initial_refresh_modify_and_remove() {
        let t0 = vaxel_testkit::SimClock::new().now();
        let mut p = publisher();
        p.publish(t0, Bytes::from_static(b"<presence/>"));
        let r = sent(&mut p);
        assert_eq!(r.method, Method::Publish);
        assert_eq!(
            r.headers.get(&HeaderName::Event).map(|v| &**v),
            Some("presence")
        );
        assert!(r.headers.get(&sip_if_match()).is_none(), "initial: no tag");
        assert_eq!(&r.body[..], b"<presence/>");
        p.handle_response(
            t0,
            &reply(
                &r,
                200,
                &[(sip_etag(), "abc"), (HeaderName::Expires, "100")],
            ),
        );
        assert_eq!(events(&mut p), [PublisherEvent::Published { expires: 100 }]);
        assert_eq!(p.etag(), Some("abc"));
        // §4.3: refreshed before expiry, without a body, with the tag.
        let due = p.poll_timeout().unwrap();
        assert!(due > t0 + Duration::from_secs(50) && due < t0 + Duration::from_secs(100));
        p.handle_timeout(due);
        let r2 = sent(&mut p);
        assert!(r2.body.is_empty());
        assert_eq!(r2.headers.get(&sip_if_match()).map(|v| &**v), Some("abc"));
        assert!(r2.headers.cseq().unwrap().seq > r.headers.cseq().unwrap().seq);
        // A change while the refresh is outstanding waits for its answer (§4.1).
        p.publish(due, Bytes::from_static(b"<presence>2</presence>"));
        assert!(p.poll_output().is_none());
        p.handle_response(due, &reply(&r2, 200, &[(sip_etag(), "def")]));
        let r3 = sent(&mut p);
        assert_eq!(&r3.body[..], b"<presence>2</presence>");
        assert_eq!(r3.headers.get(&sip_if_match()).map(|v| &**v), Some("def"));
        p.handle_response(due, &reply(&r3, 200, &[(sip_etag(), "ghi")]));
        assert_eq!(events(&mut p), [PublisherEvent::Published { expires: 600 }]);
        // §4.5: removal.
        p.remove(due);
        let r4 = sent(&mut p);
        assert_eq!(
            r4.headers.get(&HeaderName::Expires).map(|v| &**v),
            Some("0")
        );
        assert_eq!(r4.headers.get(&sip_if_match()).map(|v| &**v), Some("ghi"));
        p.handle_response(due, &reply(&r4, 200, &[]));
        assert_eq!(events(&mut p), [PublisherEvent::Removed]);
        assert!(p.poll_timeout().is_none());
    }

    #[test]
    fn a_forgotten_tag_republishes_the_state_and_failures_retry() {
        let t0 = vaxel_testkit::SimClock::new().now();
        let mut p = publisher();
        p.publish(t0, Bytes::from_static(b"<presence/>"));
        let r = sent(&mut p);
        p.handle_response(t0, &reply(&r, 200, &[(sip_etag(), "abc")]));
        events(&mut p);
        let due = p.poll_timeout().unwrap();
        p.handle_timeout(due);
        let refresh = sent(&mut p);
        // The compositor restarted: 412, so the whole state goes again, untagged.
        p.handle_response(due, &reply(&refresh, 412, &[]));
        let again = sent(&mut p);
        assert!(again.headers.get(&sip_if_match()).is_none());
        assert_eq!(&again.body[..], b"<presence/>");
        // No answer at all: reported, retried later with the state.
        p.handle_failure(
            due,
            &top_branch(&again.headers).unwrap(),
            TxFailure::Timeout,
        );
        let ev = events(&mut p);
        assert!(matches!(
            ev.as_slice(),
            [PublisherEvent::Failed { status: 408, retry_in: Some(d) }] if *d == Duration::from_secs(30)
        ));
        let retry = p.poll_timeout().unwrap();
        p.handle_timeout(retry);
        let r3 = sent(&mut p);
        assert_eq!(&r3.body[..], b"<presence/>");
        p.handle_response(retry, &reply(&r3, 200, &[(sip_etag(), "x")]));
        assert_eq!(events(&mut p), [PublisherEvent::Published { expires: 600 }]);
    }
}
