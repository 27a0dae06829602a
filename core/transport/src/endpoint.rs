//! The endpoint driver: one tokio task that owns the [`Sockets`] and a
//! [`Transactions`], feeds it parsed messages, transport errors and time, and
//! carries out what it asks for.
//!
//! ```text
//!   TU (phone, engine, examples)
//!     │ EndpointHandle: send_request / send_response / cancel / send_ack
//!     ▼                                              ▲ Events: TxEvent
//!   endpoint task ── handle_message / handle_timeout / handle_transport_error ──▶ Transactions
//!     ▲        │                                         poll_transmit / poll_event / poll_timeout
//!     │ bytes  ▼ bytes
//!   Sockets (UDP sockets, TCP/TLS listeners and connections)
//! ```
//!
//! Messages from the network that do not parse or validate never reach the
//! transaction layer: requests are answered through
//! [`vaxel_sip::msg::bad_request_reply`] (400, or 505 for a wrong version),
//! everything is logged at debug level and counted in [`Stats`]
//! (ARCHITECTURE.md §3.5).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, trace};
use vaxel_sip::msg::{self, Host, Message, ParseError, Request, Response, SipUri, Uri, Via};
use vaxel_sip::transaction::{
    self, TimerConfig, Transactions, TxError, TxEvent, TxKey, new_branch,
};

use crate::resolve::{self, Destination, DnsResolver, ResolveError, Resolver, Target};
use crate::sockets::{Inbound, LocalAddr, SendError, Sockets, SocketsConfig, Stats, StatsSnapshot};
use crate::{Peer, TransportKind};

/// How to start an [`Endpoint`].
#[derive(Clone, Debug, Default)]
pub struct EndpointConfig {
    /// Sockets, listeners and connection behaviour.
    pub sockets: SocketsConfig,
    /// Transaction timers (T1, T2, T4).
    pub timers: TimerConfig,
}

/// What can go wrong when the TU asks the endpoint for something. Faults of
/// the network are never returned here: they become [`TxEvent`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The transaction layer refused the request (our misuse).
    #[error(transparent)]
    Transaction(#[from] TxError),
    /// The message could not be handed to a socket (no socket of that transport).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The destination could not be resolved (RFC 3263).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The endpoint task has stopped.
    #[error("the endpoint has stopped")]
    Stopped,
}

enum Command {
    SendRequest {
        request: Request,
        target: Target,
        reply: oneshot::Sender<Result<TxKey, EndpointError>>,
    },
    SendResponse {
        tx: TxKey,
        response: Response,
        reply: oneshot::Sender<Result<(), EndpointError>>,
    },
    Cancel {
        invite: TxKey,
        reply: oneshot::Sender<Result<TxKey, EndpointError>>,
    },
    SendAck {
        ack: Request,
        target: Target,
        reply: oneshot::Sender<Result<(), EndpointError>>,
    },
    KeepAlive {
        peer: Peer,
        reply: oneshot::Sender<Result<(), EndpointError>>,
    },
    IsConnected {
        peer: Peer,
        reply: oneshot::Sender<bool>,
    },
    Stop,
}

/// The events of an endpoint: every [`TxEvent`] of its transaction layer, in order.
pub type Events = mpsc::UnboundedReceiver<TxEvent>;

/// The transport and transaction layers of one SIP endpoint, driven by one
/// tokio task. Start it with [`Endpoint::start`]; talk to it through the
/// returned [`EndpointHandle`] and [`Events`].
pub struct Endpoint {
    sockets: Sockets,
    transactions: Transactions,
    events: mpsc::UnboundedSender<TxEvent>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sockets", &self.sockets)
            .finish()
    }
}

