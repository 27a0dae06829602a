//! The INVITE session (RFC 3261 §13–§15, RFC 3264 offer/answer with opaque SDP,
//! RFC 6026), with in-session REFER (RFC 3515, RFC 3891 Replaces) and INFO
//! DTMF (`application/dtmf-relay`).
//!
//! One [`Session`] is one call, from either side:
//! - **UAC**: [`Session::invite`] sends INVITE (answering 401/407 once per
//!   challenge), follows provisional responses — several early dialogs when a
//!   proxy forks — confirms the dialog of the first 2xx and ACKs it, and ACKs
//!   then BYEs every later 2xx of another fork (§13.2.2.4). [`Session::hangup`]
//!   before the answer sends CANCEL (§9.1); if the 200 crosses the CANCEL, the
//!   session ACKs and BYEs it (§15).
//! - **UAS**: [`Session::incoming`] takes an INVITE server transaction;
//!   [`Session::ring`] (180), [`Session::early_media`] (183 with SDP),
//!   [`Session::answer`] (200, which the transaction layer retransmits until
//!   the ACK, §13.3.1.4), [`Session::reject`] (486/603/480...). A CANCEL
//!   ([`Session::handle_cancelled`]) is answered 487.
//! - **In session**: re-INVITE both ways ([`Session::reinvite`] for hold,
//!   resume or codec change; [`SessionEvent::Offer`] + [`Session::accept_offer`]
//!   when the peer offers), 491 on glare and the randomized retry of §14.1
//!   (2.1–4 s when we own the Call-ID, i.e. we sent the initial INVITE, else
//!   0–2 s, in 10 ms steps), UPDATE with an offer handled like a re-INVITE,
//!   BYE both ways, INFO DTMF both ways, REFER both ways with the implicit
//!   subscription's `message/sipfrag` NOTIFYs, and 481 for requests after the
//!   session ended. A 408 or 481 to an in-dialog request ends the session
//!   (§12.2.1.2).
//!
//! # Run loop
//!
//! The driver routes to a session: responses to its requests
//! ([`Session::handle_response`], matched by branch), client transaction
//! failures ([`Session::handle_failure`]), in-dialog requests for which
//! [`Session::owns_request`] is true ([`Session::handle_request`]), stray ACKs
//! ([`Session::handle_ack`]), `TxEvent::Cancelled` of its INVITE
//! ([`Session::handle_cancelled`]), the Timeout of its INVITE server
//! transaction ([`Session::handle_server_timeout`]), and time
//! ([`Session::handle_timeout`] at [`Session::poll_timeout`]); then it drains
//! [`Session::poll_output`]. A session in [`SessionState::Terminated`] may be
//! dropped once its output is drained (keep it a little longer to answer
//! late requests with 481, or answer them with
//! [`crate::dialog::no_dialog_response`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::auth::DigestClient;
use crate::dialog::{
    Dialog, DialogId, DialogState, Dialogs, InviteOutcome, error_response, new_call_id, new_tag,
};
use crate::msg::{
    HeaderName, Method, NameAddr, Replaces, Request, Response, StatusCode, Uri, escape_header,
    unescape,
};
use crate::transaction::TxKey;

use super::body;
use super::{
    Local, Output, Rng, RngRef, TxFailure, authorize, failure_response, has_type, out_of_dialog,
    set_body, set_response_body, status, take_challenge, top_branch,
};

/// The methods a session accepts in its dialog (for Allow, §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY";

/// The SDP content type (RFC 3264).
pub const SDP: &str = "application/sdp";

/// How a session is set up.
#[derive(Debug)]
pub struct SessionConfig {
    /// Via and Contact of this endpoint.
    pub local: Local,
    /// Our address (From of the INVITE we send), e.g. the account's AOR.
    pub from: NameAddr,
    /// Credentials for 401/407 (§22.2), if any.
    pub auth: Option<DigestClient>,
}

/// Which side of the call we are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE (and own the Call-ID, §14.1).
    Uac,
    /// We received it.
    Uas,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// We hung up (BYE sent).
    LocalHangup,
    /// The peer hung up (BYE received).
    RemoteHangup,
    /// We cancelled our INVITE (487, or a 200 that crossed the CANCEL and was BYEd).
    Cancelled,
    /// The caller cancelled the INVITE we were ringing with (§9.2).
    RemoteCancelled,
    /// The callee (or the network) answered our INVITE with this final status
    /// (408 timeout, 503 transport, 486 busy, 603 decline, 401/407 refused...).
    Rejected(u16),
    /// We rejected the incoming INVITE with this status.
    LocalRejected(u16),
    /// Our 200 was never acknowledged (§13.3.1.4).
    AckTimeout,
    /// An in-dialog request got 408 or 481: the dialog is gone (§12.2.1.2).
    DialogLost(u16),
    /// An INVITE with Replaces took this session's place (RFC 3891).
    Replaced,
}

/// Where a session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// UAC: INVITE sent, nothing back.
    Calling,
    /// UAC: 100 Trying (or a provisional without tag).
    Proceeding,
    /// UAS: the INVITE arrived, nothing sent by the TU yet.
    Incoming,
    /// 180 received (UAC) or sent (UAS).
    Ringing,
    /// Another 1xx with a tag, or early media, received or sent.
    Early,
    /// The call is up.
    Established,
    /// We ended it and wait for the CANCEL/BYE to complete.
    Terminating,
    /// Over.
    Terminated(EndCause),
}

