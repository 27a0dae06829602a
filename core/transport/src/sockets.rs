//! The sockets of one endpoint: UDP sockets, TCP and TLS listeners, and one
//! stream connection per far end, reused for requests and responses in both
//! directions (RFC 3261 §18, RFC 5923 §3's "one connection per peer" spirit).
//!
//! [`Sockets`] moves bytes only: it hands up every datagram and every message
//! framed off a stream (by [`StreamFramer`], RFC 3261 §18.3) as [`Bytes`],
//! unparsed, with the [`Peer`] it came from, and sends [`Bytes`] to a
//! [`Peer`], opening a connection when there is none. It answers RFC 5626
//! CRLFCRLF pings with a CRLF pong, pings its own outgoing connections on an
//! interval, and closes connections that stay idle.
//!
//! Each connection runs in its own task; the table of connections is owned by
//! whoever owns the `Sockets` (the endpoint task), and connection tasks talk
//! to it over one channel, so there are no shared locks (ARCHITECTURE.md §3.8).
//!
//! A server may serve UDP from threads of its own instead
//! ([`SocketsConfig::udp_threads`]): a receiving thread feeds the same channel, and
//! outgoing datagrams collect in a per-socket outbox (the one lock, held only to push
//! or take a batch) that goes to the sending thread when full or at [`flush_udp`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, trace, warn};
use vaxel_sip::msg::framing::{Frame, StreamFramer};

use crate::{Peer, TransportKind};

/// The RFC 5626 §3.5.1 keep-alive ping on streams, and the UDP keep-alive
/// some registrars accept in place of STUN.
pub const PING: &[u8] = b"\r\n\r\n";
/// The RFC 5626 §3.5.1 pong.
pub const PONG: &[u8] = b"\r\n";

/// What the sockets listen on and how connections behave.
#[derive(Clone)]
pub struct SocketsConfig {
    /// UDP addresses to bind (port 0 picks a free port).
    pub udp: Vec<SocketAddr>,
    /// TCP listening addresses.
    pub tcp: Vec<SocketAddr>,
    /// TLS listening addresses; needs [`SocketsConfig::tls_server`].
    pub tls: Vec<SocketAddr>,
    /// Server certificate and key for TLS listeners.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Roots and settings for outgoing TLS connections.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// A connection that carried no SIP message for this long is closed
    /// (keep-alives do not count).
    pub idle_timeout: Duration,
    /// Interval of CRLFCRLF pings on connections we opened (RFC 5626 §4.4.1);
    /// `None` sends none.
    pub keep_alive_interval: Option<Duration>,
    /// How long to wait for the pong before declaring the connection dead
    /// (RFC 5626 §4.4.1: 10 seconds).
    pub pong_timeout: Duration,
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Serve each UDP socket from two threads of its own — one blocked in
    /// `recvfrom`, one sending — instead of from the runtime's thread. The runtime's
    /// thread then only handles messages, and the system calls (on loopback the
    /// sender also pays for delivering the datagram to its receiver) run on another
    /// core: a busy server's throughput grows on a multi-core machine, at the cost of
    /// a thread wake-up per message while it is idle. Datagrams go to the sending
    /// thread in batches: the runtime's thread must call [`flush_udp`] before it
    /// parks (tokio: `Builder::on_thread_park`). For a server (the engine), not for
    /// a phone.
    pub udp_threads: bool,
}

impl std::fmt::Debug for SocketsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketsConfig")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("tls_server", &self.tls_server.is_some())
            .field("tls_client", &self.tls_client.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("udp_threads", &self.udp_threads)
            .finish()
    }
}

impl Default for SocketsConfig {
    fn default() -> Self {
        SocketsConfig {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tls_server: None,
            tls_client: None,
            idle_timeout: Duration::from_secs(300),
            // RFC 5626 §4.4.1 recommends 95–120 s on streams.
            keep_alive_interval: Some(Duration::from_secs(100)),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            udp_threads: false,
        }
    }
}

