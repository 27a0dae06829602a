//! SIP usages above the transaction layer: registration (RFC 3261 §10), the
//! INVITE session (§13–§15, RFC 3264, RFC 6026) with REFER (RFC 3515, RFC 3891)
//! and INFO DTMF, subscriptions (RFC 6665), event state publication (RFC 3903)
//! and pager-mode MESSAGE (RFC 3428).
//!
//! Each usage is a sans-IO state machine like [`crate::transaction::Transactions`]:
//! it reads no clock and touches no socket. The driver (the phone, the engine,
//! a test) shuttles between one [`Transactions`](crate::transaction::Transactions)
//! and its usages. The run loop, after any input:
//!
//! 1. feed the usage what the transaction layer said about it:
//!    - [`TxEvent::Response`](crate::transaction::TxEvent::Response) for a request
//!      the usage sent → `handle_response(now, &response)`; usages recognise
//!      their responses by the top Via branch they chose;
//!    - [`TxEvent::Timeout`](crate::transaction::TxEvent::Timeout) /
//!      `TransportError` of such a request → `handle_failure(now, branch, kind)`
//!      (treated as 408 / 503, §8.1.3.1);
//!    - [`TxEvent::Request`](crate::transaction::TxEvent::Request) routed to the
//!      usage (by dialog, or a new usage for a dialog-creating request) →
//!      `handle_request(now, tx, request)`;
//!    - `Cancelled`, stray ACKs and stray 2xx of the INVITE session;
//! 2. call the usage's own actions (`register`, `answer`, `hangup`, ...);
//! 3. drain `poll_output()` and carry out each [`Output`]:
//!    [`Output::Request`] → `Transactions::send_request` (the driver resolves
//!    the Request-URI or first Route to a [`Peer`](crate::transaction::Peer),
//!    RFC 3263) and remembers the key with [`ClientTxs`];
//!    [`Output::Ack`] → `Transactions::send_ack`; [`Output::Cancel`] →
//!    `Transactions::cancel` on the INVITE with that branch;
//!    [`Output::Response`] → `Transactions::send_response`; [`Output::Event`]
//!    → the application;
//! 4. sleep until the earliest `poll_timeout()` of the usages and the
//!    transaction layer, then call `handle_timeout(now)`.
//!
//! Configuration the usages cannot know — Via sent-by, transport and the
//! Contact URI — comes in a [`Local`]; randomness (branches, tags, Call-IDs,
//! cnonces, back-off jitter, glare timers) through an injected
//! [`rand_core::RngCore`].

pub mod body;
pub mod message;
pub mod publication;
pub mod registration;
pub mod session;
pub mod subscription;

use std::collections::HashMap;

use bytes::Bytes;

use crate::auth::{ChallengeError, ChallengeKind, DigestClient};
use crate::msg::{HeaderName, Host, MediaType, Request, Response, StatusCode, Transport, Uri, Via};
use crate::transaction::{TxKey, new_branch};

/// A boxed random generator owned by a usage (ARCHITECTURE.md §3.1: injected).
pub type Rng = Box<dyn rand_core::RngCore + Send>;

/// Where this endpoint is, as the driver knows it: what goes in the Via
/// sent-by (§18.1.1) and in Contact (§8.1.1.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The Via transport of requests we send.
    pub transport: Transport,
    /// The Via sent-by host.
    pub host: Host,
    /// The Via sent-by port.
    pub port: Option<u16>,
    /// Our Contact URI (§8.1.1.8: where the peer reaches this UA).
    pub contact: Uri,
    /// The User-Agent header value, if any (§20.41).
    pub user_agent: Option<String>,
}

impl Local {
    /// A Local for UDP at `addr` with Contact `sip:user@addr` (or `sip:addr`).
    pub fn udp(addr: std::net::SocketAddr, user: Option<&str>) -> Local {
        let mut uri = crate::msg::SipUri::new(Host::from(addr.ip())).with_port(addr.port());
        if let Some(u) = user {
            uri = uri.with_user(u);
        }
        Local {
            transport: Transport::Udp,
            host: Host::from(addr.ip()),
            port: Some(addr.port()),
            contact: Uri::Sip(uri),
            user_agent: None,
        }
    }

