//! The transaction layer of RFC 3261 §17, with the Accepted states of RFC 6026.
//!
//! [`Transactions`] holds every client and server transaction of one endpoint.
//! It does no IO and reads no clock: the driver feeds it parsed messages,
//! transport errors and the passing of time, and carries out what it asks for.
//! The run loop, after any input:
//!
//! 1. call a `handle_*` method (or `send_request` / `send_response` / `cancel`
//!    for the TU's own actions) with the current `now`;
//! 2. drain [`Transactions::poll_transmit`] and send each datagram or stream
//!    write to its [`Peer`];
//! 3. drain [`Transactions::poll_event`] and hand each [`TxEvent`] to the TU
//!    (which may call `send_response` and friends, so go back to 2);
//! 4. sleep until [`Transactions::poll_timeout`], then call
//!    [`Transactions::handle_timeout`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use vaxel_sip::msg::{self, Message};
//! use vaxel_sip::transaction::{Peer, Transactions, TimerConfig, TransportKind, TxEvent};
//!
//! let mut tx = Transactions::new(TimerConfig::default());
//! let now = Instant::now(); // a driver's clock; tests use a simulated one
//! let request = msg::parse(Bytes::from_static(
//!     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
//!       Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n\
//!       From: <sip:alice@example.com>;tag=1928301774\r\n\
//!       Call-ID: a84b4c76e66710\r\nCSeq: 1 OPTIONS\r\n\r\n",
//! )).unwrap();
//! let Message::Request(request) = request else { unreachable!() };
//! let peer = Peer { transport: TransportKind::Udp, addr: "192.0.2.2:5060".parse().unwrap() };
//! let key = tx.send_request(now, request, peer).unwrap();
//! assert_eq!(tx.poll_transmit().unwrap().peer, peer);
//! // Timer E: the first retransmission is due after T1.
//! assert_eq!(tx.poll_timeout(), Some(now + Duration::from_millis(500)));
//! # let _ = key;
//! ```
//!
//! What the layer does on its own, so that the TU need not:
//! retransmissions on unreliable transports (Timers A, E, G), absorbing
//! retransmitted requests and resending the last response, the ACK for a
//! 300–699 response to INVITE (§17.1.1.3), 100 Trying when the TU has not
//! answered an INVITE within 200 ms (§17.2.1), answering CANCEL (200 or 481,
//! §9.2), the `received`/`rport` stamps on incoming requests (§18.2.1, RFC 3581)
//! and the destination of responses (§18.2.2), and the retransmission of a 2xx
//! to INVITE until its ACK arrives (§13.3.1.4, which RFC 3261 gives the UAS
//! core; the TU must not retransmit the 2xx itself).
//!
//! What stays with the TU: the ACK for a 2xx (end to end, built by the dialog,
//! §13.2.2.4, sent with [`Transactions::send_ack`]), and everything about
//! dialogs and sessions.

mod timer;
mod wire;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

pub use timer::{Timer, TimerConfig};
pub use wire::{response_destination, stamp_received};

use crate::msg::{HeaderName, Message, Method, Request, Response, StatusCode, Transport, Uri, Via};

/// The RFC 3261 branch prefix (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A new branch for the top Via of a request this endpoint sends: the magic
/// cookie and 96 random bits in hex (§8.1.1.7: unique across space and time).
pub fn new_branch(rng: &mut impl rand_core::RngCore) -> String {
    format!(
        "{MAGIC_COOKIE}{:016x}{:08x}",
        rng.next_u64(),
        rng.next_u32()
    )
}

/// A handle to one transaction, unique for the life of a [`Transactions`].
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug, PartialOrd, Ord)]
pub struct TxKey(u64);

impl TxKey {
    /// The number behind the handle (for logs).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// The transports a transaction runs over (§18; RFC 7118 for WebSocket).
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub enum TransportKind {
    /// UDP: unreliable, so the layer retransmits (§17.1.1.2).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
}

impl TransportKind {
    /// Whether the transport is reliable, which switches off Timers A, E and G
    /// and zeroes D, I, J and K (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
    pub fn is_reliable(self) -> bool {
        self != TransportKind::Udp
    }

    /// The Via transport token (§20.42, RFC 7118 §5.1).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }

    /// The kind named by a Via transport token (case-insensitive).
    pub fn from_via_token(token: &str) -> Option<TransportKind> {
        [
            TransportKind::Udp,
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
        ]
        .into_iter()
        .find(|k| k.via_token().eq_ignore_ascii_case(token))
    }

    /// The kind of a parsed Via transport; `None` for SCTP and others we do not run.
    pub fn from_transport(t: &Transport) -> Option<TransportKind> {
        Self::from_via_token(t.as_str())
    }

    /// The Via transport value for this kind.
    pub fn to_transport(self) -> Transport {
        match self {
            TransportKind::Udp => Transport::Udp,
            TransportKind::Tcp => Transport::Tcp,
            TransportKind::Tls => Transport::Tls,
            TransportKind::Ws => Transport::Ws,
            TransportKind::Wss => Transport::Wss,
        }
    }
}

/// The far end of a message or of a connection: where a request goes or came
/// from, where a response goes (§18).
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub struct Peer {
    /// The transport.
    pub transport: TransportKind,
    /// The remote address (for streams: of the connection).
    pub addr: SocketAddr,
}

/// Bytes the driver must send to `peer`. Retransmissions reuse the bytes
/// printed when the message was first sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub peer: Peer,
    /// One whole SIP message in wire form.
    pub bytes: Bytes,
}