/// Counters of what crossed the sockets and what the endpoint made of it.
/// Shared with handles; read them with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    malformed: AtomicU64,
    bad_requests_answered: AtomicU64,
    retransmissions: AtomicU64,
    connections_opened: AtomicU64,
    connections_accepted: AtomicU64,
    connections_closed: AtomicU64,
    connect_failures: AtomicU64,
    pings_sent: AtomicU64,
    pongs_sent: AtomicU64,
    pongs_received: AtomicU64,
    transport_errors: AtomicU64,
    udp_dropped: AtomicU64,
}

/// A copy of the [`Stats`] counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// SIP messages received (datagrams and framed stream messages, parsed or not).
    pub messages_received: u64,
    /// SIP messages sent (retransmissions included).
    pub messages_sent: u64,
    /// Bytes received on all sockets.
    pub bytes_received: u64,
    /// Bytes sent on all sockets.
    pub bytes_sent: u64,
    /// Messages that did not parse, failed validation or broke stream framing.
    pub malformed: u64,
    /// Malformed requests that were answered (400, 505...).
    pub bad_requests_answered: u64,
    /// Messages the transaction layer sent again (Timer A/E/G, absorbed retransmissions).
    pub retransmissions: u64,
    /// Outgoing connections established.
    pub connections_opened: u64,
    /// Incoming connections accepted.
    pub connections_accepted: u64,
    /// Connections closed, for any reason.
    pub connections_closed: u64,
    /// Outgoing connections that could not be established.
    pub connect_failures: u64,
    /// Keep-alive pings sent (streams and UDP).
    pub pings_sent: u64,
    /// Pongs sent in answer to pings.
    pub pongs_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Transport errors reported to the transaction layer.
    pub transport_errors: u64,
    /// Datagrams dropped because too many waited for the owner (an overloaded
    /// server; see [`SocketsConfig::udp_threads`]).
    pub udp_dropped: u64,
}

macro_rules! counters {
    ($($name:ident),*) => {
        impl Stats {
            /// The current values.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed)),* }
            }
        }
    };
}
counters!(
    messages_received,
    messages_sent,
    bytes_received,
    bytes_sent,
    malformed,
    bad_requests_answered,
    retransmissions,
    connections_opened,
    connections_accepted,
    connections_closed,
    connect_failures,
    pings_sent,
    pongs_sent,
    pongs_received,
    transport_errors,
    udp_dropped
);

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn add_malformed(&self) {
        bump(&self.malformed);
    }
    pub(crate) fn add_bad_request_answered(&self) {
        bump(&self.bad_requests_answered);
    }
    pub(crate) fn set_retransmissions(&self, n: u64) {
        self.retransmissions.store(n, Ordering::Relaxed);
    }
    pub(crate) fn add_transport_error(&self) {
        bump(&self.transport_errors);
    }
    fn sent(&self, n: usize) {
        bump(&self.messages_sent);
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Why a message could not be handed to the network. Errors found later
/// (connection refused, reset) arrive as [`Inbound::Closed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No socket of this transport (and address family) is bound, or no TLS
    /// client configuration was given.
    #[error("no {0:?} socket for {1}")]
    NoSocket(TransportKind, SocketAddr),
    /// The transport is not implemented here (WS, WSS).
    #[error("transport {0:?} is not supported")]
    Unsupported(TransportKind),
    /// No connection to that peer, and none may be opened (keep-alive on a closed flow).
    #[error("no connection to {0:?}")]
    NotConnected(Peer),
    /// The socket refused the datagram.
    #[error("sending to {0}: {1}")]
    Io(SocketAddr, io::Error),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No SIP message for the idle timeout.
    Idle,
    /// The far end closed it.
    Eof,
    /// We were asked to close it, or are shutting down.
    Local,
    /// TCP connect or TLS handshake failed or timed out.
    ConnectFailed(String),
    /// A read or write failed (reset, broken pipe, TLS alert).
    Io(String),
    /// The byte stream could not be framed (missing or bad Content-Length, oversize).
    Framing(String),
    /// A ping went unanswered for the pong timeout (RFC 5626 §4.4.1).
    KeepAliveTimeout,
}