/// What a session tells the application.
// Events are moved once to the application; boxing the address would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// UAS: a new call (from [`Session::incoming`]).
    Incoming {
        /// The caller (From, without tag).
        from: NameAddr,
        /// The SDP offer, if the INVITE had one.
        offer: Option<Bytes>,
        /// RFC 3891: the dialog this INVITE wants to replace, if any. Find
        /// it with [`Session::replaces_match`]; reject with 481 when none matches.
        replaces: Option<Replaces>,
    },
    /// UAC: 180 Ringing.
    Ringing,
    /// UAC: a provisional with SDP (early media, RFC 3261 §13.2.1).
    EarlyMedia {
        /// The SDP answer in the provisional.
        sdp: Bytes,
    },
    /// The call is up; `remote_sdp` is the peer's answer (UAC) or offer (UAS).
    Established {
        /// The peer's SDP.
        remote_sdp: Option<Bytes>,
    },
    /// The peer sent a re-INVITE or UPDATE: answer with [`Session::accept_offer`]
    /// (or [`Session::reject_offer`]). `offer` is empty when the peer asks us
    /// to offer (then our SDP in the 200 is an offer and the answer comes in
    /// the ACK as [`SessionEvent::RemoteSdp`]).
    Offer {
        /// The peer's SDP offer (may be empty).
        offer: Bytes,
    },
    /// The peer put us on hold (`true`) or resumed (`false`) (RFC 3264 §8.4).
    RemoteHold(bool),
    /// New SDP from the peer: the answer to our re-INVITE, or in an ACK.
    RemoteSdp {
        /// The SDP.
        sdp: Bytes,
    },
    /// Our re-INVITE failed; the session goes on unchanged (§14.1).
    ReinviteFailed {
        /// The status.
        status: u16,
    },
    /// INFO DTMF from the peer.
    Dtmf {
        /// The digit (0-9, *, #, A-D).
        digit: char,
        /// Its duration in ms.
        duration_ms: u32,
    },
    /// The peer asks us to call `target` (REFER, RFC 3515 §2.4.2), replacing
    /// the dialog in `replaces` if given (RFC 3891). Report progress with
    /// [`Session::transfer_progress`].
    TransferRequested {
        /// Whom to call (Refer-To without its header part).
        target: Uri,
        /// The Replaces header to put in that INVITE.
        replaces: Option<Replaces>,
        /// Referred-By, if given.
        referred_by: Option<NameAddr>,
    },
    /// Our REFER: the transfer target's status (sipfrag 1xx).
    TransferProgress {
        /// The status line's code.
        status: u16,
    },
    /// Our REFER: the transfer worked (sipfrag 2xx): hang up.
    TransferSucceeded,
    /// Our REFER failed (refused, or sipfrag 3xx–6xx, or the subscription
    /// ended without a result): take the call back.
    TransferFailed {
        /// The status, when one was given.
        status: Option<u16>,
    },
    /// The session ended.
    Ended {
        /// Why.
        cause: EndCause,
    },
}

/// Misuse of the session API (not the peer's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The action does not fit the session's state.
    #[error("{0} is not possible in this state")]
    InvalidState(&'static str),
    /// An offer/answer exchange is already in progress (§14.1: one at a time).
    #[error("an offer/answer exchange is in progress")]
    Pending,
}

/// How an INVITE's Replaces header relates to a session (RFC 3891 §3).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplacesMatch {
    /// It names this session: accept the new INVITE and end this one
    /// ([`Session::end_replaced`]).
    Match,
    /// It names this confirmed session but says `early-only`: answer 486.
    EarlyOnly,
    /// Not this session (481 when no session matches).
    NoMatch,
}

#[derive(Clone, Debug, PartialEq)]
enum Purpose {
    Bye,
    Reinvite(Bytes),
    Info,
    Refer,
    ReferNotify {
        last: bool,
    },
    /// BYE for a forked 2xx we did not take.
    ForkBye,
}

#[derive(Clone, Debug)]
struct Outstanding {
    branch: String,
    request: Request,
    purpose: Purpose,
    auth_rounds: u32,
}

#[derive(Clone, Debug)]
struct IncomingOffer {
    tx: TxKey,
    method: Method,
    empty: bool,
}

/// One call (see the module documentation).
pub struct Session {
    role: Role,
    state: SessionState,
    local: Local,
    auth: Option<DigestClient>,
    rng: Rng,
    // UAC: the initial INVITE (latest after auth) and its branch.
    invite: Option<Request>,
    invite_branch: Option<String>,
    invite_auth_rounds: u32,
    forks: Dialogs,
    cancel_requested: bool,
    // UAS
    server_tx: Option<TxKey>,
    incoming: Option<Request>,
    local_tag: String,
    awaiting_ack: bool,
    // A re-INVITE asked for before the ACK of our initial 2xx: §14.1 forbids
    // starting it while that INVITE transaction is open, so it waits for the ACK.
    deferred_reinvite: Option<Bytes>,
    // The dialog of the call (confirmed; UAS also early).
    dialog: Option<Dialog>,
    ack: Option<Request>,
    fork_acks: Vec<(DialogId, Request)>,
    reinvite_ack: Option<(String, Request)>,
    client: Vec<Outstanding>,
    offer_in: Option<IncomingOffer>,
    pending_offer_request: Option<Request>,
    awaiting_ack_reinvite: bool,
    reinvite_out: bool,
    glare: Option<(Instant, Bytes)>,
    remote_sdp: Option<Bytes>,
    remote_held: bool,
    refer_out: Option<bool>,
    refer_in: Option<u32>,
    end_cause: Option<EndCause>,
    out: VecDeque<Output<SessionEvent>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("dialog", &self.dialog.as_ref().map(|d| d.id().clone()))
            .finish()
    }
}

fn tag_of(h: &crate::msg::Headers, name: HeaderName) -> Option<String> {
    let a = if name == HeaderName::From {
        h.from().ok()?
    } else {
        h.to().ok()?
    };
    a.tag().map(str::to_owned)
}

impl Session {
    fn blank(role: Role, config: SessionConfig, rng: Rng, state: SessionState) -> Session {
        Session {
            role,
            state,
            local: config.local,
            auth: config.auth,
            rng,
            invite: None,
            invite_branch: None,
            invite_auth_rounds: 0,
            forks: Dialogs::new(),
            cancel_requested: false,
            server_tx: None,
            incoming: None,
            local_tag: String::new(),
            awaiting_ack: false,
            deferred_reinvite: None,
            dialog: None,
            ack: None,
            fork_acks: Vec::new(),
            reinvite_ack: None,
            client: Vec::new(),
            offer_in: None,
            pending_offer_request: None,
            awaiting_ack_reinvite: false,
            reinvite_out: false,
            glare: None,
            remote_sdp: None,
            remote_held: false,
            refer_out: None,
            refer_in: None,
            end_cause: None,
            out: VecDeque::new(),
        }
    }