/// What the transaction layer tells the TU.
#[derive(Clone, Debug, PartialEq)]
pub enum TxEvent {
    /// A new server transaction (any method but ACK and CANCEL, which the layer
    /// handles). For INVITE the layer sends 100 Trying itself if the TU has not
    /// sent a response within 200 ms (§17.2.1).
    Request {
        /// The new server transaction.
        tx: TxKey,
        /// The request, top Via stamped with `received`/`rport` (§18.2.1, RFC 3581).
        request: Request,
        /// Where it came from.
        from: Peer,
    },
    /// A response for a client transaction: provisional and final; for
    /// INVITE also the 2xx retransmissions and forked 2xx that arrive while the
    /// transaction is in the Accepted state (RFC 6026 §8.4).
    Response {
        /// The client transaction.
        tx: TxKey,
        /// The response.
        response: Response,
    },
    /// A CANCEL matched an INVITE server transaction with no final response;
    /// the layer already answered the CANCEL with 200 (§9.2). The TU should
    /// answer the INVITE with 487.
    Cancelled {
        /// The INVITE server transaction.
        invite: TxKey,
        /// The CANCEL request.
        request: Request,
    },
    /// A message that belongs to no transaction and that the TU must see: an
    /// ACK for a 2xx (§17.2.3, RFC 6026 §8.7), and a 2xx to INVITE after the
    /// client transaction has ended (§13.2.2.4).
    Stray {
        /// The message.
        message: Message,
        /// Where it came from.
        from: Peer,
    },
    /// Timer B, F or H expired without the expected message (§17.1.1.2,
    /// §17.1.2.2, §17.2.1): the TU treats a client timeout as 408 (§8.1.3.1).
    /// Also Timer L with the 2xx never acknowledged: the UAS ends the dialog
    /// (§13.3.1.4).
    Timeout {
        /// The transaction.
        tx: TxKey,
    },
    /// The driver reported that the transaction's peer cannot be reached
    /// (§17.1.4, §17.2.4).
    TransportError {
        /// The transaction.
        tx: TxKey,
    },
    /// The transaction has ended and its key is no longer valid.
    Terminated {
        /// The transaction.
        tx: TxKey,
    },
}

/// The role of a transaction (§17).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxKind {
    /// INVITE client transaction (§17.1.1).
    InviteClient,
    /// Non-INVITE client transaction (§17.1.2).
    NonInviteClient,
    /// INVITE server transaction (§17.2.1).
    InviteServer,
    /// Non-INVITE server transaction (§17.2.2).
    NonInviteServer,
}

impl TxKind {
    /// Whether this is a client transaction.
    pub fn is_client(self) -> bool {
        matches!(self, TxKind::InviteClient | TxKind::NonInviteClient)
    }
}

/// The states of Figures 5–8 of RFC 3261 with RFC 6026's Accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxState {
    /// INVITE client before any response (§17.1.1.2).
    Calling,
    /// Non-INVITE client or server before any response (§17.1.2.2, §17.2.2).
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A final response (300–699 for INVITE) was received or sent; waiting
    /// for retransmissions.
    Completed,
    /// INVITE server: the ACK arrived (§17.2.1).
    Confirmed,
    /// INVITE: a 2xx was received or sent (RFC 6026 §7.1, §7.2).
    Accepted,
    /// Ended.
    Terminated,
}

/// Misuse of the transaction API by the TU (errors of the network are
/// answered or counted, never returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// No transaction has this key (it may have terminated).
    #[error("no transaction {0}")]
    UnknownTransaction(TxKey),
    /// The request cannot start a transaction.
    #[error("cannot send this request: {0}")]
    InvalidRequest(&'static str),
    /// The response cannot be sent in this transaction.
    #[error("cannot send this response: {0}")]
    InvalidResponse(&'static str),
    /// The operation does not apply to this kind of transaction.
    #[error("{op} does not apply to a {kind:?} transaction")]
    WrongKind {
        /// The operation.
        op: &'static str,
        /// The transaction's kind.
        kind: TxKind,
    },
    /// The operation is not allowed in the transaction's state.
    #[error("{op} is not allowed in state {state:?}")]
    InvalidState {
        /// The operation.
        op: &'static str,
        /// The transaction's state.
        state: TxState,
    },
    /// A client transaction with the same branch and method is live (§17.1.3).
    #[error("a transaction with this branch and method exists")]
    DuplicateBranch,
}

/// Counters over the life of a [`Transactions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Client transactions started (CANCELs included).
    pub client_started: u64,
    /// Server transactions created (CANCELs the layer answers included).
    pub server_started: u64,
    /// Requests and final responses retransmitted on Timers A, E, G and 2xx
    /// retransmissions.
    pub retransmitted: u64,
    /// Last responses resent because the request was retransmitted.
    pub responses_resent: u64,
    /// Retransmitted requests and responses absorbed.
    pub absorbed: u64,
    /// Responses matching no client transaction, dropped (§17.1.3).
    pub strays_dropped: u64,
    /// Messages whose Via, CSeq or Call-ID could not be read, dropped.
    pub malformed_dropped: u64,
    /// Timeout events.
    pub timeouts: u64,
    /// TransportError events.
    pub transport_errors: u64,
    /// CANCELs answered 481 (§9.2).
    pub cancels_unmatched: u64,
}

/// Server transaction key of §17.2.3: branch, sent-by and method (ACK is
/// matched to its INVITE).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: ByteString,
    host: String,
    port: u16,
    method: Method,
}

/// The fields §17.2.3 matches on for requests without the magic cookie (RFC 2543).
#[derive(Clone, Debug)]
struct Rfc2543Id {
    uri: Uri,
    to_tag: Option<String>,
    from_tag: Option<String>,
    method: Method,
    via: String,
}

/// How an Accepted INVITE server transaction recognises the ACK for its 2xx,
/// which has a branch of its own (§13.2.2.4): by dialog and CSeq number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AckKey {
    call_id: ByteString,
    seq: u32,
    from_tag: String,
}