impl Endpoint {
    /// Binds the sockets and starts the endpoint task. Must be called inside a
    /// tokio runtime. The task stops when every handle is dropped or
    /// [`EndpointHandle::stop`] is called.
    pub async fn start(config: EndpointConfig) -> io::Result<(EndpointHandle, Events)> {
        let sockets = Sockets::bind(config.sockets.clone()).await?;
        let local = sockets.local_addrs().to_vec();
        let tls_client = config.sockets.tls_client.is_some();
        let stats = sockets.stats().clone();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let endpoint = Endpoint {
            sockets,
            transactions: Transactions::new(config.timers),
            events: events_tx,
            stats: stats.clone(),
        };
        let task = tokio::spawn(endpoint.run(cmd_rx));
        let handle = EndpointHandle {
            inner: Arc::new(HandleInner {
                commands: cmd_tx,
                local,
                tls_client,
                stats,
                resolver: std::sync::OnceLock::new(),
                task: std::sync::Mutex::new(Some(task)),
            }),
        };
        Ok((handle, events_rx))
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.flush();
            let deadline = self.transactions.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(cmd) => self.command(cmd),
                },
                inbound = self.sockets.recv() => self.inbound(inbound),
                () = sleep => self.transactions.handle_timeout(Instant::now()),
            }
        }
        debug!("endpoint stopped");
    }

    /// Carries out what the transaction layer asks for: sends every transmit,
    /// forwards every event.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.transactions.poll_transmit() {
                progressed = true;
                trace!(to = ?t.peer, len = t.bytes.len(), "send");
                if let Err(e) = self.sockets.send(t.peer, t.bytes) {
                    debug!(peer = ?t.peer, error = %e, "send failed");
                    self.stats.add_transport_error();
                    self.transactions
                        .handle_transport_error(Instant::now(), t.peer);
                }
            }
            while let Some(e) = self.transactions.poll_event() {
                progressed = true;
                // A TU that went away leaves nobody to tell; keep serving the
                // transactions to their end.
                let _ = self.events.send(e);
            }
            if !progressed {
                break;
            }
        }
        let s = self.transactions.stats();
        self.stats
            .set_retransmissions(s.retransmitted + s.responses_resent);
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::SendRequest {
                request,
                target,
                reply,
            } => {
                if let Some(name) = &target.server_name
                    && target.peer.transport == TransportKind::Tls
                {
                    self.sockets.set_server_name(target.peer.addr, name);
                }
                let r = self
                    .transactions
                    .send_request(now, request, target.peer)
                    .map_err(EndpointError::from);
                let _ = reply.send(r);
            }
            Command::SendResponse {
                tx,
                response,
                reply,
            } => {
                let r = self
                    .transactions
                    .send_response(now, tx, response)
                    .map_err(EndpointError::from);
                if let Err(Err(e)) = reply.send(r) {
                    // Sent with `respond`: nobody waits for the outcome.
                    debug!("cannot respond in {tx}: {e}");
                }
            }
            Command::Cancel { invite, reply } => {
                let r = self
                    .transactions
                    .cancel(now, invite)
                    .map_err(EndpointError::from);
                let _ = reply.send(r);
            }
            Command::SendAck { ack, target, reply } => {
                if let Some(name) = &target.server_name
                    && target.peer.transport == TransportKind::Tls
                {
                    self.sockets.set_server_name(target.peer.addr, name);
                }
                let r = self
                    .transactions
                    .send_ack(&ack, target.peer)
                    .map_err(EndpointError::from);
                let _ = reply.send(r);
            }
            Command::KeepAlive { peer, reply } => {
                let _ = reply.send(self.sockets.keep_alive(peer).map_err(EndpointError::from));
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.sockets.is_connected(&peer));
            }
            Command::Stop => {}
        }
    }

    fn inbound(&mut self, inbound: Inbound) {
        let now = Instant::now();
        match inbound {
            Inbound::Message { bytes, from, local } => {
                trace!(?from, %local, len = bytes.len(), "received");
                match parse_checked(bytes.clone()) {
                    // The transaction layer stamps `received`/`rport` (§18.2.1).
                    Ok(message) => self.transactions.handle_message(now, message, from),
                    Err(e) => self.malformed(&bytes, &e, from),
                }
            }
            Inbound::Closed { peer, reason } => {
                if reason.is_failure() {
                    debug!(?peer, ?reason, "connection lost");
                    self.stats.add_transport_error();
                    self.transactions.handle_transport_error(now, peer);
                }
            }
        }
    }

    /// A message that failed to parse or validate: counted, logged, and for a
    /// request answered statelessly when a reply can be routed (§8.2.6,
    /// RFC 4475 §3.1.2). Responses and ACKs are dropped (§17.1.1.3).
    fn malformed(&mut self, bytes: &[u8], err: &ParseError, from: Peer) {
        self.stats.add_malformed();
        debug!(?from, error = %err, "malformed message");
        let Some(reply) = msg::bad_request_reply(bytes, err) else {
            return;
        };
        let to = reply
            .headers
            .top_via()
            .map(|mut via| {
                transaction::stamp_received(&mut via, from);
                transaction::response_destination(&via, from)
            })
            .unwrap_or(from);
        match self.sockets.send(to, reply.to_bytes()) {
            Ok(()) => self.stats.add_bad_request_answered(),
            Err(e) => debug!(?to, error = %e, "could not answer a malformed request"),
        }
    }
}

/// Parses and validates one message (the parser itself checks that a
/// request's CSeq method is its method, §8.1.1.5).
fn parse_checked(bytes: Bytes) -> Result<Message, ParseError> {
    let m = msg::parse(bytes)?;
    m.validate()?;
    Ok(m)
}