    /// UAC: calls `to` at `target` (the Request-URI) with an SDP `offer`
    /// (empty: no offer, the callee offers in its 2xx and we answer in the
    /// ACK — not supported for answering here, so pass an offer). `extra`
    /// headers (e.g. Replaces, Referred-By) are added to the INVITE.
    pub fn invite(
        _now: Instant,
        config: SessionConfig,
        mut rng: Rng,
        target: Uri,
        to: NameAddr,
        offer: Bytes,
        extra: Vec<(HeaderName, String)>,
    ) -> Session {
        let call_id = new_call_id(&mut RngRef(&mut *rng), &config.local.host.to_string());
        let tag = new_tag(&mut RngRef(&mut *rng));
        let seq = 1 + (rng.next_u32() % 10_000);
        let mut r = out_of_dialog(
            Method::Invite,
            target,
            &to,
            &config.from,
            &tag,
            &call_id,
            seq,
        );
        r.headers
            .push(HeaderName::Contact, config.local.contact_value());
        r.headers.push(HeaderName::Allow, ALLOW);
        for (n, v) in extra {
            r.headers.push(n, v);
        }
        set_body(&mut r, SDP, offer);
        config.local.decorate(&mut r);
        let mut s = Session::blank(Role::Uac, config, rng, SessionState::Calling);
        s.local_tag = tag;
        s.send_invite(r);
        s
    }

    fn send_invite(&mut self, mut r: Request) {
        let branch = self.local.stamp(&mut r, &mut *self.rng);
        if let Some(a) = self.auth.as_mut() {
            authorize(a, &mut r, &mut *self.rng);
        }
        self.invite_branch = Some(branch);
        self.invite = Some(r.clone());
        self.out.push_back(Output::Request(r));
    }

    /// UAS: a new INVITE (out of dialog) in server transaction `tx`. Emits
    /// [`SessionEvent::Incoming`]; the TU then rings, answers or rejects.
    pub fn incoming(
        _now: Instant,
        config: SessionConfig,
        mut rng: Rng,
        tx: TxKey,
        request: Request,
    ) -> Session {
        let tag = new_tag(&mut RngRef(&mut *rng));
        let mut s = Session::blank(Role::Uas, config, rng, SessionState::Incoming);
        s.local_tag = tag;
        s.server_tx = Some(tx);
        let offer = (!request.body.is_empty()).then(|| request.body.clone());
        s.remote_sdp = offer.clone();
        let mut from = request
            .headers
            .from()
            .unwrap_or_else(|_| NameAddr::new(request.uri.clone()));
        from.params.remove("tag");
        let replaces = request.headers.replaces().ok().flatten();
        s.incoming = Some(request);
        s.out.push_back(Output::Event(SessionEvent::Incoming {
            from,
            offer,
            replaces,
        }));
        s
    }

    // ------------------------------------------------------------------
    // Accessors

    /// The state.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Our side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The dialog of the call, once there is one (UAC: confirmed; UAS: after
    /// our first response with tag).
    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    /// The INVITE server transaction (UAS).
    pub fn server_tx(&self) -> Option<TxKey> {
        self.server_tx
    }

    /// The peer's latest SDP.
    pub fn remote_sdp(&self) -> Option<&Bytes> {
        self.remote_sdp.as_ref()
    }

    /// Whether the peer holds us (its last offer was sendonly/inactive).
    pub fn remote_held(&self) -> bool {
        self.remote_held
    }

    fn call_id(&self) -> Option<ByteString> {
        match self.role {
            Role::Uac => self.invite.as_ref()?.headers.call_id().ok(),
            Role::Uas => self.incoming.as_ref()?.headers.call_id().ok(),
        }
    }

    /// Whether a request from the network belongs to this session: same
    /// Call-ID and our tag in To (in-dialog requests, ACKs; §12.2.2).
    pub fn owns_request(&self, request: &Request) -> bool {
        let (Some(cid), Ok(rcid)) = (self.call_id(), request.headers.call_id()) else {
            return false;
        };
        cid == rcid && tag_of(&request.headers, HeaderName::To).as_deref() == Some(&self.local_tag)
    }

    /// Whether a response (e.g. a stray 2xx after the INVITE transaction
    /// ended, RFC 6026) belongs to this session: Call-ID and our From tag.
    pub fn owns_response(&self, response: &Response) -> bool {
        let (Some(cid), Ok(rcid)) = (self.call_id(), response.headers.call_id()) else {
            return false;
        };
        cid == rcid
            && tag_of(&response.headers, HeaderName::From).as_deref() == Some(&self.local_tag)
    }

    /// The Replaces value naming this session's dialog as the peer sees it,
    /// for an attended transfer (RFC 3891 §3: to-tag is the tag of the UA
    /// that will receive the INVITE, i.e. our peer here).
    pub fn replaces_value(&self) -> Option<Replaces> {
        let d = self.dialog.as_ref()?;
        let id = d.id();
        let v = format!(
            "{};to-tag={};from-tag={}",
            id.call_id, id.remote_tag, id.local_tag
        );
        Replaces::parse(&ByteString::from(v)).ok()
    }

    /// Whether an incoming INVITE's Replaces names this session (RFC 3891 §3):
    /// Call-ID, to-tag = our tag, from-tag = the peer's; early dialogs match
    /// only when we initiated them.
    pub fn replaces_match(&self, r: &Replaces) -> ReplacesMatch {
        if matches!(self.state, SessionState::Terminated(_)) {
            return ReplacesMatch::NoMatch;
        }
        let Some(cid) = self.call_id() else {
            return ReplacesMatch::NoMatch;
        };
        if cid != r.call_id || r.to_tag() != Some(self.local_tag.as_str()) {
            return ReplacesMatch::NoMatch;
        }
        let from = r.from_tag().unwrap_or("");
        if let Some(d) = &self.dialog
            && *d.id().remote_tag == *from
        {
            if d.state() == DialogState::Confirmed && self.state == SessionState::Established {
                return if r.early_only() {
                    ReplacesMatch::EarlyOnly
                } else {
                    ReplacesMatch::Match
                };
            }
            // An early dialog we did not initiate may not be replaced (RFC 3891 §3).
            return if self.role == Role::Uac {
                ReplacesMatch::Match
            } else {
                ReplacesMatch::NoMatch
            };
        }
        if self.role == Role::Uac && self.forks.iter().any(|d| *d.id().remote_tag == *from) {
            return ReplacesMatch::Match;
        }
        ReplacesMatch::NoMatch
    }

    // ------------------------------------------------------------------
    // UAS actions

    fn uas_response(&self, code: u16) -> Option<Response> {
        let inv = self.incoming.as_ref()?;
        let mut r = Response::from_request(inv, status(code));
        let _ = r.set_to_tag(&self.local_tag);
        if (101..300).contains(&code) {
            r.headers
                .push(HeaderName::Contact, self.local.contact_value());
            r.headers.push(HeaderName::Allow, ALLOW);
        }
        Some(r)
    }