impl CloseReason {
    /// Whether requests in flight on the connection must be failed
    /// (RFC 3261 §17.1.4, §17.2.4): everything but an orderly idle or local close.
    pub fn is_failure(&self) -> bool {
        !matches!(self, CloseReason::Idle | CloseReason::Local)
    }
}

/// What the sockets hand up.
#[derive(Debug)]
pub enum Inbound {
    /// One datagram or one message framed off a stream, not yet parsed.
    Message {
        /// The message bytes (zero-copy slice of the receive buffer).
        bytes: Bytes,
        /// Where it came from.
        from: Peer,
        /// The local address it arrived on.
        local: SocketAddr,
    },
    /// A connection ended (or could not be opened).
    Closed {
        /// The far end of the connection.
        peer: Peer,
        /// Why.
        reason: CloseReason,
    },
}

enum Out {
    Data(Bytes),
    Ping,
}

enum Internal {
    Message {
        bytes: Bytes,
        from: Peer,
        local: SocketAddr,
    },
    Accepted {
        peer: Peer,
        id: u64,
        tx: mpsc::UnboundedSender<Out>,
    },
    Closed {
        peer: Peer,
        id: u64,
        reason: CloseReason,
    },
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

/// What connection tasks need to know, shared read-only.
struct ConnShared {
    config: SocketsConfig,
    stats: Arc<Stats>,
    internal: mpsc::UnboundedSender<Internal>,
    next_id: AtomicU64,
    /// Datagrams handed up and not yet taken by the owner (see [`UDP_QUEUE_MAX`]).
    udp_queued: std::sync::atomic::AtomicUsize,
}

/// At most this many received datagrams wait for the owner; more are dropped, as a
/// full socket buffer would drop them. Without the bound, a UDP receiving thread
/// ([`SocketsConfig::udp_threads`]) feeding an overloaded owner queues without
/// limit: every message then waits longer than its transaction's timers, and the
/// server stops completing anything instead of completing what it can.
const UDP_QUEUE_MAX: usize = 2048;

/// A bound local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    /// The transport.
    pub transport: TransportKind,
    /// The address (with the port the system picked for port 0).
    pub addr: SocketAddr,
}

/// Where datagrams from one local UDP address go out.
#[derive(Clone)]
enum UdpOut {
    /// Sent from the runtime's thread.
    Runtime(Arc<UdpSocket>),
    /// Collected in the socket's outbox for its sending thread
    /// ([`SocketsConfig::udp_threads`]).
    Thread(Arc<Outbox>),
}

/// Datagrams for one sending thread, handed over together: one wake-up of the
/// thread per batch rather than per datagram (waking a sleeping thread cost the
/// sender as much as the `sendto` itself).
type Batch = Vec<(Bytes, SocketAddr)>;

/// A batch is handed over when it has this many datagrams, or earlier by
/// [`flush_udp`].
const BATCH_MAX: usize = 32;

/// The datagrams waiting for one UDP sending thread.
struct Outbox {
    tx: std::sync::mpsc::Sender<Batch>,
    pending: std::sync::Mutex<Batch>,
}

impl Outbox {
    fn push(&self, bytes: Bytes, to: SocketAddr) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push((bytes, to));
        if pending.len() >= BATCH_MAX {
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            // The thread ends only with this channel; a lost batch is a lost datagram.
            let _ = self.tx.send(batch);
        }
    }

    fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }
}

/// Every live outbox, for [`flush_udp`].
static OUTBOXES: std::sync::Mutex<Vec<std::sync::Weak<Outbox>>> = std::sync::Mutex::new(Vec::new());

/// Hands every collected datagram to its UDP sending thread
/// ([`SocketsConfig::udp_threads`]). Call it whenever the thread that sends is about
/// to wait for something — for a tokio runtime, build it with
/// `on_thread_park(vaxel_transport::sockets::flush_udp)` — so that a busy server
/// sends in batches and an idle one adds no delay.
pub fn flush_udp() {
    let mut all = OUTBOXES.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|o| match o.upgrade() {
        Some(o) => {
            o.flush();
            true
        }
        None => false,
    });
}