    /// Sets a fresh top Via (with `rport`, RFC 3581) on `request` and returns its branch.
    pub fn stamp(&self, request: &mut Request, rng: &mut dyn rand_core::RngCore) -> String {
        let branch = new_branch(&mut RngRef(rng));
        let via = Via::new(self.transport.clone(), self.host.clone(), self.port)
            .with_rport()
            .with_branch(&branch);
        request.headers.remove(&HeaderName::Via);
        request
            .headers
            .insert_first(HeaderName::Via, via.to_string());
        branch
    }

    /// Our Contact header value `<uri>`.
    pub fn contact_value(&self) -> String {
        format!("<{}>", self.contact)
    }

    pub(crate) fn decorate(&self, request: &mut Request) {
        if let Some(ua) = &self.user_agent
            && !request.headers.contains(&HeaderName::UserAgent)
        {
            request.headers.push(HeaderName::UserAgent, ua.clone());
        }
    }
}

/// Adapts `&mut dyn RngCore` to the `impl RngCore` the id helpers take.
pub(crate) struct RngRef<'a>(pub &'a mut dyn rand_core::RngCore);

impl rand_core::RngCore for RngRef<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

/// What a usage asks the driver to do. `E` is the usage's event type.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<E> {
    /// Start a client transaction with this request
    /// (`Transactions::send_request`); its top Via branch identifies it.
    Request(Request),
    /// Send this ACK for a 2xx (`Transactions::send_ack`, §13.2.2.4).
    Ack(Request),
    /// Cancel the INVITE client transaction whose top Via has this branch
    /// (`Transactions::cancel`, §9.1).
    Cancel {
        /// The INVITE's branch.
        branch: String,
    },
    /// Send this response in a server transaction (`Transactions::send_response`).
    Response {
        /// The server transaction.
        tx: TxKey,
        /// The response.
        response: Response,
    },
    /// Tell the application.
    Event(E),
}

/// How a client transaction failed without a response (§8.1.3.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TxFailure {
    /// Timer B or F fired: treated as 408 Request Timeout.
    Timeout,
    /// The transport failed: treated as 503 Service Unavailable.
    Transport,
}