#[derive(Debug)]
enum Index {
    Client(ByteString, Method),
    Server(ServerKey),
    Rfc2543(ByteString, u32),
}

#[derive(Debug)]
struct Tx {
    kind: TxKind,
    state: TxState,
    /// Where requests (client) or responses (server, §18.2.2) go.
    peer: Peer,
    /// The request that created the transaction.
    request: Request,
    /// Client: the request in wire form, printed once.
    request_bytes: Bytes,
    /// Server: the last response sent; client INVITE: the ACK for a failure.
    last: Option<Bytes>,
    /// Server: the To tag of the last response sent.
    last_to_tag: Option<String>,
    /// Current interval of Timer A, E, G or the 2xx retransmission.
    interval: Duration,
    timers: [Option<Instant>; Timer::COUNT],
    /// INVITE client: its CANCEL transaction (§9.1).
    cancel: Option<TxKey>,
    /// CANCEL client: not sent yet, waiting for a provisional (§9.1).
    deferred: bool,
    /// A CANCEL server transaction run by the layer; the TU never hears of it.
    internal: bool,
    /// INVITE server in Accepted: the ACK for the 2xx arrived.
    acked: bool,
    /// INVITE server: a response has been sent (cancels the 100 Trying rule).
    responded: bool,
    index: Index,
    ack_key: Option<AckKey>,
    rfc2543: Option<Rfc2543Id>,
}

impl Tx {
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// Queues shared by the state machines; kept apart from the transaction map so
/// both can be borrowed at once.
#[derive(Debug, Default)]
struct Output {
    timers: BTreeSet<(Instant, TxKey, Timer)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    stats: TxStats,
}

impl Output {
    fn arm(&mut self, key: TxKey, tx: &mut Tx, timer: Timer, at: Instant) {
        if let Some(old) = tx.timers[timer.index()].replace(at) {
            self.timers.remove(&(old, key, timer));
        }
        self.timers.insert((at, key, timer));
    }

    fn disarm(&mut self, key: TxKey, tx: &mut Tx, timer: Timer) {
        if let Some(old) = tx.timers[timer.index()].take() {
            self.timers.remove(&(old, key, timer));
        }
    }

    fn send(&mut self, peer: Peer, bytes: Bytes) {
        self.transmits.push_back(Transmit { peer, bytes });
    }

    fn event(&mut self, e: TxEvent) {
        self.events.push_back(e);
    }
}

/// The transaction layer of one endpoint (RFC 3261 §17, RFC 6026).
///
/// See the [module documentation](self) for the run loop.
#[derive(Debug)]
pub struct Transactions {
    config: TimerConfig,
    next_id: u64,
    /// Boxed: a transaction is a few hundred bytes, and thousands linger for
    /// Timer J/L/M (32 s on UDP); growing the map moved them all (a HashMap insert
    /// was 9 % of a busy engine's CPU), now it moves pointers.
    txs: HashMap<TxKey, Box<Tx>>,
    client_index: HashMap<(ByteString, Method), TxKey>,
    server_index: HashMap<ServerKey, TxKey>,
    rfc2543_index: HashMap<(ByteString, u32), Vec<TxKey>>,
    ack_index: HashMap<AckKey, TxKey>,
    out: Output,
}

fn tag_of(h: &crate::msg::Headers, name: HeaderName) -> Option<String> {
    let v = h.get(&name)?;
    crate::msg::NameAddr::parse(v)
        .ok()
        .and_then(|a| a.tag().map(str::to_owned))
}

impl Transactions {
    /// An empty transaction layer with the given timer values (T1 below 1 ms is
    /// raised to 1 ms, T2 below T1 to T1).
    pub fn new(config: TimerConfig) -> Self {
        Transactions {
            config: config.sanitized(),
            next_id: 1,
            txs: HashMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            rfc2543_index: HashMap::new(),
            ack_index: HashMap::new(),
            out: Output::default(),
        }
    }