/// The UDP sockets, listeners and connections of one endpoint.
pub struct Sockets {
    udp: Vec<(SocketAddr, UdpOut)>,
    local: Vec<LocalAddr>,
    conns: HashMap<Peer, Conn>,
    /// TLS server names to use when a connection to an address is opened.
    server_names: HashMap<SocketAddr, String>,
    shared: Arc<ConnShared>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    tasks: Vec<JoinHandle<()>>,
    /// Tells the UDP receiving threads to end (they look between datagrams and at
    /// least every [`THREAD_POLL`]).
    stop_threads: Arc<std::sync::atomic::AtomicBool>,
}

/// The receive buffer asked for a UDP socket served by threads (bytes).
const SERVER_RCVBUF: usize = 4 << 20;

/// How often a UDP receiving thread with nothing to read checks whether it is to end.
const THREAD_POLL: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("local", &self.local)
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The sending threads end when their channels close with `udp`.
        self.stop_threads.store(true, Ordering::Relaxed);
    }
}

impl Sockets {
    /// Binds every socket and listener of `config` and starts their tasks.
    /// Must be called inside a tokio runtime.
    pub async fn bind(config: SocketsConfig) -> io::Result<Sockets> {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(ConnShared {
            config: config.clone(),
            stats,
            internal,
            next_id: AtomicU64::new(1),
            udp_queued: std::sync::atomic::AtomicUsize::new(0),
        });
        let mut s = Sockets {
            udp: Vec::new(),
            local: Vec::new(),
            conns: HashMap::new(),
            server_names: HashMap::new(),
            shared,
            internal_rx,
            tasks: Vec::new(),
            stop_threads: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        for addr in &config.udp {
            if config.udp_threads {
                let (local, tx) = udp_threads(*addr, s.shared.clone(), s.stop_threads.clone())?;
                s.local.push(LocalAddr {
                    transport: TransportKind::Udp,
                    addr: local,
                });
                let outbox = Arc::new(Outbox {
                    tx,
                    pending: std::sync::Mutex::new(Vec::new()),
                });
                OUTBOXES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Arc::downgrade(&outbox));
                s.udp.push((local, UdpOut::Thread(outbox)));
                continue;
            }
            let sock = Arc::new(UdpSocket::bind(addr).await?);
            let local = sock.local_addr()?;
            s.local.push(LocalAddr {
                transport: TransportKind::Udp,
                addr: local,
            });
            s.udp.push((local, UdpOut::Runtime(sock.clone())));
            s.tasks
                .push(tokio::spawn(udp_receive(sock, local, s.shared.clone())));
        }
        if !config.tls.is_empty() && config.tls_server.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS listener without a server certificate",
            ));
        }
        for (kind, addrs) in [
            (TransportKind::Tcp, &config.tcp),
            (TransportKind::Tls, &config.tls),
        ] {
            for addr in addrs {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                s.local.push(LocalAddr {
                    transport: kind,
                    addr: local,
                });
                s.tasks
                    .push(tokio::spawn(accept_loop(listener, kind, s.shared.clone())));
            }
        }
        Ok(s)
    }

    /// The bound addresses, in the order of the configuration (UDP, TCP, TLS).
    pub fn local_addrs(&self) -> &[LocalAddr] {
        &self.local
    }

    /// The first bound address of a transport.
    pub fn local_addr(&self, transport: TransportKind) -> Option<SocketAddr> {
        self.local
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// The counters, shared.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// How many stream connections are open or being opened.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether a connection to `peer` is open or being opened.
    pub fn is_connected(&self, peer: &Peer) -> bool {
        self.conns.contains_key(peer)
    }

    /// Remembers the host name to check the certificate of a TLS server at
    /// `addr` against (RFC 5922), for connections opened later.
    pub fn set_server_name(&mut self, addr: SocketAddr, name: &str) {
        self.server_names.insert(addr, name.to_owned());
    }

    /// Sends `bytes` to `peer`: a datagram for UDP; for TCP and TLS on the
    /// connection to that peer, opening one if there is none (the bytes wait
    /// for the connect). Never waits; a failure after this returns arrives as
    /// [`Inbound::Closed`].
    pub fn send(&mut self, peer: Peer, bytes: Bytes) -> Result<(), SendError> {
        match peer.transport {
            TransportKind::Udp => {
                let n = bytes.len();
                self.udp_send(peer.addr, bytes)?;
                self.shared.stats.sent(n);
                Ok(())
            }
            TransportKind::Tcp | TransportKind::Tls => {
                let n = bytes.len();
                self.stream(peer)?
                    .send(Out::Data(bytes))
                    .map_err(|_| SendError::NotConnected(peer))?;
                self.shared.stats.sent(n);
                Ok(())
            }
            t => Err(SendError::Unsupported(t)),
        }
    }

    /// Sends an RFC 5626 keep-alive: a CRLFCRLF datagram on UDP (to keep a
    /// NAT binding of a registration open), a ping on an existing stream
    /// connection (whose pong is awaited for the pong timeout).
    pub fn keep_alive(&mut self, peer: Peer) -> Result<(), SendError> {
        match peer.transport {
            TransportKind::Udp => {
                self.udp_send(peer.addr, Bytes::from_static(PING))?;
                bump(&self.shared.stats.pings_sent);
                Ok(())
            }
            TransportKind::Tcp | TransportKind::Tls => {
                let conn = self.conns.get(&peer).ok_or(SendError::NotConnected(peer))?;
                conn.tx
                    .send(Out::Ping)
                    .map_err(|_| SendError::NotConnected(peer))
            }
            t => Err(SendError::Unsupported(t)),
        }
    }

    /// Closes the connection to `peer`, if any (no [`Inbound::Closed`] follows).
    pub fn close(&mut self, peer: &Peer) {
        // Dropping the sender ends the connection task.
        self.conns.remove(peer);
    }

    /// The next message or connection closure. Cancel safe (use it in `select!`).
    pub async fn recv(&mut self) -> Inbound {
        loop {
            let Some(m) = self.internal_rx.recv().await else {
                // `shared` holds a sender, so the channel never closes while we live.
                std::future::pending::<()>().await;
                unreachable!();
            };
            if let Some(inbound) = self.handle_internal(m) {
                return inbound;
            }
        }
    }

    /// Like [`Sockets::recv`] without waiting: `None` when nothing is queued.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        while let Ok(m) = self.internal_rx.try_recv() {
            if let Some(inbound) = self.handle_internal(m) {
                return Some(inbound);
            }
        }
        None
    }

    fn handle_internal(&mut self, m: Internal) -> Option<Inbound> {
        match m {
            Internal::Message { bytes, from, local } => {
                if from.transport == TransportKind::Udp {
                    self.shared.udp_queued.fetch_sub(1, Ordering::Relaxed);
                }
                Some(Inbound::Message { bytes, from, local })
            }
            Internal::Accepted { peer, id, tx } => {
                // A new connection from the same address and port replaces the old one.
                self.conns.insert(peer, Conn { id, tx });
                None
            }
            Internal::Closed { peer, id, reason } => {
                match self.conns.get(&peer) {
                    Some(c) if c.id == id => {
                        self.conns.remove(&peer);
                    }
                    // A connection we already forgot (closed by us, or replaced).
                    _ => return None,
                }
                Some(Inbound::Closed { peer, reason })
            }
        }
    }

    fn udp_send(&self, to: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        match self.udp_for(to)? {
            UdpOut::Runtime(sock) => udp_send(sock, bytes, to),
            UdpOut::Thread(outbox) => {
                outbox.push(bytes, to);
                Ok(())
            }
        }
    }

    fn udp_for(&self, to: SocketAddr) -> Result<UdpOut, SendError> {
        self.udp
            .iter()
            .find(|(a, _)| a.is_ipv4() == to.is_ipv4())
            .map(|(_, s)| s.clone())
            .ok_or(SendError::NoSocket(TransportKind::Udp, to))
    }

    fn stream(&mut self, peer: Peer) -> Result<&mpsc::UnboundedSender<Out>, SendError> {
        let alive = self.conns.get(&peer).is_some_and(|c| !c.tx.is_closed());
        if !alive {
            let tls = match peer.transport {
                TransportKind::Tls => {
                    let config = self
                        .shared
                        .config
                        .tls_client
                        .clone()
                        .ok_or(SendError::NoSocket(TransportKind::Tls, peer.addr))?;
                    let name = match self.server_names.get(&peer.addr) {
                        Some(n) => ServerName::try_from(n.clone())
                            .unwrap_or_else(|_| ServerName::IpAddress(peer.addr.ip().into())),
                        None => ServerName::IpAddress(peer.addr.ip().into()),
                    };
                    Some((config, name))
                }
                _ => None,
            };
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(connect(peer, id, tls, rx, self.shared.clone()));
            self.conns.insert(peer, Conn { id, tx });
        }
        Ok(&self.conns[&peer].tx)
    }
}