impl TxFailure {
    /// The status the failure counts as (§8.1.3.1).
    pub fn status(self) -> StatusCode {
        match self {
            TxFailure::Timeout => StatusCode::REQUEST_TIMEOUT,
            TxFailure::Transport => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The response a failed client transaction counts as (§8.1.3.1): `status`
/// to `request`, with the request's headers copied.
pub fn failure_response(request: &Request, failure: TxFailure) -> Response {
    Response::from_request(request, failure.status())
}

/// The driver's book of client transactions started for usages: transaction
/// key ↔ (owner, branch), so that Timeout/TransportError events (which carry
/// only the key) reach the usage by branch, and [`Output::Cancel`] finds the key.
#[derive(Debug, Clone)]
pub struct ClientTxs<O> {
    by_key: HashMap<TxKey, (O, String)>,
    by_branch: HashMap<String, TxKey>,
}

impl<O> Default for ClientTxs<O> {
    fn default() -> Self {
        ClientTxs {
            by_key: HashMap::new(),
            by_branch: HashMap::new(),
        }
    }
}

impl<O: Clone> ClientTxs<O> {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a started client transaction of `owner` whose request had `branch`.
    pub fn insert(&mut self, key: TxKey, owner: O, branch: String) {
        self.by_branch.insert(branch.clone(), key);
        self.by_key.insert(key, (owner, branch));
    }

    /// Owner and branch of a transaction.
    pub fn get(&self, key: TxKey) -> Option<&(O, String)> {
        self.by_key.get(&key)
    }

    /// The transaction started with `branch`.
    pub fn key_of(&self, branch: &str) -> Option<TxKey> {
        self.by_branch.get(branch).copied()
    }

    /// Forgets a transaction (on `TxEvent::Terminated`).
    pub fn remove(&mut self, key: TxKey) -> Option<(O, String)> {
        let (o, b) = self.by_key.remove(&key)?;
        self.by_branch.remove(&b);
        Some((o, b))
    }
}

/// The branch of a message's top Via, as usages use it to match responses.
pub fn top_branch(headers: &crate::msg::Headers) -> Option<String> {
    headers.top_via().ok()?.branch().map(str::to_owned)
}

/// A status code from a number known to be in range (falls back to 500).
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::new(code).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR)
}

/// A Content-Type from text with parameters (`text/plain;charset=UTF-8`);
/// unreadable text becomes `application/octet-stream`.
pub(crate) fn media_type(s: &str) -> MediaType {
    MediaType::parse(&bytestring::ByteString::from(s.to_owned())).unwrap_or_else(|_| {
        MediaType::new("application", "octet-stream").expect("a valid media type")
    })
}

/// A request outside any dialog (§8.1.1): Request-URI, To, From with our tag,
/// Call-ID, CSeq and Max-Forwards; Via is stamped when sent.
pub(crate) fn out_of_dialog(
    method: crate::msg::Method,
    uri: Uri,
    to: &crate::msg::NameAddr,
    from: &crate::msg::NameAddr,
    from_tag: &str,
    call_id: &str,
    seq: u32,
) -> Request {
    let mut r = Request::new(method.clone(), uri);
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push_value(HeaderName::To, to);
    let mut f = from.clone();
    f.set_tag(from_tag);
    r.headers.push_value(HeaderName::From, &f);
    r.headers.push(HeaderName::CallId, call_id.to_owned());
    r.headers
        .push_value(HeaderName::CSeq, &crate::msg::CSeq::new(seq, method));
    r
}

/// The digest answer of §22.2 for one request: takes the challenges of a
/// 401/407 into `client`. `Err` means do not resend (refused credentials or
/// nothing we can answer).
pub(crate) fn take_challenge(
    client: &mut DigestClient,
    response: &Response,
) -> Result<(), ChallengeError> {
    let kind = ChallengeKind::from_status(response.status.as_u16())
        .ok_or(ChallengeError::NoUsableChallenge)?;
    let name = match kind {
        ChallengeKind::Www => HeaderName::WwwAuthenticate,
        ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
    };
    let values: Vec<&str> = response.headers.get_all(&name).map(|v| &**v).collect();
    client.handle_challenge(kind, &values)
}

/// Puts the client's credentials (§22.3: for every realm it holds a nonce of)
/// on `request`, replacing older ones.
pub(crate) fn authorize(
    client: &mut DigestClient,
    request: &mut Request,
    rng: &mut dyn rand_core::RngCore,
) {
    request.headers.remove(&HeaderName::Authorization);
    request.headers.remove(&HeaderName::ProxyAuthorization);
    if !client.has_credentials() {
        return;
    }
    let cnonce = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let uri = request.uri.to_string();
    for a in client.authorize(request.method.as_str(), &uri, &request.body, &cnonce) {
        let name = match a.kind {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        };
        request.headers.push(name, a.credentials.to_string());
    }
}

/// Sets `body` with `content_type` on a request (empty body: no Content-Type).
pub(crate) fn set_body(request: &mut Request, content_type: &str, body: Bytes) {
    if body.is_empty() {
        request.headers.remove(&HeaderName::ContentType);
        request.body = Bytes::new();
    } else {
        request.set_body(&media_type(content_type), body);
    }
}

/// Sets `body` with `content_type` on a response (empty body: no Content-Type).
pub(crate) fn set_response_body(response: &mut Response, content_type: &str, body: Bytes) {
    if body.is_empty() {
        return;
    }
    response.headers.set(
        HeaderName::ContentType,
        media_type(content_type).to_string(),
    );
    response.body = body;
}

/// Whether a message's Content-Type is `mtype/subtype`.
pub(crate) fn has_type(headers: &crate::msg::Headers, mtype: &str, subtype: &str) -> bool {
    headers
        .content_type()
        .ok()
        .flatten()
        .is_some_and(|t| t.is(mtype, subtype))
}