    fn check_uas_pending(&self, what: &'static str) -> Result<(), SessionError> {
        match self.state {
            SessionState::Incoming | SessionState::Ringing | SessionState::Early
                if self.role == Role::Uas =>
            {
                Ok(())
            }
            _ => Err(SessionError::InvalidState(what)),
        }
    }

    fn uas_provisional(&mut self, code: u16, sdp: Bytes) -> Result<(), SessionError> {
        let (Some(mut r), Some(tx)) = (self.uas_response(code), self.server_tx) else {
            return Err(SessionError::InvalidState("provisional"));
        };
        set_response_body(&mut r, SDP, sdp);
        if self.dialog.is_none()
            && let Some(inv) = &self.incoming
        {
            self.dialog = Dialog::from_uas(inv, &r).ok();
        }
        self.out.push_back(Output::Response { tx, response: r });
        Ok(())
    }

    /// UAS: 180 Ringing (§13.3.1.1).
    pub fn ring(&mut self, _now: Instant) -> Result<(), SessionError> {
        self.check_uas_pending("ring")?;
        self.uas_provisional(180, Bytes::new())?;
        self.state = SessionState::Ringing;
        Ok(())
    }

    /// UAS: 183 Session Progress with an SDP answer (early media).
    pub fn early_media(&mut self, _now: Instant, sdp: Bytes) -> Result<(), SessionError> {
        self.check_uas_pending("early_media")?;
        self.uas_provisional(183, sdp)?;
        self.state = SessionState::Early;
        Ok(())
    }

    /// UAS: 200 OK with our SDP (§13.3.1.4); the transaction layer retransmits
    /// it until the ACK.
    pub fn answer(&mut self, _now: Instant, sdp: Bytes) -> Result<(), SessionError> {
        self.check_uas_pending("answer")?;
        let (Some(mut r), Some(tx)) = (self.uas_response(200), self.server_tx) else {
            return Err(SessionError::InvalidState("answer"));
        };
        set_response_body(&mut r, SDP, sdp);
        if let Some(inv) = &self.incoming {
            self.dialog = Dialog::from_uas(inv, &r).ok();
        }
        self.awaiting_ack = true;
        self.state = SessionState::Established;
        self.out.push_back(Output::Response { tx, response: r });
        self.out.push_back(Output::Event(SessionEvent::Established {
            remote_sdp: self.remote_sdp.clone(),
        }));
        Ok(())
    }

    /// UAS: rejects the call with `code` (486 Busy Here, 603 Decline, 480...).
    pub fn reject(&mut self, _now: Instant, code: u16) -> Result<(), SessionError> {
        self.check_uas_pending("reject")?;
        let code = if (300..700).contains(&code) {
            code
        } else {
            603
        };
        let (Some(r), Some(tx)) = (self.uas_response(code), self.server_tx) else {
            return Err(SessionError::InvalidState("reject"));
        };
        self.out.push_back(Output::Response { tx, response: r });
        self.end(EndCause::LocalRejected(code));
        Ok(())
    }

    /// UAS: redirects the call (RFC 3261 §8.2.6.2, §21.3): a 3xx (302 Moved Temporarily
    /// unless another 3xx is given) whose Contact is `target` — the caller (or its
    /// proxy) sends the INVITE there instead.
    pub fn redirect(&mut self, _now: Instant, code: u16, target: &Uri) -> Result<(), SessionError> {
        self.check_uas_pending("redirect")?;
        let code = if (300..400).contains(&code) {
            code
        } else {
            302
        };
        let (Some(mut r), Some(tx)) = (self.uas_response(code), self.server_tx) else {
            return Err(SessionError::InvalidState("redirect"));
        };
        r.headers.push(HeaderName::Contact, format!("<{target}>"));
        self.out.push_back(Output::Response { tx, response: r });
        self.end(EndCause::LocalRejected(code));
        Ok(())
    }

    /// UAS: the caller cancelled (`TxEvent::Cancelled` for our INVITE): 487.
    pub fn handle_cancelled(&mut self, now: Instant) {
        if self.role == Role::Uas && self.check_uas_pending("cancel").is_ok() {
            let _ = now;
            if let (Some(r), Some(tx)) = (self.uas_response(487), self.server_tx) {
                self.out.push_back(Output::Response { tx, response: r });
            }
            self.end(EndCause::RemoteCancelled);
        }
    }

    /// UAS: our INVITE server transaction timed out — Timer L with the 2xx
    /// never acknowledged (§13.3.1.4): BYE and end.
    pub fn handle_server_timeout(&mut self, _now: Instant, tx: TxKey) {
        if Some(tx) == self.server_tx && self.awaiting_ack {
            self.awaiting_ack = false;
            self.send_in_dialog(Method::Bye, Purpose::Bye, Vec::new(), "", Bytes::new());
            self.end(EndCause::AckTimeout);
        }
    }

    /// An ACK for one of our 2xx (a `TxEvent::Stray` for which
    /// [`Session::owns_request`] holds). An ACK with SDP completes an
    /// offer we made in a 2xx.
    pub fn handle_ack(&mut self, _now: Instant, ack: &Request) {
        if let Some(d) = self.dialog.as_mut() {
            let _ = d.handle_request(ack);
        }
        let seq = ack.headers.cseq().map(|c| c.seq).ok();
        let initial = self
            .incoming
            .as_ref()
            .and_then(|i| i.headers.cseq().ok())
            .map(|c| c.seq);
        if seq == initial {
            self.awaiting_ack = false;
            if let Some(sdp) = self.deferred_reinvite.take()
                && self.state == SessionState::Established
            {
                self.reinvite_out = true;
                self.send_reinvite(sdp);
            }
        } else {
            self.awaiting_ack_reinvite = false;
        }
        if !ack.body.is_empty() {
            self.remote_sdp = Some(ack.body.clone());
            self.out.push_back(Output::Event(SessionEvent::RemoteSdp {
                sdp: ack.body.clone(),
            }));
        }
    }

    // ------------------------------------------------------------------
    // Both sides