/// Sends a datagram without waiting: at once when the socket has room, else
/// from a task (tokio reports WouldBlock until it has seen the socket
/// writable once, and when the send buffer is full).
fn udp_send(sock: Arc<UdpSocket>, bytes: Bytes, to: SocketAddr) -> Result<(), SendError> {
    match sock.try_send_to(&bytes, to) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            tokio::spawn(async move {
                if let Err(e) = sock.send_to(&bytes, to).await {
                    debug!(%to, error = %e, "UDP send failed");
                }
            });
            Ok(())
        }
        Err(e) => Err(SendError::Io(to, e)),
    }
}

fn is_blank(b: &[u8]) -> bool {
    b.iter()
        .all(|c| matches!(c, b'\r' | b'\n' | b' ' | b'\t' | 0))
}

/// Binds `addr` as a blocking socket served by a receiving and a sending thread
/// ([`SocketsConfig::udp_threads`]); returns the bound address and the sending
/// thread's channel.
fn udp_threads(
    addr: SocketAddr,
    shared: Arc<ConnShared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<(SocketAddr, std::sync::mpsc::Sender<Batch>)> {
    let sock = std::net::UdpSocket::bind(addr)?;
    let local = sock.local_addr()?;
    sock.set_read_timeout(Some(THREAD_POLL))?;
    // A server's receive buffer: the receiving thread shares the cores with everything
    // else, and with the system's default (208 KB, ~8 ms of a busy engine's traffic) a
    // few milliseconds off the CPU dropped datagrams. The system caps it at
    // net.core.rmem_max; a refusal leaves the default.
    if let Err(e) = socket2::SockRef::from(&sock).set_recv_buffer_size(SERVER_RCVBUF) {
        debug!(%local, error = %e, "cannot enlarge the UDP receive buffer");
    }
    let rx_sock = sock.try_clone()?;
    std::thread::Builder::new()
        .name("vaxel-udp-rx".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                match rx_sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if !received(&shared, &buf[..n], from, local) {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => debug!(%local, error = %e, "UDP receive error"),
                }
            }
        })?;
    let (tx, rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::Builder::new()
        .name("vaxel-udp-tx".into())
        .spawn(move || {
            while let Ok(batch) = rx.recv() {
                for (bytes, to) in batch {
                    if let Err(e) = sock.send_to(&bytes, to) {
                        debug!(%to, error = %e, "UDP send failed");
                    }
                }
            }
        })?;
    Ok((local, tx))
}