    /// The timer values in use.
    pub fn config(&self) -> TimerConfig {
        self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> TxStats {
        self.out.stats
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The kind of a live transaction.
    pub fn kind(&self, tx: TxKey) -> Option<TxKind> {
        self.txs.get(&tx).map(|t| t.kind)
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxKey) -> Option<TxState> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// The request that created a live transaction (with the `received`/`rport`
    /// stamps for server transactions).
    pub fn request(&self, tx: TxKey) -> Option<&Request> {
        self.txs.get(&tx).map(|t| &t.request)
    }

    /// The peer a live transaction sends to (§18.2.2 for server transactions).
    pub fn peer(&self, tx: TxKey) -> Option<Peer> {
        self.txs.get(&tx).map(|t| t.peer)
    }

    /// When a timer of a live transaction is due, if armed (for tests and logs).
    pub fn timer(&self, tx: TxKey, timer: Timer) -> Option<Instant> {
        self.txs.get(&tx).and_then(|t| t.timers[timer.index()])
    }

    fn new_key(&mut self) -> TxKey {
        let k = TxKey(self.next_id);
        self.next_id += 1;
        k
    }

    fn new_tx(kind: TxKind, peer: Peer, request: Request, index: Index) -> Tx {
        Tx {
            kind,
            state: match kind {
                TxKind::InviteClient => TxState::Calling,
                TxKind::InviteServer => TxState::Proceeding,
                _ => TxState::Trying,
            },
            peer,
            request,
            request_bytes: Bytes::new(),
            last: None,
            last_to_tag: None,
            interval: Duration::ZERO,
            timers: [None; Timer::COUNT],
            cancel: None,
            deferred: false,
            internal: false,
            acked: false,
            responded: false,
            index,
            ack_key: None,
            rfc2543: None,
        }
    }

    // ------------------------------------------------------------------
    // Client side

    /// Starts a client transaction: INVITE (§17.1.1) or non-INVITE (§17.1.2),
    /// and queues the request for `peer`. The top Via must carry a branch with
    /// the magic cookie (see [`new_branch`]); the caller sets Via sent-by and
    /// transport for `peer.transport`. ACK is not a transaction: see
    /// [`Transactions::send_ack`].
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        peer: Peer,
    ) -> Result<TxKey, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::InvalidRequest(
                "ACK starts no transaction (§17.1.1.3); use send_ack",
            ));
        }
        let via = request
            .headers
            .top_via()
            .map_err(|_| TxError::InvalidRequest("missing or malformed top Via"))?;
        let branch = via
            .branch_bytes()
            .filter(|b| b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len())
            .ok_or(TxError::InvalidRequest(
                "top Via branch must start with z9hG4bK (§8.1.1.7)",
            ))?;
        let cseq = request
            .headers
            .cseq()
            .map_err(|_| TxError::InvalidRequest("missing or malformed CSeq"))?;
        if cseq.method != request.method {
            return Err(TxError::InvalidRequest(
                "CSeq method differs from the request method (§8.1.1.5)",
            ));
        }
        let ikey = (branch.clone(), request.method.clone());
        if self.client_index.contains_key(&ikey) {
            return Err(TxError::DuplicateBranch);
        }
        let key = self.new_key();
        let kind = if request.method == Method::Invite {
            TxKind::InviteClient
        } else {
            TxKind::NonInviteClient
        };
        let mut tx = Self::new_tx(kind, peer, request, Index::Client(branch, ikey.1.clone()));
        tx.request_bytes = tx.request.to_bytes();
        self.client_index.insert(ikey, key);
        self.txs.insert(key, Box::new(tx));
        self.out.stats.client_started += 1;
        self.start_client(now, key);
        Ok(key)
    }

    /// Sends the request of a client transaction and arms its first timers.
    fn start_client(&mut self, now: Instant, key: TxKey) {
        let Some(tx) = self.txs.get_mut(&key) else {
            return;
        };
        tx.deferred = false;
        let reliable = tx.reliable();
        let (retransmit, timeout) = match tx.kind {
            TxKind::InviteClient => (Timer::A, Timer::B),
            _ => (Timer::E, Timer::F),
        };
        self.out.send(tx.peer, tx.request_bytes.clone());
        if let Some(d) = self.config.duration(retransmit, reliable) {
            tx.interval = d;
            self.out.arm(key, tx, retransmit, now + d);
        }
        if let Some(d) = self.config.duration(timeout, reliable) {
            self.out.arm(key, tx, timeout, now + d);
        }
    }

    /// Sends an ACK for a 2xx (§13.2.2.4), built by the dialog: it is end to
    /// end and no transaction. Send it again for each retransmitted 2xx.
    pub fn send_ack(&mut self, ack: &Request, peer: Peer) -> Result<(), TxError> {
        if ack.method != Method::Ack {
            return Err(TxError::InvalidRequest("send_ack sends ACK only"));
        }
        self.out.send(peer, ack.to_bytes());
        Ok(())
    }

    /// CANCEL for a pending INVITE client transaction (§9.1). The CANCEL is
    /// sent once a provisional response has arrived, at once if one has, and
    /// never if a final response comes first (its transaction then just
    /// terminates). Returns the key of the CANCEL's own non-INVITE client
    /// transaction; a second call returns the same key. Sending the CANCEL
    /// re-arms the INVITE's Timer B: with no final response 64·T1 later, the
    /// INVITE transaction times out (§9.1).
    pub fn cancel(&mut self, now: Instant, invite: TxKey) -> Result<TxKey, TxError> {
        let tx = self
            .txs
            .get(&invite)
            .ok_or(TxError::UnknownTransaction(invite))?;
        if tx.kind != TxKind::InviteClient {
            return Err(TxError::WrongKind {
                op: "cancel",
                kind: tx.kind,
            });
        }
        if let Some(c) = tx.cancel.filter(|c| self.txs.contains_key(c)) {
            return Ok(c);
        }
        if !matches!(tx.state, TxState::Calling | TxState::Proceeding) {
            return Err(TxError::InvalidState {
                op: "cancel",
                state: tx.state,
            });
        }
        let proceeding = tx.state == TxState::Proceeding;
        let peer = tx.peer;
        let Some(request) = wire::cancel_for(&tx.request) else {
            return Err(TxError::InvalidRequest(
                "INVITE lacks the headers a CANCEL copies",
            ));
        };
        let branch = match &tx.index {
            Index::Client(b, _) => b.clone(),
            _ => return Err(TxError::InvalidRequest("INVITE has no branch")),
        };
        let ikey = (branch.clone(), Method::Cancel);
        if self.client_index.contains_key(&ikey) {
            return Err(TxError::DuplicateBranch);
        }
        let key = self.new_key();
        let mut c = Self::new_tx(
            TxKind::NonInviteClient,
            peer,
            request,
            Index::Client(branch, Method::Cancel),
        );
        c.request_bytes = c.request.to_bytes();
        c.deferred = true;
        self.client_index.insert(ikey, key);
        self.txs.insert(key, Box::new(c));
        self.out.stats.client_started += 1;
        if let Some(tx) = self.txs.get_mut(&invite) {
            tx.cancel = Some(key);
        }
        if proceeding {
            self.send_cancel(now, invite, key);
        }
        Ok(key)
    }

    fn send_cancel(&mut self, now: Instant, invite: TxKey, cancel: TxKey) {
        self.start_client(now, cancel);
        if let Some(tx) = self.txs.get_mut(&invite) {
            let b = self.config.t1x64();
            self.out.arm(invite, tx, Timer::B, now + b);
        }
    }

    fn on_response(&mut self, now: Instant, response: Response, from: Peer) {
        let Ok(via) = response.headers.top_via() else {
            self.out.stats.malformed_dropped += 1;
            return;
        };
        let Ok(cseq) = response.headers.cseq() else {
            self.out.stats.malformed_dropped += 1;
            return;
        };
        let key = via
            .branch_bytes()
            .and_then(|b| self.client_index.get(&(b, cseq.method.clone())).copied());
        let Some(key) = key else {
            // §13.2.2.4: a 2xx to INVITE after the transaction ended (a retransmission
            // or another fork) still needs an ACK from the TU.
            if cseq.method == Method::Invite && response.status.is_success() {
                self.out.event(TxEvent::Stray {
                    message: Message::Response(response),
                    from,
                });
            } else {
                self.out.stats.strays_dropped += 1;
            }
            return;
        };
        let Some(tx) = self.txs.get_mut(&key) else {
            return;
        };
        let status = response.status;
        match (tx.kind, tx.state) {
            (TxKind::InviteClient, TxState::Calling | TxState::Proceeding) => {
                self.out.disarm(key, tx, Timer::A);
                let cancel = tx.cancel.filter(|_| tx.state == TxState::Calling);
                if status.is_provisional() {
                    // Figure 5: no timeout in Proceeding; the TU decides (or the CANCEL's B).
                    if tx.state == TxState::Calling {
                        self.out.disarm(key, tx, Timer::B);
                    }
                    tx.state = TxState::Proceeding;
                    self.out.event(TxEvent::Response { tx: key, response });
                    if let Some(c) = cancel
                        && self.txs.get(&c).is_some_and(|c| c.deferred)
                    {
                        self.send_cancel(now, key, c);
                    }
                    return;
                }
                self.out.disarm(key, tx, Timer::B);
                let pending = tx.cancel;
                if status.is_success() {
                    tx.state = TxState::Accepted;
                    let m = self.config.t1x64();
                    self.out.arm(key, tx, Timer::M, now + m);
                    self.out.event(TxEvent::Response { tx: key, response });
                } else {
                    // §17.1.1.3: the transaction ACKs a failure itself.
                    let ack = wire::ack_for_failure(&tx.request, &response).map(|a| a.to_bytes());
                    if let Some(ack) = &ack {
                        self.out.send(tx.peer, ack.clone());
                    }
                    tx.last = ack;
                    tx.state = TxState::Completed;
                    let d = self.config.duration(Timer::D, tx.reliable());
                    if let Some(d) = d {
                        self.out.arm(key, tx, Timer::D, now + d);
                    }
                    self.out.event(TxEvent::Response { tx: key, response });
                    if d.is_none() {
                        self.terminate(key);
                    }
                }
                // A CANCEL still waiting for a provisional is never sent (§9.1).
                if let Some(c) = pending
                    && self.txs.get(&c).is_some_and(|c| c.deferred)
                {
                    self.terminate(c);
                }
            }
            (TxKind::InviteClient, TxState::Accepted) => {
                if status.is_success() {
                    self.out.event(TxEvent::Response { tx: key, response });
                } else {
                    self.out.stats.absorbed += 1;
                }
            }
            (TxKind::InviteClient, TxState::Completed) => {
                self.out.stats.absorbed += 1;
                if status.is_final()
                    && !status.is_success()
                    && let Some(ack) = tx.last.clone()
                {
                    self.out.send(tx.peer, ack);
                }
            }
            (TxKind::NonInviteClient, TxState::Trying | TxState::Proceeding) => {
                if status.is_provisional() {
                    tx.state = TxState::Proceeding;
                    self.out.event(TxEvent::Response { tx: key, response });
                    return;
                }
                self.out.disarm(key, tx, Timer::E);
                self.out.disarm(key, tx, Timer::F);
                tx.state = TxState::Completed;
                let k = self.config.duration(Timer::K, tx.reliable());
                if let Some(k) = k {
                    self.out.arm(key, tx, Timer::K, now + k);
                }
                self.out.event(TxEvent::Response { tx: key, response });
                if k.is_none() {
                    self.terminate(key);
                }
            }
            _ => self.out.stats.absorbed += 1,
        }
    }

    // ------------------------------------------------------------------
    // Server side

    fn find_server(&self, key: &ServerKey) -> Option<TxKey> {
        self.server_index.get(key).copied()
    }

    /// §17.2.3 for requests without the magic cookie (RFC 2543).
    fn find_rfc2543(&self, req: &Request, via: &Via, target: Method) -> Option<TxKey> {
        let call_id = req.headers.call_id().ok()?;
        let cseq = req.headers.cseq().ok()?;
        let from_tag = tag_of(&req.headers, HeaderName::From);
        let to_tag = tag_of(&req.headers, HeaderName::To);
        let via_text = via_identity(via);
        let list = self.rfc2543_index.get(&(call_id, cseq.seq))?;
        list.iter().copied().find(|k| {
            let Some(tx) = self.txs.get(k) else {
                return false;
            };
            let Some(id) = &tx.rfc2543 else {
                return false;
            };
            if id.method != target || id.from_tag != from_tag || id.via != via_text {
                return false;
            }
            if !id.uri.equivalent(&req.uri) {
                return false;
            }
            match req.method {
                // The ACK's To tag is the one of the response it acknowledges.
                Method::Ack => to_tag.is_none() || to_tag == tx.last_to_tag || to_tag == id.to_tag,
                Method::Cancel => true,
                _ => to_tag == id.to_tag,
            }
        })
    }

    fn match_server(&self, req: &Request, via: &Via, target: Method) -> Option<TxKey> {
        match via.branch_bytes().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(branch) => self.find_server(&ServerKey {
                branch,
                host: via.host.to_string().to_ascii_lowercase(),
                port: via.port_or_default(),
                method: target,
            }),
            None => self.find_rfc2543(req, via, target),
        }
    }

    fn on_request(&mut self, now: Instant, mut request: Request, from: Peer) {
        let Some(via) = wire::stamp_via(&mut request, from) else {
            self.out.stats.malformed_dropped += 1;
            return;
        };
        if request.headers.cseq().is_err() || request.headers.call_id().is_err() {
            self.out.stats.malformed_dropped += 1;
            return;
        }
        match request.method {
            Method::Ack => self.on_ack(now, request, &via, from),
            Method::Cancel => self.on_cancel(now, request, &via, from),
            _ => {
                let method = request.method.clone();
                match self.match_server(&request, &via, method) {
                    Some(key) => self.on_retransmitted_request(key),
                    None => {
                        let tx = self.new_server(now, request.clone(), &via, from);
                        self.out.event(TxEvent::Request { tx, request, from });
                    }
                }
            }
        }
    }

    fn on_retransmitted_request(&mut self, key: TxKey) {
        let Some(tx) = self.txs.get_mut(&key) else {
            return;
        };
        match (tx.kind, tx.state) {
            (TxKind::InviteServer, TxState::Proceeding) if tx.last.is_none() => {
                // The client is retransmitting and the TU has not answered yet:
                // send 100 Trying now rather than at the 200 ms mark (§17.2.1).
                self.out.disarm(key, tx, Timer::Trying);
                let trying = wire::layer_response(&tx.request, StatusCode::TRYING, "");
                let bytes = trying.to_bytes();
                self.out.send(tx.peer, bytes.clone());
                tx.last = Some(bytes);
                tx.responded = true;
                self.out.stats.responses_resent += 1;
            }
            (TxKind::InviteServer, TxState::Proceeding | TxState::Completed)
            | (TxKind::NonInviteServer, TxState::Proceeding | TxState::Completed) => {
                if let Some(b) = tx.last.clone() {
                    self.out.send(tx.peer, b);
                    self.out.stats.responses_resent += 1;
                }
            }
            // Trying (non-INVITE, nothing to resend), Accepted (RFC 6026 §8.7:
            // absorbed; the 2xx is retransmitted on its own timer), Confirmed.
            _ => self.out.stats.absorbed += 1,
        }
    }

    fn new_server(&mut self, now: Instant, request: Request, via: &Via, from: Peer) -> TxKey {
        let key = self.new_key();
        let kind = if request.method == Method::Invite {
            TxKind::InviteServer
        } else {
            TxKind::NonInviteServer
        };
        let peer = wire::response_destination(via, from);
        let (index, rfc2543) = match via.branch_bytes().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(branch) => {
                let sk = ServerKey {
                    branch,
                    host: via.host.to_string().to_ascii_lowercase(),
                    port: via.port_or_default(),
                    method: request.method.clone(),
                };
                self.server_index.insert(sk.clone(), key);
                (Index::Server(sk), None)
            }
            None => {
                // Checked by on_request.
                let call_id = request.headers.call_id().unwrap_or_default();
                let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
                self.rfc2543_index
                    .entry((call_id.clone(), seq))
                    .or_default()
                    .push(key);
                let id = Rfc2543Id {
                    uri: request.uri.clone(),
                    to_tag: tag_of(&request.headers, HeaderName::To),
                    from_tag: tag_of(&request.headers, HeaderName::From),
                    method: request.method.clone(),
                    via: via_identity(via),
                };
                (Index::Rfc2543(call_id, seq), Some(id))
            }
        };
        let mut tx = Self::new_tx(kind, peer, request, index);
        tx.rfc2543 = rfc2543;
        if kind == TxKind::InviteServer
            && let Some(d) = self.config.duration(Timer::Trying, tx.reliable())
        {
            self.out.arm(key, &mut tx, Timer::Trying, now + d);
        }
        self.out.stats.server_started += 1;
        self.txs.insert(key, Box::new(tx));
        key
    }

    fn on_ack(&mut self, now: Instant, request: Request, via: &Via, from: Peer) {
        if let Some(key) = self.match_server(&request, via, Method::Invite) {
            let Some(tx) = self.txs.get_mut(&key) else {
                return;
            };
            match tx.state {
                TxState::Completed => {
                    // §17.2.1: ACK for the failure response.
                    self.out.disarm(key, tx, Timer::G);
                    self.out.disarm(key, tx, Timer::H);
                    tx.state = TxState::Confirmed;
                    match self.config.duration(Timer::I, tx.reliable()) {
                        Some(i) => self.out.arm(key, tx, Timer::I, now + i),
                        None => self.terminate(key),
                    }
                    return;
                }
                TxState::Confirmed => {
                    self.out.stats.absorbed += 1;
                    return;
                }
                TxState::Accepted => {
                    // RFC 6026 §8.7: an ACK matching the transaction in Accepted
                    // goes to the TU (an RFC 2543 peer acknowledging the 2xx).
                    tx.acked = true;
                    self.out.disarm(key, tx, Timer::Retransmit2xx);
                }
                _ => {}
            }
        } else if let Some(key) = self.match_2xx_ack(&request)
            && let Some(tx) = self.txs.get_mut(&key)
        {
            tx.acked = true;
            self.out.disarm(key, tx, Timer::Retransmit2xx);
        }
        self.out.event(TxEvent::Stray {
            message: Message::Request(request),
            from,
        });
    }

    fn match_2xx_ack(&self, ack: &Request) -> Option<TxKey> {
        let k = AckKey {
            call_id: ack.headers.call_id().ok()?,
            seq: ack.headers.cseq().ok()?.seq,
            from_tag: tag_of(&ack.headers, HeaderName::From)?,
        };
        let key = *self.ack_index.get(&k)?;
        let tx = self.txs.get(&key)?;
        (tag_of(&ack.headers, HeaderName::To) == tx.last_to_tag).then_some(key)
    }

    fn on_cancel(&mut self, now: Instant, request: Request, via: &Via, from: Peer) {
        if let Some(key) = self.match_server(&request, via, Method::Cancel) {
            self.on_retransmitted_request(key);
            return;
        }
        let target = self.match_server(&request, via, Method::Invite);
        let key = self.new_server(now, request.clone(), via, from);
        let branch = via.branch().unwrap_or_default().to_owned();
        let (status, tag, notify) = match target.and_then(|t| self.txs.get(&t).map(|tx| (t, tx))) {
            Some((t, tx)) => {
                let tag = tx
                    .last_to_tag
                    .clone()
                    .unwrap_or_else(|| wire::derived_tag(&branch));
                // §9.2: a CANCEL after the final response has no effect but is still answered 200.
                let pending = tx.state == TxState::Proceeding;
                (StatusCode::OK, tag, pending.then_some(t))
            }
            None => {
                self.out.stats.cancels_unmatched += 1;
                (
                    StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
                    wire::derived_tag(&branch),
                    None,
                )
            }
        };
        if let Some(tx) = self.txs.get_mut(&key) {
            tx.internal = true;
        }
        let response = wire::layer_response(&request, status, &tag);
        let _ = self.respond(now, key, response);
        if let Some(invite) = notify {
            self.out.event(TxEvent::Cancelled { invite, request });
        }
    }

    /// Sends a response in a server transaction. Provisional responses keep
    /// the transaction Proceeding; a final one completes it (a 2xx to INVITE
    /// moves it to Accepted, RFC 6026 §8.5, where further 2xx may be sent and
    /// the layer retransmits the last 2xx until the ACK, §13.3.1.4). The
    /// destination follows §18.2.2: for a reliable transport the connection
    /// the request came on, else Via maddr, `received`/`rport` or sent-by.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: TxKey,
        response: Response,
    ) -> Result<(), TxError> {
        let t = self.txs.get(&tx).ok_or(TxError::UnknownTransaction(tx))?;
        if t.kind.is_client() {
            return Err(TxError::WrongKind {
                op: "send_response",
                kind: t.kind,
            });
        }
        if t.internal {
            return Err(TxError::UnknownTransaction(tx));
        }
        self.respond(now, tx, response)
    }

    fn respond(&mut self, now: Instant, key: TxKey, response: Response) -> Result<(), TxError> {
        let Some(tx) = self.txs.get_mut(&key) else {
            return Err(TxError::UnknownTransaction(key));
        };
        let status = response.status;
        let state = tx.state;
        let allowed = match (tx.kind, state) {
            (TxKind::NonInviteServer, TxState::Trying | TxState::Proceeding) => true,
            (TxKind::InviteServer, TxState::Proceeding) => true,
            // RFC 6026 §8.5: more 2xx (retransmissions by the TU) in Accepted.
            (TxKind::InviteServer, TxState::Accepted) => status.is_success(),
            _ => false,
        };
        if !allowed {
            return Err(TxError::InvalidState {
                op: "send_response",
                state,
            });
        }
        if tx.kind == TxKind::NonInviteServer
            && status.is_provisional()
            && tx.request.method == Method::Ack
        {
            return Err(TxError::InvalidResponse("ACK is never answered"));
        }
        let to_tag = tag_of(&response.headers, HeaderName::To);
        let bytes = response.to_bytes();
        self.out.send(tx.peer, bytes.clone());
        tx.last = Some(bytes);
        if to_tag.is_some() {
            tx.last_to_tag = to_tag;
        }
        tx.responded = true;
        self.out.disarm(key, tx, Timer::Trying);
        let reliable = tx.reliable();
        match tx.kind {
            TxKind::NonInviteServer => {
                if status.is_provisional() {
                    tx.state = TxState::Proceeding;
                } else {
                    tx.state = TxState::Completed;
                    match self.config.duration(Timer::J, reliable) {
                        Some(j) => self.out.arm(key, tx, Timer::J, now + j),
                        None => self.terminate(key),
                    }
                }
            }
            TxKind::InviteServer => {
                if status.is_provisional() {
                    return Ok(());
                }
                if status.is_success() {
                    let first = tx.state != TxState::Accepted;
                    tx.state = TxState::Accepted;
                    if first {
                        let l = self.config.t1x64();
                        self.out.arm(key, tx, Timer::L, now + l);
                        if let Some(ack_key) = self.ack_key_for(key) {
                            self.ack_index.insert(ack_key.clone(), key);
                            if let Some(tx) = self.txs.get_mut(&key) {
                                tx.ack_key = Some(ack_key);
                            }
                        }
                    }
                    let Some(tx) = self.txs.get_mut(&key) else {
                        return Ok(());
                    };
                    if !tx.acked {
                        let t1 = self.config.t1;
                        tx.interval = t1;
                        self.out.arm(key, tx, Timer::Retransmit2xx, now + t1);
                    }
                } else {
                    tx.state = TxState::Completed;
                    if let Some(g) = self.config.duration(Timer::G, reliable) {
                        tx.interval = g;
                        self.out.arm(key, tx, Timer::G, now + g);
                    }
                    let h = self.config.t1x64();
                    self.out.arm(key, tx, Timer::H, now + h);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn ack_key_for(&self, key: TxKey) -> Option<AckKey> {
        let tx = self.txs.get(&key)?;
        Some(AckKey {
            call_id: tx.request.headers.call_id().ok()?,
            seq: tx.request.headers.cseq().ok()?.seq,
            from_tag: tag_of(&tx.request.headers, HeaderName::From)?,
        })
    }

    // ------------------------------------------------------------------
    // Inputs

    /// Feeds one parsed message that arrived from `from`. Malformed messages
    /// should not get here (the driver answers them 400); what this layer
    /// cannot read anyway is dropped and counted.
    pub fn handle_message(&mut self, now: Instant, message: Message, from: Peer) {
        match message {
            Message::Request(r) => self.on_request(now, r, from),
            Message::Response(r) => self.on_response(now, r, from),
        }
    }

    /// The driver could not send to, or lost the connection to, `peer`: every
    /// transaction sending there reports a TransportError and terminates
    /// (§17.1.4, §17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant, peer: Peer) {
        let mut hit: Vec<TxKey> = self
            .txs
            .iter()
            .filter(|(_, t)| t.peer == peer && !t.deferred)
            .map(|(k, _)| *k)
            .collect();
        hit.sort();
        for key in hit {
            let Some(tx) = self.txs.get(&key) else {
                continue;
            };
            if !tx.internal {
                self.out.stats.transport_errors += 1;
                self.out.event(TxEvent::TransportError { tx: key });
            }
            self.terminate(key);
        }
    }

    /// Handles every timer due at or before `now` (call at the instant
    /// [`Transactions::poll_timeout`] returned, or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, key, timer)) = self.out.timers.first() {
            if at > now {
                break;
            }
            self.out.timers.pop_first();
            if let Some(tx) = self.txs.get_mut(&key) {
                tx.timers[timer.index()] = None;
                self.on_timer(now, key, timer);
            }
        }
    }

    fn on_timer(&mut self, now: Instant, key: TxKey, timer: Timer) {
        let t2 = self.config.t2;
        let Some(tx) = self.txs.get_mut(&key) else {
            return;
        };
        match timer {
            Timer::A => {
                // §17.1.1.2: INVITE retransmissions double without cap.
                self.out.send(tx.peer, tx.request_bytes.clone());
                self.out.stats.retransmitted += 1;
                tx.interval = tx.interval.saturating_mul(2);
                self.out.arm(key, tx, Timer::A, now + tx.interval);
            }
            Timer::E => {
                // §17.1.2.2: doubling up to T2 in Trying, T2 in Proceeding.
                self.out.send(tx.peer, tx.request_bytes.clone());
                self.out.stats.retransmitted += 1;
                tx.interval = if tx.state == TxState::Proceeding {
                    t2
                } else {
                    tx.interval.saturating_mul(2).min(t2)
                };
                self.out.arm(key, tx, Timer::E, now + tx.interval);
            }
            Timer::G | Timer::Retransmit2xx => {
                if let Some(b) = tx.last.clone() {
                    self.out.send(tx.peer, b);
                    self.out.stats.retransmitted += 1;
                }
                tx.interval = tx.interval.saturating_mul(2).min(t2);
                self.out.arm(key, tx, timer, now + tx.interval);
            }
            Timer::B | Timer::F | Timer::H => {
                self.out.stats.timeouts += 1;
                self.out.event(TxEvent::Timeout { tx: key });
                self.terminate(key);
            }
            Timer::L => {
                if !tx.acked {
                    // §13.3.1.4: the 2xx was never acknowledged.
                    self.out.stats.timeouts += 1;
                    self.out.event(TxEvent::Timeout { tx: key });
                }
                self.terminate(key);
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::M => self.terminate(key),
            Timer::Trying => {
                if tx.kind == TxKind::InviteServer
                    && tx.state == TxState::Proceeding
                    && !tx.responded
                {
                    let trying = wire::layer_response(&tx.request, StatusCode::TRYING, "");
                    let bytes = trying.to_bytes();
                    self.out.send(tx.peer, bytes.clone());
                    tx.last = Some(bytes);
                    tx.responded = true;
                }
            }
        }
    }

    /// Removes a transaction, its timers and index entries, and tells the TU.
    fn terminate(&mut self, key: TxKey) {
        let Some(mut tx) = self.txs.remove(&key) else {
            return;
        };
        tx.state = TxState::Terminated;
        for (i, at) in tx.timers.iter().enumerate() {
            if let Some(at) = at {
                let timer = Timer::ALL[i];
                self.out.timers.remove(&(*at, key, timer));
            }
        }
        match &tx.index {
            Index::Client(b, m) => {
                self.client_index.remove(&(b.clone(), m.clone()));
            }
            Index::Server(sk) => {
                self.server_index.remove(sk);
            }
            Index::Rfc2543(c, s) => {
                let k = (c.clone(), *s);
                if let Some(list) = self.rfc2543_index.get_mut(&k) {
                    list.retain(|x| *x != key);
                    if list.is_empty() {
                        self.rfc2543_index.remove(&k);
                    }
                }
            }
        }
        if let Some(ak) = &tx.ack_key
            && self.ack_index.get(ak) == Some(&key)
        {
            self.ack_index.remove(ak);
        }
        if !tx.internal {
            self.out.event(TxEvent::Terminated { tx: key });
        }
        // A CANCEL that never went out dies with its INVITE.
        if let Some(c) = tx.cancel
            && self.txs.get(&c).is_some_and(|c| c.deferred)
        {
            self.terminate(c);
        }
    }

    // ------------------------------------------------------------------
    // Outputs

    /// The next datagram or stream write to send; call until `None` after
    /// every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU; call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// When [`Transactions::handle_timeout`] must next be called, if any timer
    /// is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.timers.first().map(|e| e.0)
    }
}

/// The top Via as compared by the RFC 2543 rule of §17.2.3, normalised by
/// printing the parsed value (whitespace and case of the protocol name aside).
fn via_identity(via: &Via) -> String {
    via.to_string()
}