    /// Ends the call the right way for its state: CANCEL before a final
    /// response (UAC, §9.1), 603 Decline (UAS not yet answered), BYE once
    /// established (§15.1.1). Does nothing when already ending.
    pub fn hangup(&mut self, now: Instant) {
        match (&self.state, self.role) {
            (
                SessionState::Calling
                | SessionState::Proceeding
                | SessionState::Ringing
                | SessionState::Early,
                Role::Uac,
            ) => {
                self.cancel_requested = true;
                self.state = SessionState::Terminating;
                if let Some(b) = self.invite_branch.clone() {
                    self.out.push_back(Output::Cancel { branch: b });
                }
            }
            (_, Role::Uas) if self.check_uas_pending("hangup").is_ok() => {
                let _ = self.reject(now, 603);
            }
            (SessionState::Established, _) => {
                self.end_cause = Some(EndCause::LocalHangup);
                self.send_in_dialog(Method::Bye, Purpose::Bye, Vec::new(), "", Bytes::new());
                self.state = SessionState::Terminating;
            }
            _ => {}
        }
    }

    /// RFC 3891: a new INVITE with Replaces matched this session; end it
    /// (BYE when established, CANCEL when early) with cause `Replaced`.
    pub fn end_replaced(&mut self, now: Instant) {
        match self.state {
            SessionState::Established => {
                self.hangup(now);
                self.end_cause = Some(EndCause::Replaced);
            }
            SessionState::Terminated(_) | SessionState::Terminating => {}
            _ => {
                self.hangup(now);
                self.end_cause = Some(EndCause::Replaced);
            }
        }
    }

    /// Sends a re-INVITE with a new offer (hold: `a=sendonly`; resume:
    /// `a=sendrecv`; codec change), §14.1. Asked for right after we answered,
    /// before the caller's ACK, it is sent when the ACK arrives (§14.1: no
    /// re-INVITE while the initial INVITE transaction is open); a later request
    /// in that window replaces the earlier one.
    pub fn reinvite(&mut self, _now: Instant, sdp: Bytes) -> Result<(), SessionError> {
        if self.state != SessionState::Established {
            return Err(SessionError::InvalidState("reinvite"));
        }
        if self.reinvite_out || self.offer_in.is_some() || self.glare.is_some() {
            return Err(SessionError::Pending);
        }
        if self.awaiting_ack {
            self.deferred_reinvite = Some(sdp);
            return Ok(());
        }
        self.reinvite_out = true;
        self.send_reinvite(sdp);
        Ok(())
    }

    fn send_reinvite(&mut self, sdp: Bytes) {
        self.send_in_dialog(
            Method::Invite,
            Purpose::Reinvite(sdp.clone()),
            vec![(HeaderName::Allow, ALLOW.to_owned())],
            SDP,
            sdp,
        );
    }

    /// Answers the peer's re-INVITE/UPDATE ([`SessionEvent::Offer`]) with our
    /// SDP in a 200.
    pub fn accept_offer(&mut self, _now: Instant, sdp: Bytes) -> Result<(), SessionError> {
        let Some(o) = self.offer_in.take() else {
            return Err(SessionError::InvalidState("accept_offer"));
        };
        let Some(req) = self.pending_offer_request.take() else {
            return Err(SessionError::InvalidState("accept_offer"));
        };
        let mut r = Response::from_request(&req, StatusCode::OK);
        r.headers
            .push(HeaderName::Contact, self.local.contact_value());
        set_response_body(&mut r, SDP, sdp);
        let _ = o.empty;
        if o.method == Method::Invite {
            self.awaiting_ack_reinvite = true;
        }
        self.out.push_back(Output::Response {
            tx: o.tx,
            response: r,
        });
        Ok(())
    }

    /// Refuses the peer's re-INVITE/UPDATE offer (488 Not Acceptable Here
    /// by default); the session goes on unchanged.
    pub fn reject_offer(&mut self, _now: Instant, code: u16) -> Result<(), SessionError> {
        let Some(o) = self.offer_in.take() else {
            return Err(SessionError::InvalidState("reject_offer"));
        };
        let Some(req) = self.pending_offer_request.take() else {
            return Err(SessionError::InvalidState("reject_offer"));
        };
        let code = if (300..700).contains(&code) {
            code
        } else {
            488
        };
        let r = Response::from_request(&req, status(code));
        self.out.push_back(Output::Response {
            tx: o.tx,
            response: r,
        });
        Ok(())
    }

    /// Sends a DTMF digit in an INFO (`application/dtmf-relay`).
    pub fn send_dtmf(
        &mut self,
        _now: Instant,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), SessionError> {
        if self.state != SessionState::Established {
            return Err(SessionError::InvalidState("send_dtmf"));
        }
        let b = Bytes::from(body::dtmf_relay(digit, duration_ms));
        self.send_in_dialog(
            Method::Info,
            Purpose::Info,
            Vec::new(),
            "application/dtmf-relay",
            b,
        );
        Ok(())
    }

    /// Blind transfer: REFER the peer to `target` (RFC 3515); progress comes
    /// as `Transfer*` events.
    pub fn refer(&mut self, now: Instant, target: Uri) -> Result<(), SessionError> {
        self.refer_replacing(now, target, None)
    }

    /// Attended transfer when `replaces` is given: Refer-To carries
    /// `?Replaces=` (RFC 3891 §6.1) naming the dialog the target should
    /// replace — take it from the consultation call's [`Session::replaces_value`].
    pub fn refer_replacing(
        &mut self,
        _now: Instant,
        target: Uri,
        replaces: Option<&Replaces>,
    ) -> Result<(), SessionError> {
        if self.state != SessionState::Established {
            return Err(SessionError::InvalidState("refer"));
        }
        if self.refer_out == Some(false) {
            return Err(SessionError::Pending);
        }
        let mut target = target;
        if let (Some(rep), Uri::Sip(u)) = (replaces, &mut target) {
            u.headers = Some(format!("Replaces={}", escape_header(&rep.to_string())).into());
        }
        let refer_to = format!("<{target}>");
        let mut by = self.dialog.as_ref().map(|d| d.local_uri().clone());
        if let Some(b) = by.as_mut() {
            b.params.remove("tag");
        }
        let mut extra = vec![(HeaderName::ReferTo, refer_to)];
        if let Some(b) = by {
            extra.push((HeaderName::ReferredBy, b.to_string()));
        }
        self.refer_out = Some(false);
        self.send_in_dialog(Method::Refer, Purpose::Refer, extra, "", Bytes::new());
        Ok(())
    }