/// A datagram from `from` on `local`: counted and handed to the owner (CRLF
/// keep-alives are only counted). `false` when the owner is gone.
fn received(shared: &ConnShared, datagram: &[u8], from: SocketAddr, local: SocketAddr) -> bool {
    shared
        .stats
        .bytes_received
        .fetch_add(datagram.len() as u64, Ordering::Relaxed);
    // CRLF keep-alives on UDP carry no message (RFC 5626 §3.5.1 is for streams;
    // registrars accept them on UDP too).
    if is_blank(datagram) {
        trace!(%from, "UDP keep-alive");
        return true;
    }
    bump(&shared.stats.messages_received);
    if shared.udp_queued.fetch_add(1, Ordering::Relaxed) >= UDP_QUEUE_MAX {
        shared.udp_queued.fetch_sub(1, Ordering::Relaxed);
        bump(&shared.stats.udp_dropped);
        return true;
    }
    let from = Peer {
        transport: TransportKind::Udp,
        addr: from,
    };
    shared
        .internal
        .send(Internal::Message {
            bytes: Bytes::copy_from_slice(datagram),
            from,
            local,
        })
        .is_ok()
}

async fn udp_receive(sock: Arc<UdpSocket>, local: SocketAddr, shared: Arc<ConnShared>) {
    // One receive buffer for the largest datagram, reused; each message is copied
    // out into an allocation of its own size. (Splitting a shared block per
    // datagram kept a whole 64 KiB block alive for as long as any message cut from
    // it lived — a stored request pinned 64 KiB — and allocated a fresh block for
    // nearly every datagram: a page-faulting 64 KiB malloc per message.)
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if !received(&shared, &buf[..n], from, local) {
                    return;
                }
            }
            Err(e) => {
                // ICMP errors surface here on some systems; the socket stays usable.
                debug!(%local, error = %e, "UDP receive error");
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, kind: TransportKind, shared: Arc<ConnShared>) {
    let acceptor = shared
        .config
        .tls_server
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off, keep listening.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = match tcp.local_addr() {
            Ok(a) => a,
            Err(_) => continue,
        };
        let peer = Peer {
            transport: kind,
            addr,
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::unbounded_channel();
            match (kind, acceptor) {
                (TransportKind::Tls, Some(acceptor)) => {
                    let handshake = timeout(shared.config.connect_timeout, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            accepted(&shared, peer, id, tx);
                            run_stream(tls, peer, local, id, false, rx, shared).await;
                        }
                        Ok(Err(e)) => debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%addr, "TLS handshake timed out"),
                    }
                }
                _ => {
                    accepted(&shared, peer, id, tx);
                    run_stream(tcp, peer, local, id, false, rx, shared).await;
                }
            }
        });
    }
}