struct HandleInner {
    commands: mpsc::UnboundedSender<Command>,
    local: Vec<LocalAddr>,
    tls_client: bool,
    stats: Arc<Stats>,
    resolver: std::sync::OnceLock<Result<Arc<dyn Resolver>, ResolveError>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The TU's side of an [`Endpoint`]: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct EndpointHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for EndpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("local", &self.inner.local)
            .finish()
    }
}

impl EndpointHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EndpointError>>) -> Command,
    ) -> Result<T, EndpointError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .map_err(|_| EndpointError::Stopped)?;
        rx.await.map_err(|_| EndpointError::Stopped)?
    }

    /// Starts a client transaction for `request` towards `target` (see
    /// [`EndpointHandle::resolve`]). The request's top Via must carry a fresh
    /// branch and the transport of `target` ([`EndpointHandle::via`] makes one).
    pub async fn send_request(
        &self,
        request: Request,
        target: Target,
    ) -> Result<TxKey, EndpointError> {
        self.ask(|reply| Command::SendRequest {
            request,
            target,
            reply,
        })
        .await
    }

    /// Sends a response in the server transaction `tx`.
    pub async fn send_response(&self, tx: TxKey, response: Response) -> Result<(), EndpointError> {
        self.ask(|reply| Command::SendResponse {
            tx,
            response,
            reply,
        })
        .await
    }

    /// Sends a response in the server transaction `tx` without waiting for the
    /// outcome, from any thread (a TU with nothing to do about a failure: it is
    /// logged at debug level). Commands keep their order, so a request sent after
    /// this goes out after the response.
    pub fn respond(&self, tx: TxKey, response: Response) {
        let (reply, _) = oneshot::channel();
        let _ = self.inner.commands.send(Command::SendResponse {
            tx,
            response,
            reply,
        });
    }

    /// Cancels the pending INVITE client transaction `invite` (§9.1); returns
    /// the CANCEL's own transaction.
    pub async fn cancel(&self, invite: TxKey) -> Result<TxKey, EndpointError> {
        self.ask(|reply| Command::Cancel { invite, reply }).await
    }

    /// Sends the ACK for a 2xx (§13.2.2.4), which is no transaction.
    pub async fn send_ack(&self, ack: Request, target: Target) -> Result<(), EndpointError> {
        self.ask(|reply| Command::SendAck { ack, target, reply })
            .await
    }

    /// Sends an RFC 5626 keep-alive to `peer`: CRLFCRLF on UDP (for the NAT
    /// binding of a registration), a ping on an open stream connection.
    pub async fn keep_alive(&self, peer: Peer) -> Result<(), EndpointError> {
        self.ask(|reply| Command::KeepAlive { peer, reply }).await
    }

    /// Whether a stream connection to `peer` is open now (no packet is sent). A phone
    /// checks its registration's flow with it (RFC 5626 §4.4: a closed flow means the
    /// registration must be made again); `false` for UDP and when the endpoint stopped.
    pub async fn is_connected(&self, peer: Peer) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::IsConnected { peer, reply: tx })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Stops the endpoint task and closes its sockets; waits until it has stopped.
    pub async fn stop(&self) {
        let _ = self.inner.commands.send(Command::Stop);
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The bound addresses, per transport.
    pub fn local_addrs(&self) -> &[LocalAddr] {
        &self.inner.local
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: TransportKind) -> Option<SocketAddr> {
        self.inner
            .local
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// The transports this endpoint can send over: UDP when a UDP socket is
    /// bound, TCP always (connections need no listener), TLS with a TLS
    /// listener or client configuration.
    pub fn transports(&self) -> Vec<TransportKind> {
        let has = |k| self.inner.local.iter().any(|l| l.transport == k);
        let mut t = Vec::new();
        if has(TransportKind::Udp) {
            t.push(TransportKind::Udp);
        }
        t.push(TransportKind::Tcp);
        if has(TransportKind::Tls) || self.inner.tls_client {
            t.push(TransportKind::Tls);
        }
        t
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// A top Via for a new request over `transport`: our address as sent-by,
    /// a fresh RFC 3261 branch, and `rport` (RFC 3581).
    pub fn via(&self, transport: TransportKind) -> Via {
        let addr = self.advertised(transport);
        let branch = new_branch(&mut rand::rng());
        Via::new(
            transport.to_transport(),
            host_of(addr.ip()),
            Some(addr.port()),
        )
        .with_branch(&branch)
        .with_rport()
    }

    /// A Contact URI reaching this endpoint over `transport`
    /// (`sip:user@addr:port;transport=...`).
    pub fn contact_uri(&self, user: &str, transport: TransportKind) -> SipUri {
        let addr = self.advertised(transport);
        let mut uri = SipUri::new(host_of(addr.ip())).with_port(addr.port());
        if !user.is_empty() {
            uri = uri.with_user(user);
        }
        if transport == TransportKind::Tls {
            // RFC 3261 §26.2.2 recommends sips: for TLS; plain sip: with
            // transport=tls keeps it reachable by peers that check the scheme strictly.
            uri.with_param("transport", Some("tls"))
        } else if transport != TransportKind::Udp {
            uri.with_param(
                "transport",
                Some(&transport.via_token().to_ascii_lowercase()),
            )
        } else {
            uri
        }
    }

    /// The address to advertise for `transport`: its bound address, or the UDP
    /// one for client-only stream transports (no listener).
    fn advertised(&self, transport: TransportKind) -> SocketAddr {
        let addr = self
            .local_addr(transport)
            .or_else(|| self.inner.local.first().map(|l| l.addr))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        SocketAddr::new(crate::sockets::advertised_ip(addr), addr.port())
    }

    /// Resolves a SIP or SIPS URI to the targets to try, in order (RFC 3263),
    /// over the transports this endpoint has, with the system's DNS.
    pub async fn resolve(&self, uri: &Uri) -> Result<Vec<Target>, EndpointError> {
        let resolver = self
            .inner
            .resolver
            .get_or_init(|| DnsResolver::from_system().map(|r| Arc::new(r) as Arc<dyn Resolver>))
            .clone()?;
        self.resolve_with(resolver.as_ref(), uri).await
    }

    /// [`EndpointHandle::resolve`] with a given resolver.
    pub async fn resolve_with(
        &self,
        resolver: &dyn Resolver,
        uri: &Uri,
    ) -> Result<Vec<Target>, EndpointError> {
        let dest = destination(uri)?;
        Ok(resolve::resolve(resolver, &dest, &self.transports()).await?)
    }
}

fn host_of(ip: IpAddr) -> Host {
    match ip {
        IpAddr::V4(a) => Host::V4(a),
        IpAddr::V6(a) => Host::V6(a),
    }
}

/// What RFC 3263 needs from a SIP or SIPS URI (`maddr` overrides the host, §4).
pub fn destination(uri: &Uri) -> Result<Destination, ResolveError> {
    let Uri::Sip(sip) = uri else {
        return Err(ResolveError::NoTransport(uri.to_string()));
    };
    let host = match sip.maddr() {
        Some(m) => m.to_owned(),
        None => sip.host.to_string(),
    };
    let transport = match sip.transport() {
        Some(t) => Some(
            TransportKind::from_via_token(t)
                .ok_or_else(|| ResolveError::NoTransport(t.to_owned()))?,
        ),
        None => None,
    };
    Ok(Destination {
        host,
        port: sip.port,
        transport,
        secure: sip.secure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:s@127.0.0.1>;tag=1\r\n\
        To: <sip:a@127.0.0.1>\r\n\
        Call-ID: c-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn verdict(raw: &str) -> Option<u16> {
        let bytes = Bytes::from(raw.to_owned());
        match parse_checked(bytes.clone()) {
            Ok(_) => None,
            Err(e) => Some(msg::bad_request_reply(&bytes, &e).map_or(0, |r| r.status.as_u16())),
        }
    }

    #[test]
    fn malformed_requests_get_400() {
        assert_eq!(verdict(GOOD), None);
        // Content-Length beyond the datagram (§18.3).
        assert_eq!(
            verdict(&GOOD.replace("Content-Length: 0", "Content-Length: 500")),
            Some(400)
        );
        // Garbage in the start line.
        assert_eq!(
            verdict(&GOOD.replace(
                "OPTIONS sip:a@127.0.0.1 SIP/2.0",
                "OPTIONS sip:a@127.0.0.1 SIP/2.0 junk"
            )),
            Some(400)
        );
        // CSeq method differs from the request method.
        assert_eq!(
            verdict(&GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")),
            Some(400)
        );
        // Unbalanced quotes in a display name.
        assert_eq!(
            verdict(&GOOD.replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nContact: \"Bob <sip:b@127.0.0.1>\r\n"
            )),
            Some(400)
        );
        // Missing Call-ID: no response can be matched to the request (§8.1.1.4): dropped.
        assert_eq!(verdict(&GOOD.replace("Call-ID: c-1\r\n", "")), Some(0));
        // A wrong version: 505.
        assert_eq!(
            verdict(&GOOD.replace(
                "OPTIONS sip:a@127.0.0.1 SIP/2.0",
                "OPTIONS sip:a@127.0.0.1 SIP/3.0"
            )),
            Some(505)
        );
    }
}