    /// After [`SessionEvent::TransferRequested`]: reports the new call's
    /// status to the referrer in a sipfrag NOTIFY (RFC 3515 §2.4.5); a final
    /// status (≥ 200) ends the implicit subscription.
    pub fn transfer_progress(&mut self, _now: Instant, code: u16) -> Result<(), SessionError> {
        let Some(id) = self.refer_in else {
            return Err(SessionError::InvalidState("transfer_progress"));
        };
        if matches!(self.state, SessionState::Terminated(_)) {
            return Err(SessionError::InvalidState("transfer_progress"));
        }
        self.send_refer_notify(id, code);
        if code >= 200 {
            self.refer_in = None;
        }
        Ok(())
    }

    fn send_refer_notify(&mut self, id: u32, code: u16) {
        let last = code >= 200;
        let reason = status(code).canonical_reason();
        let state = if last {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let extra = vec![
            (HeaderName::Event, format!("refer;id={id}")),
            (HeaderName::SubscriptionState, state),
        ];
        let b = Bytes::from(body::sipfrag(code, reason));
        self.send_in_dialog(
            Method::Notify,
            Purpose::ReferNotify { last },
            extra,
            "message/sipfrag;version=2.0",
            b,
        );
    }

    fn send_in_dialog(
        &mut self,
        method: Method,
        purpose: Purpose,
        extra: Vec<(HeaderName, String)>,
        content_type: &str,
        body: Bytes,
    ) {
        let Some(d) = self.dialog.as_mut() else {
            return;
        };
        let mut r = d.new_request(method.clone());
        if matches!(
            method,
            Method::Invite | Method::Refer | Method::Notify | Method::Update
        ) {
            r.headers
                .push(HeaderName::Contact, self.local.contact_value());
        }
        for (n, v) in extra {
            r.headers.push(n, v);
        }
        if !content_type.is_empty() {
            set_body(&mut r, content_type, body);
        }
        self.local.decorate(&mut r);
        self.push_client(r, purpose, 0);
    }

    fn push_client(&mut self, mut r: Request, purpose: Purpose, auth_rounds: u32) {
        let branch = self.local.stamp(&mut r, &mut *self.rng);
        if let Some(a) = self.auth.as_mut() {
            authorize(a, &mut r, &mut *self.rng);
        }
        self.client.push(Outstanding {
            branch,
            request: r.clone(),
            purpose,
            auth_rounds,
        });
        self.out.push_back(Output::Request(r));
    }

    fn end(&mut self, cause: EndCause) {
        if matches!(self.state, SessionState::Terminated(_)) {
            return;
        }
        if let Some(d) = self.dialog.as_mut() {
            d.terminate();
        }
        self.glare = None;
        self.state = SessionState::Terminated(cause.clone());
        self.out
            .push_back(Output::Event(SessionEvent::Ended { cause }));
    }

    // ------------------------------------------------------------------
    // Inputs

    /// A response to a request of this session (matched by branch; others
    /// are ignored).
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let Some(branch) = top_branch(&response.headers) else {
            return;
        };
        if self.invite_branch.as_deref() == Some(branch.as_str()) {
            self.on_invite_response(now, response);
            return;
        }
        if let Some((b, ack)) = &self.reinvite_ack
            && *b == branch
            && response.status.is_success()
        {
            // A retransmitted 2xx to our re-INVITE: ACK again (§13.2.2.4).
            self.out.push_back(Output::Ack(ack.clone()));
            return;
        }
        let Some(i) = self.client.iter().position(|o| o.branch == branch) else {
            return;
        };
        if !response.status.is_final() {
            return;
        }
        let o = self.client.remove(i);
        self.on_client_response(now, o, response);
    }

    /// A client transaction of this session failed (Timer B/F, transport):
    /// handled as 408/503 (§8.1.3.1).
    pub fn handle_failure(&mut self, now: Instant, branch: &str, failure: TxFailure) {
        let req = if self.invite_branch.as_deref() == Some(branch) {
            self.invite.clone()
        } else {
            self.client
                .iter()
                .find(|o| o.branch == branch)
                .map(|o| o.request.clone())
        };
        if let Some(req) = req {
            let r = failure_response(&req, failure);
            self.handle_response(now, &r);
        }
    }

    fn on_invite_response(&mut self, now: Instant, response: &Response) {
        let Some(invite) = self.invite.clone() else {
            return;
        };
        let code = response.status.as_u16();
        if matches!(self.state, SessionState::Terminated(_)) && !response.status.is_success() {
            return;
        }
        if (code == 401 || code == 407) && self.dialog.is_none() && !self.cancel_requested {
            self.invite_auth_rounds += 1;
            let ok = self.invite_auth_rounds <= 2
                && self
                    .auth
                    .as_mut()
                    .is_some_and(|a| take_challenge(a, response).is_ok());
            if ok {
                // §22.2: resend with credentials, same Call-ID and tag, CSeq + 1.
                let mut r = invite;
                if let Ok(mut c) = r.headers.cseq() {
                    c.seq += 1;
                    r.headers.set(HeaderName::CSeq, c.to_string());
                }
                self.forks = Dialogs::new();
                self.send_invite(r);
            } else {
                self.end(EndCause::Rejected(code));
            }
            return;
        }
        let outcome = self.forks.handle_invite_response(&invite, response);
        if response.status.is_provisional() {
            if self.cancel_requested || self.dialog.is_some() {
                return;
            }
            match outcome {
                Ok(InviteOutcome::Early(_)) => {
                    if code == 180 && self.state != SessionState::Ringing {
                        self.state = SessionState::Ringing;
                        self.out.push_back(Output::Event(SessionEvent::Ringing));
                    } else if self.state != SessionState::Ringing {
                        self.state = SessionState::Early;
                    }
                    if !response.body.is_empty() {
                        self.remote_sdp = Some(response.body.clone());
                        self.out.push_back(Output::Event(SessionEvent::EarlyMedia {
                            sdp: response.body.clone(),
                        }));
                    }
                }
                _ => {
                    if self.state == SessionState::Calling {
                        self.state = SessionState::Proceeding;
                    }
                }
            }
            return;
        }
        if response.status.is_success() {
            let Ok(InviteOutcome::Confirmed { id, .. }) = outcome else {
                return;
            };
            if let Some(d) = &self.dialog
                && *d.id() == id
            {
                if let Some(a) = &self.ack {
                    self.out.push_back(Output::Ack(a.clone()));
                }
                return;
            }
            if let Some((_, a)) = self.fork_acks.iter().find(|(f, _)| *f == id) {
                self.out.push_back(Output::Ack(a.clone()));
                return;
            }
            let Some(mut d) = self.forks.get(&id).cloned() else {
                return;
            };
            let mut ack = d.new_ack(&invite);
            let _ = self.local.stamp(&mut ack, &mut *self.rng);
            self.out.push_back(Output::Ack(ack.clone()));
            if self.dialog.is_some() || matches!(self.state, SessionState::Terminated(_)) {
                // §13.2.2.4: a later 2xx from another fork — ACK and BYE it.
                let mut bye = d.new_request(Method::Bye);
                self.fork_acks.push((id, ack));
                self.local.decorate(&mut bye);
                self.push_client(bye, Purpose::ForkBye, 0);
                return;
            }
            self.ack = Some(ack);
            self.dialog = Some(d);
            self.remote_sdp = (!response.body.is_empty()).then(|| response.body.clone());
            if self.cancel_requested {
                // The 200 crossed our CANCEL (§9.1, §15): ACK then BYE.
                self.end_cause = Some(EndCause::Cancelled);
                self.send_in_dialog(Method::Bye, Purpose::Bye, Vec::new(), "", Bytes::new());
                self.state = SessionState::Terminating;
                return;
            }
            self.state = SessionState::Established;
            self.out.push_back(Output::Event(SessionEvent::Established {
                remote_sdp: self.remote_sdp.clone(),
            }));
            return;
        }
        // 3xx–6xx (or 408/503 from a failure of the transaction).
        if self.dialog.is_some() {
            return;
        }
        let _ = now;
        if self.cancel_requested {
            self.end(EndCause::Cancelled);
        } else {
            self.end(EndCause::Rejected(code));
        }
    }