fn accepted(shared: &ConnShared, peer: Peer, id: u64, tx: mpsc::UnboundedSender<Out>) {
    debug!(?peer, "connection accepted");
    bump(&shared.stats.connections_accepted);
    let _ = shared.internal.send(Internal::Accepted { peer, id, tx });
}

async fn connect(
    peer: Peer,
    id: u64,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<ConnShared>,
) {
    let fail = |reason: String| {
        debug!(?peer, %reason, "connect failed");
        bump(&shared.stats.connect_failures);
        let _ = shared.internal.send(Internal::Closed {
            peer,
            id,
            reason: CloseReason::ConnectFailed(reason),
        });
    };
    let limit = shared.config.connect_timeout;
    let tcp = match timeout(limit, TcpStream::connect(peer.addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(e.to_string()),
        Err(_) => return fail("timed out".into()),
    };
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else {
        return fail("no local address".into());
    };
    match tls {
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            match timeout(limit, connector.connect(name, tcp)).await {
                Ok(Ok(stream)) => {
                    bump(&shared.stats.connections_opened);
                    run_stream(stream, peer, local, id, true, rx, shared).await;
                }
                Ok(Err(e)) => fail(format!("TLS: {e}")),
                Err(_) => fail("TLS handshake timed out".into()),
            }
        }
        None => {
            bump(&shared.stats.connections_opened);
            run_stream(tcp, peer, local, id, true, rx, shared).await;
        }
    }
}

