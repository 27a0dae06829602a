//! Pager-mode instant messages (RFC 3428): sending MESSAGE outside a dialog
//! with digest retry, and receiving MESSAGE (200 and an event).
//!
//! One [`Pager`] serves an account: [`Pager::send`] returns a [`MessageId`]
//! that the [`PagerEvent::Delivered`] or [`PagerEvent::Failed`] event names
//! later; an incoming MESSAGE routed to [`Pager::handle_request`] is answered
//! 200 (§7: the UAS accepts it) and reported as [`PagerEvent::Received`].

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::DigestClient;
use crate::dialog::{error_response, new_call_id, new_tag};
use crate::msg::{HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri};
use crate::transaction::TxKey;

use super::{
    Local, Output, Rng, RngRef, TxFailure, authorize, failure_response, out_of_dialog, set_body,
    take_challenge, top_branch,
};

/// Names one sent message in later events.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

/// What the pager tells the application.
// Events are moved once to the application; boxing the address would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PagerEvent {
    /// A 2xx came back for the message (RFC 3428 §4: accepted, not read).
    Delivered {
        /// Which message.
        id: MessageId,
    },
    /// The message failed with this final status (408 timeout, 503 transport).
    Failed {
        /// Which message.
        id: MessageId,
        /// The status.
        status: u16,
    },
    /// A MESSAGE arrived (and was answered 200).
    Received {
        /// The sender (From).
        from: NameAddr,
        /// The Content-Type value (`text/plain` when absent).
        content_type: String,
        /// The body.
        body: Bytes,
    },
}

struct Pending {
    id: MessageId,
    request: Request,
    auth_rounds: u32,
}

/// The MESSAGE usage of one account (see the module documentation).
pub struct Pager {
    local: Local,
    from: NameAddr,
    auth: Option<DigestClient>,
    rng: Rng,
    next_id: u64,
    pending: Vec<(String, Pending)>,
    out: VecDeque<Output<PagerEvent>>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Pager {
    /// A pager sending as `from` (our AOR).
    pub fn new(local: Local, from: NameAddr, auth: Option<DigestClient>, rng: Rng) -> Self {
        Pager {
            local,
            from,
            auth,
            rng,
            next_id: 1,
            pending: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Sends a MESSAGE to `to` with `body` of `content_type` (e.g. `text/plain;charset=UTF-8`).
    pub fn send(&mut self, _now: Instant, to: Uri, content_type: &str, body: Bytes) -> MessageId {
        let id = MessageId(self.next_id);
        self.next_id += 1;
        let call_id = new_call_id(&mut RngRef(&mut *self.rng), &self.local.host.to_string());
        let tag = new_tag(&mut RngRef(&mut *self.rng));
        let mut r = out_of_dialog(
            Method::Message,
            to.clone(),
            &NameAddr::new(to),
            &self.from,
            &tag,
            &call_id,
            1,
        );
        set_body(&mut r, content_type, body);
        self.local.decorate(&mut r);
        self.send_pending(Pending {
            id,
            request: r,
            auth_rounds: 0,
        });
        id
    }

    fn send_pending(&mut self, mut p: Pending) {
        let branch = self.local.stamp(&mut p.request, &mut *self.rng);
        if let Some(a) = self.auth.as_mut() {
            authorize(a, &mut p.request, &mut *self.rng);
        }
        self.out.push_back(Output::Request(p.request.clone()));
        self.pending.push((branch, p));
    }

    /// A response to one of our MESSAGEs.
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
        let (_, mut p) = self.pending.remove(i);
        let code = response.status.as_u16();
        if response.status.is_success() {
            self.out
                .push_back(Output::Event(PagerEvent::Delivered { id: p.id }));
            return;
        }
        if (code == 401 || code == 407)
            && p.auth_rounds < 2
            && let Some(a) = self.auth.as_mut()
            && take_challenge(a, response).is_ok()
        {
            p.auth_rounds += 1;
            // §8.1.3.5 / §22.2: same Call-ID, CSeq up by one.
            if let Ok(mut cseq) = p.request.headers.cseq() {
                cseq.seq += 1;
                p.request.headers.set(HeaderName::CSeq, cseq.to_string());
            }
            self.send_pending(p);
            return;
        }
        self.out.push_back(Output::Event(PagerEvent::Failed {
            id: p.id,
            status: code,
        }));
    }

    /// A MESSAGE of ours got no response.
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        if let Some((_, p)) = self.pending.iter().find(|(b, _)| b == branch) {
            let r = failure_response(&p.request, failure);
            self.handle_response(now, &r);
        }
    }

    /// An incoming MESSAGE outside a dialog: 200 and [`PagerEvent::Received`];
    /// other methods get 405.
    pub fn handle_request(&mut self, _now: Instant, tx: TxKey, request: &Request) {
        if request.method != Method::Message {
            let mut r = error_response(request, StatusCode::METHOD_NOT_ALLOWED);
            r.headers.push(HeaderName::Allow, "MESSAGE");
            self.out.push_back(Output::Response { tx, response: r });
            return;
        }
        let Ok(from) = request.headers.from() else {
            let r = error_response(request, StatusCode::BAD_REQUEST);
            self.out.push_back(Output::Response { tx, response: r });
            return;
        };
        let mut from = from;
        from.params.remove("tag");
        let content_type = request
            .headers
            .get(&HeaderName::ContentType)
            .map_or_else(|| "text/plain".to_owned(), |v| v.to_string());
        let response = error_response(request, StatusCode::OK);
        self.out.push_back(Output::Response { tx, response });
        self.out.push_back(Output::Event(PagerEvent::Received {
            from,
            content_type,
            body: request.body.clone(),
        }));
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<PagerEvent>> {
        self.out.pop_front()
    }

    /// The pager has no timers of its own (the transaction layer times out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