    fn on_client_response(&mut self, _now: Instant, o: Outstanding, response: &Response) {
        let code = response.status.as_u16();
        if let Some(d) = self.dialog.as_mut()
            && o.purpose != Purpose::ForkBye
        {
            d.handle_response(&o.request, response);
        }
        if (code == 401 || code == 407)
            && o.auth_rounds < 2
            && self
                .auth
                .as_mut()
                .is_some_and(|a| take_challenge(a, response).is_ok())
            && let Some(d) = self.dialog.as_mut()
        {
            let fresh = d.new_request(o.request.method.clone());
            let mut r = o.request.clone();
            if let Some(c) = fresh.headers.get(&HeaderName::CSeq) {
                r.headers.set(HeaderName::CSeq, c.clone());
            }
            self.push_client(r, o.purpose, o.auth_rounds + 1);
            return;
        }
        match o.purpose {
            Purpose::ForkBye => {}
            Purpose::Bye => {
                let cause = self.end_cause.take().unwrap_or(EndCause::LocalHangup);
                self.end(cause);
            }
            Purpose::Reinvite(sdp) => {
                self.reinvite_out = false;
                if response.status.is_success() {
                    if let Some(d) = &self.dialog {
                        let mut ack = d.new_ack(&o.request);
                        let _ = self.local.stamp(&mut ack, &mut *self.rng);
                        self.out.push_back(Output::Ack(ack.clone()));
                        self.reinvite_ack = Some((o.branch.clone(), ack));
                    }
                    if !response.body.is_empty() {
                        self.remote_sdp = Some(response.body.clone());
                        self.out.push_back(Output::Event(SessionEvent::RemoteSdp {
                            sdp: response.body.clone(),
                        }));
                    }
                } else if code == 491 {
                    // §14.1: retry after a random time; 2.1–4 s if we own the
                    // Call-ID, else 0–2 s, in units of 10 ms.
                    let r = u64::from(self.rng.next_u32());
                    let ms = match self.role {
                        Role::Uac => 2100 + (r % 191) * 10,
                        Role::Uas => (r % 201) * 10,
                    };
                    // While we wait we have no offer outstanding, so the
                    // peer's retry is accepted rather than refused again.
                    self.glare = Some((_now + Duration::from_millis(ms), sdp));
                } else if code == 408 || code == 481 {
                    self.end(EndCause::DialogLost(code));
                } else {
                    self.out
                        .push_back(Output::Event(SessionEvent::ReinviteFailed { status: code }));
                }
            }
            Purpose::Info => {
                if code == 408 || code == 481 {
                    self.end(EndCause::DialogLost(code));
                }
            }
            Purpose::Refer => {
                if !response.status.is_success() {
                    self.refer_out = None;
                    self.out
                        .push_back(Output::Event(SessionEvent::TransferFailed {
                            status: Some(code),
                        }));
                    if code == 408 || code == 481 {
                        self.end(EndCause::DialogLost(code));
                    }
                }
            }
            Purpose::ReferNotify { .. } => {}
        }
    }