/// Runs one established connection until it ends, then reports the closure.
async fn run_stream<S>(
    stream: S,
    peer: Peer,
    local: SocketAddr,
    id: u64,
    outbound: bool,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<ConnShared>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let reason = serve_stream(stream, peer, local, outbound, &mut rx, &shared).await;
    // Data queued behind the closure would be lost silently: make the closure
    // a failure so the transactions waiting on it learn (§17.1.4).
    rx.close();
    let mut unsent = false;
    while let Ok(o) = rx.try_recv() {
        unsent |= matches!(o, Out::Data(_));
    }
    let reason = if unsent && !reason.is_failure() {
        CloseReason::Io("closed with messages unsent".into())
    } else {
        reason
    };
    debug!(?peer, ?reason, "connection closed");
    bump(&shared.stats.connections_closed);
    let _ = shared.internal.send(Internal::Closed { peer, id, reason });
}

async fn serve_stream<S>(
    stream: S,
    peer: Peer,
    local: SocketAddr,
    outbound: bool,
    rx: &mut mpsc::UnboundedReceiver<Out>,
    shared: &ConnShared,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let config = &shared.config;
    let stats = &shared.stats;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_message = Instant::now();
    let interval = if outbound {
        config.keep_alive_interval
    } else {
        None
    };
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut next_ping = interval.map_or(far, |i| Instant::now() + i);
    let mut pong_deadline: Option<Instant> = None;
    let io_err = |e: io::Error| CloseReason::Io(e.to_string());
    loop {
        let idle_at = last_message + config.idle_timeout;
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return CloseReason::Eof,
                    Ok(n) => n,
                    Err(e) => return io_err(e),
                };
                stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                framer.push(&buf[..n]);
                loop {
                    match framer.poll() {
                        Ok(Some(Frame::Message(bytes))) => {
                            last_message = Instant::now();
                            bump(&stats.messages_received);
                            let m = Internal::Message { bytes, from: peer, local };
                            if shared.internal.send(m).is_err() {
                                return CloseReason::Local;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {
                            trace!(?peer, "ping, sending pong");
                            if let Err(e) = wr.write_all(PONG).await {
                                return io_err(e);
                            }
                            bump(&stats.pongs_sent);
                        }
                        Ok(Some(Frame::Pong)) => {
                            trace!(?peer, "pong");
                            bump(&stats.pongs_received);
                            pong_deadline = None;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            debug!(?peer, error = %e, "stream framing error");
                            stats.add_malformed();
                            return CloseReason::Framing(e.to_string());
                        }
                    }
                }
            }
            out = rx.recv() => match out {
                Some(Out::Data(bytes)) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        return io_err(e);
                    }
                    last_message = Instant::now();
                }
                Some(Out::Ping) => {
                    if let Err(e) = wr.write_all(PING).await {
                        return io_err(e);
                    }
                    bump(&stats.pings_sent);
                    pong_deadline.get_or_insert(Instant::now() + config.pong_timeout);
                }
                None => {
                    let _ = wr.shutdown().await;
                    return CloseReason::Local;
                }
            },
            _ = sleep_until(idle_at) => {
                let _ = wr.shutdown().await;
                return CloseReason::Idle;
            }
            _ = sleep_until(next_ping), if interval.is_some() => {
                if let Err(e) = wr.write_all(PING).await {
                    return io_err(e);
                }
                bump(&stats.pings_sent);
                pong_deadline.get_or_insert(Instant::now() + config.pong_timeout);
                next_ping = Instant::now() + interval.unwrap_or_default();
            }
            _ = sleep_until(pong_deadline.unwrap_or(far)), if pong_deadline.is_some() => {
                return CloseReason::KeepAliveTimeout;
            }
        }
    }
}

/// The address to put in Via and Contact for a socket bound to `bound`: the
/// bound address itself, or loopback when bound to the unspecified address
/// (a host with several interfaces should bind the one it wants to advertise).
pub fn advertised_ip(bound: SocketAddr) -> IpAddr {
    if bound.ip().is_unspecified() {
        match bound {
            SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            SocketAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        bound.ip()
    }
}