    /// A request from the peer for which [`Session::owns_request`] holds (not
    /// ACK: see [`Session::handle_ack`]), in server transaction `tx`.
    pub fn handle_request(&mut self, now: Instant, tx: TxKey, request: &Request) {
        if request.method == Method::Ack {
            self.handle_ack(now, request);
            return;
        }
        let respond = |s: &mut Session, code: u16| {
            let r = error_response(request, status(code));
            s.out.push_back(Output::Response { tx, response: r });
        };
        if matches!(self.state, SessionState::Terminated(_)) {
            respond(self, 481);
            return;
        }
        let Some(d) = self.dialog.as_mut() else {
            respond(self, 481);
            return;
        };
        if let Err(e) = d.handle_request(request) {
            respond(self, e.status().map_or(500, |s| s.as_u16()));
            return;
        }
        match request.method {
            Method::Bye => {
                respond(self, 200);
                if let Some(o) = self.offer_in.take()
                    && let Some(req) = self.pending_offer_request.take()
                {
                    let r = Response::from_request(&req, StatusCode::REQUEST_TERMINATED);
                    self.out.push_back(Output::Response {
                        tx: o.tx,
                        response: r,
                    });
                }
                self.end(EndCause::RemoteHangup);
            }
            Method::Invite | Method::Update => self.on_offer(tx, request),
            Method::Info => {
                if request.body.is_empty() {
                    respond(self, 200);
                } else if has_type(&request.headers, "application", "dtmf-relay") {
                    match body::parse_dtmf_relay(&request.body) {
                        Some((digit, duration_ms)) => {
                            respond(self, 200);
                            self.out.push_back(Output::Event(SessionEvent::Dtmf {
                                digit,
                                duration_ms,
                            }));
                        }
                        None => respond(self, 400),
                    }
                } else {
                    let mut r = error_response(request, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                    r.headers.push(HeaderName::Accept, "application/dtmf-relay");
                    self.out.push_back(Output::Response { tx, response: r });
                }
            }
            Method::Refer => self.on_refer(tx, request),
            Method::Notify => self.on_notify(tx, request),
            Method::Options => {
                let mut r = error_response(request, StatusCode::OK);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.out.push_back(Output::Response { tx, response: r });
            }
            _ => {
                let mut r = error_response(request, StatusCode::METHOD_NOT_ALLOWED);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.out.push_back(Output::Response { tx, response: r });
            }
        }
    }

    fn on_offer(&mut self, tx: TxKey, request: &Request) {
        if self.reinvite_out || self.offer_in.is_some() || self.awaiting_ack_reinvite {
            // §14.2: an offer while ours is outstanding — glare.
            let r = error_response(request, StatusCode::REQUEST_PENDING);
            self.out.push_back(Output::Response { tx, response: r });
            return;
        }
        if self.awaiting_ack {
            // §14.2: a re-INVITE before the ACK of the initial 2xx: 500 with Retry-After.
            let mut r = error_response(request, StatusCode::SERVER_INTERNAL_ERROR);
            r.headers.push(HeaderName::RetryAfter, "1");
            self.out.push_back(Output::Response { tx, response: r });
            return;
        }
        if request.method == Method::Update && request.body.is_empty() {
            let r = error_response(request, StatusCode::OK);
            self.out.push_back(Output::Response { tx, response: r });
            return;
        }
        let offer = request.body.clone();
        self.offer_in = Some(IncomingOffer {
            tx,
            method: request.method.clone(),
            empty: offer.is_empty(),
        });
        self.pending_offer_request = Some(request.clone());
        if !offer.is_empty() {
            self.remote_sdp = Some(offer.clone());
            let held = body::sdp_direction(&offer).is_hold();
            if held != self.remote_held {
                self.remote_held = held;
                self.out
                    .push_back(Output::Event(SessionEvent::RemoteHold(held)));
            }
        }
        self.out
            .push_back(Output::Event(SessionEvent::Offer { offer }));
    }

    fn on_refer(&mut self, tx: TxKey, request: &Request) {
        let Some(refer_to) = request.headers.refer_to().ok().flatten() else {
            let r = error_response(request, StatusCode::BAD_REQUEST);
            self.out.push_back(Output::Response { tx, response: r });
            return;
        };
        let mut target = refer_to.uri.clone();
        let mut replaces = None;
        if let Uri::Sip(u) = &mut target
            && let Some(h) = u.headers.take()
        {
            for part in h.split('&') {
                if let Some((n, v)) = part.split_once('=')
                    && n.eq_ignore_ascii_case("replaces")
                {
                    let raw = unescape(v);
                    if let Ok(text) = std::str::from_utf8(&raw) {
                        replaces = Replaces::parse(&ByteString::from(text.to_owned())).ok();
                    }
                }
            }
        }
        let referred_by = request.headers.referred_by().ok().flatten();
        let mut r = error_response(request, StatusCode::ACCEPTED);
        r.headers
            .push(HeaderName::Contact, self.local.contact_value());
        self.out.push_back(Output::Response { tx, response: r });
        let id = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        self.refer_in = Some(id);
        // RFC 3515 §2.4.4: an immediate NOTIFY; 100 Trying until the TU reports.
        self.send_refer_notify(id, 100);
        self.out
            .push_back(Output::Event(SessionEvent::TransferRequested {
                target,
                replaces,
                referred_by,
            }));
    }

    fn on_notify(&mut self, tx: TxKey, request: &Request) {
        let event = request.headers.event().ok().flatten();
        if !event
            .as_ref()
            .is_some_and(|e| e.package.eq_ignore_ascii_case("refer"))
            || self.refer_out.is_none()
        {
            let r = error_response(request, StatusCode::BAD_EVENT);
            self.out.push_back(Output::Response { tx, response: r });
            return;
        }
        let r = error_response(request, StatusCode::OK);
        self.out.push_back(Output::Response { tx, response: r });
        let code = body::parse_sipfrag(&request.body);
        let terminated = request
            .headers
            .subscription_state()
            .ok()
            .flatten()
            .is_some_and(|s| s.is_terminated());
        let ev = match code {
            Some(c) if c < 200 => Some(SessionEvent::TransferProgress { status: c }),
            Some(c) if c < 300 => Some(SessionEvent::TransferSucceeded),
            Some(c) => Some(SessionEvent::TransferFailed { status: Some(c) }),
            None => None,
        };
        let is_final = code.is_some_and(|c| c >= 200);
        if let Some(ev) = ev {
            self.out.push_back(Output::Event(ev));
        }
        if is_final {
            self.refer_out = None;
        } else if terminated {
            self.refer_out = None;
            self.out
                .push_back(Output::Event(SessionEvent::TransferFailed { status: None }));
        }
    }

    /// Runs the glare retry timer (§14.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, _)) = &self.glare
            && *at <= now
        {
            let (_, sdp) = self.glare.take().expect("checked");
            if self.state == SessionState::Established {
                if self.offer_in.is_some() || self.awaiting_ack_reinvite {
                    // The peer's offer is being handled; try again a little later.
                    self.glare = Some((now + Duration::from_millis(500), sdp));
                } else {
                    self.reinvite_out = true;
                    self.send_reinvite(sdp);
                }
            }
        }
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.glare.as_ref().map(|g| g.0)
    }

    /// The next thing to do; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<SessionEvent>> {
        self.out.pop_front()
    }
}

/// RFC 3891 §3 for a whole endpoint: the session an INVITE's Replaces names,
/// or the status to reject the INVITE with (481 when none, 486 for
/// `early-only` on a confirmed dialog).
pub fn find_replaced<'a, K: Copy + 'a>(
    sessions: impl IntoIterator<Item = (K, &'a Session)>,
    replaces: &Replaces,
) -> Result<K, u16> {
    let mut early_only = false;
    for (k, s) in sessions {
        match s.replaces_match(replaces) {
            ReplacesMatch::Match => return Ok(k),
            ReplacesMatch::EarlyOnly => early_only = true,
            ReplacesMatch::NoMatch => {}
        }
    }
    Err(if early_only { 486 } else { 481 })
}
