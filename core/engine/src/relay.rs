//! The media anchor: an RTP relay between the two legs of a call.
//!
//! Each leg gets its own UDP socket on the engine; the SDP each leg sees names that
//! socket. Packets arriving on leg A's socket go out of leg B's socket to B's media
//! address, and the other way round. The address to send to starts as the one in the
//! leg's SDP and then *latches* to where that leg's packets really come from (the
//! first packet after each SDP change), which is what makes calls work with phones
//! behind NAT that advertise private addresses.
//!
//! SRTP is terminated per leg (RFC 3711, keyed by SDES, RFC 4568) on the calls the
//! engine routes ([`Relay::terminate`]): each party that uses `a=crypto` gets the
//! engine's own key in the SDP the engine sends it, its packets are decrypted with its
//! key and re-encrypted with the other party's engine key (or passed plain to a party
//! without SRTP). A party the engine offers to first (the callee) is offered
//! opportunistic SRTP (RTP/AVP with `a=crypto`, RFC 8643), which a phone without
//! SRTP ignores. The flows terminate SRTP the same way: when the engine answers the
//! caller itself (the media server, [`Relay::answer_for`]) the caller gets the
//! engine's key, its packets reach the media server decrypted and what the media
//! server plays is encrypted on the way out ([`ToCaller`]); a person the call is
//! then connected to gets SRTP or plain RTP as their phone says. Without
//! [`Relay::terminate`] packets are relayed as they are, so `a=crypto` passes end
//! to end.
//!
//! When a transfer replaces the party on one side, the new party gets a *fresh*
//! socket ([`Relay::prepare`]) that takes over that side when it answers
//! ([`Relay::commit`]). Reusing the old port would let the departing party's last
//! packets (it keeps sending until our BYE reaches it) win the latch, and the new
//! party's audio would be dropped for the rest of the call.
//!
//! Ended relays give their sockets back to the engine's [`SocketPool`], which hands
//! a socket out again only after it has been quiet for [`QUIET`]: binding, registering
//! and closing two sockets was ~8 % of a call's CPU (perf, `scripts/bench-engine.sh
//! --profile calls`). A socket on which anything arrived after its call ended — late
//! packets of the departed party, a phone that missed the BYE — is closed instead, so
//! a reused port is never latched by a stranger (the kernel's own port reuse on a
//! fresh bind gives no such guarantee).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;
use vaxel_media::dtmf::{DtmfNotice, DtmfReceiver};
use vaxel_media::sdp::SessionDescription;
use vaxel_media::srtp::{CryptoAttribute, SrtpMasterKey, SrtpSession, SrtpSuite};

use self::transcode::{Format, Transcoder};

pub mod transcode;

/// Which side of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
}

impl Side {
    /// The side across the relay.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// How long a socket given back to the pool must stay quiet before it is reused:
/// longer than a late packet's flight, and ten packet times of a phone that goes on
/// sending (such a socket is closed, not reused).
pub const QUIET: Duration = Duration::from_millis(500);

/// At most this many sockets wait in the pool (each is a file descriptor); more are
/// closed.
const POOL_MAX: usize = 8192;

/// The engine's media sockets on one address, reused across calls (see the module
/// doc). Shared by every relay of one engine; tokio sockets belong to the runtime that
/// registered them, so a pool must not outlive or leave its engine's runtime.
#[derive(Debug)]
pub struct SocketPool {
    ip: IpAddr,
    /// Sockets with their addresses (asking the system costs a call per socket).
    free: Mutex<VecDeque<(Instant, UdpSocket, SocketAddr)>>,
}

impl SocketPool {
    /// An empty pool for sockets on `ip`.
    pub fn new(ip: IpAddr) -> Arc<SocketPool> {
        Arc::new(SocketPool {
            ip,
            free: Mutex::new(VecDeque::new()),
        })
    }

    /// A socket on the pool's address and its address: one that has been quiet for
    /// [`QUIET`] since its call ended, else a fresh bind.
    pub async fn socket(&self) -> std::io::Result<(UdpSocket, SocketAddr)> {
        if let Some(s) = self.reusable(Instant::now()) {
            return Ok(s);
        }
        let socket = UdpSocket::bind(SocketAddr::new(self.ip, 0)).await?;
        let addr = socket.local_addr()?;
        Ok((socket, addr))
    }

    fn reusable(&self, now: Instant) -> Option<(UdpSocket, SocketAddr)> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while free
            .front()
            .is_some_and(|(since, _, _)| now.duration_since(*since) >= QUIET)
        {
            let (_, socket, addr) = free.pop_front()?;
            // Anything queued since the call ended makes the socket unsafe to reuse.
            let mut probe = [0u8; 1];
            match socket.try_recv_from(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Some((socket, addr));
                }
                _ => debug!("a media socket heard packets after its call; closed"),
            }
        }
        None
    }

    /// Takes back a socket (bound to `addr`) whose call has ended.
    fn give(&self, socket: UdpSocket, addr: SocketAddr) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX {
            free.push_back((Instant::now(), socket, addr));
        }
    }

    /// Takes back a relay leg's socket when nobody else holds it.
    fn give_shared(&self, socket: Arc<UdpSocket>, addr: SocketAddr) {
        if let Ok(s) = Arc::try_unwrap(socket) {
            self.give(s, addr);
        }
    }

    /// How many sockets wait in the pool.
    pub fn len(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no socket waits in the pool.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Packet counters of one relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Packets received from A and sent to B.
    pub a_to_b: AtomicU64,
    /// Packets received from B and sent to A.
    pub b_to_a: AtomicU64,
}

enum Control {
    Remote(Side, Option<SocketAddr>),
    /// A socket waiting to take over a side.
    Prepare(Side, UdpSocket, SocketAddr),
    /// The prepared socket takes over the side, with the new party's SDP address.
    Commit(Side, Option<SocketAddr>),
    /// The prepared socket is not needed (the transfer failed).
    Abandon(Side),
    Tap(Option<mpsc::UnboundedSender<Tapped>>),
    KeysB(Option<(u8, mpsc::UnboundedSender<char>)>),
    /// Consultation: B's party talks with the prepared B socket's party.
    Consult(Option<SocketAddr>),
    /// The SRTP contexts of a side's party (`None`: plain RTP).
    Srtp(Side, Option<Box<SrtpSession>>),
    /// Transcoders A→B and B→A when the parties share no codec (`None`: relay
    /// packets as they are).
    Transcode(Option<Box<(Transcoder, Transcoder)>>),
    /// A plain RTP packet from the media server for A's party, to this address
    /// (encrypted on the way if that party uses SRTP).
    ToA(Vec<u8>, SocketAddr),
}

/// Where the media server sends what it plays to the caller (side A): out of leg
/// A's socket, through the relay task, so a caller using SRTP gets it encrypted
/// with the engine's key (RFC 3711 §3.3) in the same context as the rest of the
/// call's packets to it.
#[derive(Debug, Clone)]
pub struct ToCaller(mpsc::UnboundedSender<Control>);

impl ToCaller {
    /// Sends one plain RTP packet to `to` (dropped once the relay has stopped).
    pub fn send(&self, packet: Vec<u8>, to: SocketAddr) {
        let _ = self.0.send(Control::ToA(packet, to));
    }
}

/// A packet that arrived on leg A's socket while the relay is tapped: its bytes and
/// where it came from.
pub type Tapped = (bytes::Bytes, SocketAddr);

/// A running relay; dropping it stops the task and gives the sockets back to the
/// pool.
#[derive(Debug)]
pub struct Relay {
    pool: Arc<SocketPool>,
    a_port: SocketAddr,
    b_port: SocketAddr,
    /// Prepared sockets' addresses, until committed or abandoned.
    pending: [Option<SocketAddr>; 2],
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<RelayStats>,
    /// What each side's party said in SDP and what the engine told it.
    sdp: Mutex<SdpState>,
}

/// The per-leg SDP knowledge behind SRTP termination.
#[derive(Debug, Default)]
struct SdpState {
    /// Whether SRTP is terminated per leg (see [`Relay::terminate`]).
    terminate: bool,
    sides: [PartySdp; 2],
    /// The parties waiting on prepared sockets.
    prepared: [Option<PartySdp>; 2],
    /// The formats the relay transcodes between now (A's, B's).
    transcoding: Option<(Format, Format)>,
}

impl SdpState {
    /// Transcoders for the current parties' formats when they share no codec;
    /// `Some(..)` when that changed.
    fn update_transcoding(&mut self) -> Option<Option<Box<(Transcoder, Transcoder)>>> {
        let want = match (&self.sides[0].format, &self.sides[1].format) {
            (Some(a), Some(b))
                if !a.shares_with(b) && !a.codecs.is_empty() && !b.codecs.is_empty() =>
            {
                Some((a.clone(), b.clone()))
            }
            _ => None,
        };
        if want == self.transcoding {
            return None;
        }
        self.transcoding = want.clone();
        Some(want.and_then(|(a, b)| {
            let pair = Transcoder::new(&a, &b).zip(Transcoder::new(&b, &a));
            if pair.is_none() {
                debug!("no transcoder between {a:?} and {b:?}");
            }
            pair.map(Box::new)
        }))
    }
}

/// One party's SDP as the relay knows it.
#[derive(Debug)]
struct PartySdp {
    /// The engine's master key toward this party (RFC 4568 §6.1: each sender keys
    /// its own direction).
    key: SrtpMasterKey,
    /// The party's last SDP: its transport profile and the crypto line taken from it.
    heard: Option<(String, Option<CryptoAttribute>)>,
    /// The crypto line of the engine's last SDP toward the party (`Some(None)`: plain).
    sent: Option<Option<(u32, SrtpSuite)>>,
    /// The keys the relay task uses for this party now.
    installed: Option<(SrtpSuite, SrtpMasterKey)>,
    /// The party's audio format from its last SDP.
    format: Option<Format>,
    /// The engine's last SDP toward the party (for a session refresh, RFC 4028 §7.4).
    last: Option<String>,
}

impl Default for PartySdp {
    fn default() -> Self {
        PartySdp {
            key: SrtpMasterKey::generate(&mut rand::rng()),
            heard: None,
            sent: None,
            installed: None,
            format: None,
            last: None,
        }
    }
}

impl PartySdp {
    /// Learns the party's transport profile and first usable `a=crypto` line
    /// (RFC 4568 §7.1.1: the answerer takes the first one it supports).
    fn hear(&mut self, sd: &SessionDescription) {
        let Some(m) = sd.media.iter().find(|m| m.kind == "audio" && m.port != 0) else {
            return;
        };
        let crypto = m
            .attribute_values("crypto")
            .find_map(|v| CryptoAttribute::parse(v).ok());
        self.heard = Some((m.protocol.clone(), crypto));
        self.format = Some(Format::of(m));
    }

    /// Shapes the engine's SDP toward this party: its own profile and an `a=crypto`
    /// line with the engine's key if it uses SRTP (echoing its tag and suite), none
    /// if it does not, and opportunistic SRTP (RFC 8643) if it has not said yet.
    fn shape(&mut self, sd: &mut SessionDescription) {
        let Some(m) = sd
            .media
            .iter_mut()
            .find(|m| m.kind == "audio" && m.port != 0)
        else {
            return;
        };
        m.attributes
            .retain(|a| !a.name.eq_ignore_ascii_case("crypto"));
        shape_codecs(m, self.format.as_ref());
        let (proto, line) = match &self.heard {
            Some((proto, Some(c))) => (proto.clone(), Some((c.tag, c.suite))),
            Some((proto, None)) => (proto.clone(), None),
            // Not heard yet: an offer. The profile follows the other party's (RTP/SAVP
            // for a party that requires SRTP, RTP/AVP with `a=crypto` otherwise);
            // a 488 gets the other one (see `other_profile`).
            None => (
                if m.protocol.contains("SAVP") {
                    "RTP/SAVP".to_owned()
                } else {
                    "RTP/AVP".to_owned()
                },
                Some((1, SrtpSuite::AesCm128HmacSha1_80)),
            ),
        };
        m.protocol = proto;
        if let Some((tag, suite)) = line {
            let ours = CryptoAttribute {
                tag,
                suite,
                key: self.key.clone(),
            };
            m.attributes
                .push(vaxel_media::sdp::Attribute::new("crypto", ours.to_value()));
        }
        self.sent = Some(line);
    }

    /// The SRTP contexts the party's packets need, if they changed since the last
    /// call: `Some(None)` switches to plain RTP.
    fn update(&mut self) -> Option<Option<Box<SrtpSession>>> {
        let want = match (&self.heard, self.sent) {
            (Some((_, Some(theirs))), Some(Some((_, suite)))) if theirs.suite == suite => {
                Some((suite, theirs.key.clone()))
            }
            _ => None,
        };
        if want == self.installed {
            return None;
        }
        self.installed = want.clone();
        Some(want.and_then(|(suite, theirs)| {
            SrtpSession::new(suite, &self.key, &theirs)
                .map_err(|e| debug!("no SRTP for a leg: {e}"))
                .ok()
                .map(Box::new)
        }))
    }
}

struct Leg {
    socket: Arc<UdpSocket>,
    /// The socket's address.
    local: SocketAddr,
    /// From the SDP, until latched.
    sdp: Option<SocketAddr>,
    /// Where this leg's packets come from.
    latched: Option<SocketAddr>,
    /// SRTP contexts when the leg's party uses SRTP (terminated per leg).
    srtp: Option<Box<SrtpSession>>,
}

impl Leg {
    fn target(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp)
    }
}

impl Relay {
    /// Takes two sockets from `pool` and starts relaying; the task ends, giving
    /// them back, when the relay is dropped.
    pub async fn start(pool: &Arc<SocketPool>) -> std::io::Result<Relay> {
        let (a, a_port) = pool.socket().await?;
        let (b, b_port) = pool.socket().await?;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let (control, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(RelayStats::default());
        tokio::spawn(run(
            Leg {
                socket: a,
                local: a_port,
                sdp: None,
                latched: None,
                srtp: None,
            },
            Leg {
                socket: b,
                local: b_port,
                sdp: None,
                latched: None,
                srtp: None,
            },
            rx,
            stats.clone(),
            pool.clone(),
        ));
        Ok(Relay {
            pool: pool.clone(),
            a_port,
            b_port,
            pending: [None, None],
            control,
            stats,
            sdp: Mutex::new(SdpState::default()),
        })
    }

    /// Terminates SRTP per leg from now on (see the module doc). The engine calls
    /// this for the calls it routes between two parties, before the first SDP.
    pub fn terminate(&self) {
        self.state().terminate = true;
    }

    /// The engine answers the party on `side` itself (the media server): `answer`
    /// is the engine's answer to the party's offer, which [`Relay::heard`] saw. The
    /// party's audio format becomes the answer's (what a person the call is later
    /// connected to must be transcoded to, if anything), and when the party uses
    /// SRTP the answer gets the engine's own key for it, echoing the tag and suite
    /// of the party's first usable `a=crypto` line (RFC 4568 §7.1.1) and its
    /// transport profile. Returns the answer to send, `None` for one that is not SDP.
    pub fn answer_for(&self, side: Side, answer: &[u8]) -> Option<String> {
        let mut sd = vaxel_media::sdp::parse(answer).ok()?;
        let mut st = self.state();
        let p = &mut st.sides[side as usize];
        if let Some(m) = sd.media.iter().find(|m| m.kind == "audio" && m.port != 0) {
            p.format = Some(Format::of(m));
        }
        p.shape(&mut sd);
        if let Some(s) = p.update() {
            let _ = self.control.send(Control::Srtp(side, s));
        }
        let out = sd.to_string();
        p.last = Some(out.clone());
        if let Some(t) = st.update_transcoding() {
            let _ = self.control.send(Control::Transcode(t));
        }
        Some(out)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SdpState> {
        self.sdp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SDP from the party on `side` (an offer or an answer, RFC 3264): its media
    /// address goes to the relay (as [`Relay::set_remote`]) and, when terminating,
    /// its keys. Returns the address (`Some(None)` for hold), `None` for a body that
    /// is not SDP.
    pub fn heard(&self, side: Side, body: &[u8]) -> Option<Option<SocketAddr>> {
        let sd = vaxel_media::sdp::parse(body).ok()?;
        let remote = media_address(&sd);
        self.set_remote(side, remote);
        let mut st = self.state();
        if st.terminate {
            let p = &mut st.sides[side as usize];
            p.hear(&sd);
            if let Some(s) = p.update() {
                let _ = self.control.send(Control::Srtp(side, s));
            }
            if let Some(t) = st.update_transcoding() {
                let _ = self.control.send(Control::Transcode(t));
            }
        }
        Some(remote)
    }

    /// Any SDP rewritten for the party on `side`: pointed at `side`'s relay socket
    /// and, when terminating, with the engine's key for that party (see
    /// [`PartySdp`]). `None` for a body that is not SDP.
    pub fn sdp_for(&self, side: Side, body: &[u8]) -> Option<String> {
        let mut sd = vaxel_media::sdp::parse(body).ok()?;
        rewrite(&mut sd, self.local(side));
        let mut st = self.state();
        if st.terminate {
            let p = &mut st.sides[side as usize];
            p.shape(&mut sd);
            if let Some(s) = p.update() {
                let _ = self.control.send(Control::Srtp(side, s));
            }
        }
        let out = sd.to_string();
        st.sides[side as usize].last = Some(out.clone());
        Some(out)
    }

    /// SDP from the party on `from`, for the party on the other side: [`Relay::heard`]
    /// then [`Relay::sdp_for`]. `None` for a body that is not SDP.
    pub fn pass(&self, from: Side, body: &[u8]) -> Option<String> {
        self.heard(from, body)?;
        self.sdp_for(from.other(), body)
    }

    /// [`Relay::heard`] for the party waiting on `side`'s prepared socket: takes
    /// effect at [`Relay::commit`]. Returns its media address.
    pub fn heard_prepared(&self, side: Side, body: &[u8]) -> Option<SocketAddr> {
        let sd = vaxel_media::sdp::parse(body).ok()?;
        let mut st = self.state();
        if st.terminate {
            st.prepared[side as usize]
                .get_or_insert_with(PartySdp::default)
                .hear(&sd);
        }
        media_address(&sd)
    }

    /// Records that the party on `side` got `sdp` instead (the other profile after a
    /// 488, see [`other_profile`]).
    pub fn sent_instead(&self, side: Side, sdp: &str) {
        self.state().sides[side as usize].last = Some(sdp.to_owned());
    }

    /// The SDP the engine last sent the party on `side` through [`Relay::sdp_for`]
    /// (unchanged, it is a re-INVITE's offer that changes nothing, RFC 3264 §8).
    pub fn last_sdp(&self, side: Side) -> Option<String> {
        self.state().sides[side as usize].last.clone()
    }

    /// [`Relay::sdp_for`] for the party waiting on `side`'s prepared socket (see
    /// [`Relay::prepare`]).
    pub fn sdp_for_prepared(&self, side: Side, body: &[u8]) -> Option<String> {
        let local = self.pending[side as usize]?;
        let mut sd = vaxel_media::sdp::parse(body).ok()?;
        rewrite(&mut sd, local);
        let mut st = self.state();
        let terminate = st.terminate;
        let p = st.prepared[side as usize].get_or_insert_with(PartySdp::default);
        if terminate {
            p.shape(&mut sd);
        }
        let out = sd.to_string();
        p.last = Some(out.clone());
        Some(out)
    }

    /// Media-server mode (the engine itself answers the caller): while `tap` is
    /// `Some`, packets from leg A go to it instead of to B, and B's packets are
    /// dropped; the media server sends to A through [`Relay::to_caller`]. `None`
    /// bridges A and B again.
    pub fn tap(&self, tap: Option<mpsc::UnboundedSender<Tapped>>) {
        let _ = self.control.send(Control::Tap(tap));
    }

    /// Keys leg B presses as RFC 4733 events (payload type `pt`) are reported to
    /// `keys` (once per key, at its start); the packets are still relayed. `None`
    /// stops watching. For the codes keyed during a call (R-309 `#n#`, `*`).
    pub fn watch_b_keys(&self, watch: Option<(u8, mpsc::UnboundedSender<char>)>) {
        let _ = self.control.send(Control::KeysB(watch));
    }

    /// Consultation (an announced move, R-309 `#n`): B's party talks with the party
    /// on the socket prepared for side B (whose media address is `with`) while A is
    /// tapped (music on hold). [`Relay::commit`] of side B then keeps that party and
    /// ends the consultation; [`Relay::abandon`] drops it and B talks with A again
    /// once the tap is removed.
    pub fn consult(&self, with: SocketAddr) {
        let _ = self.control.send(Control::Consult(Some(with)));
    }

    /// Where the media server sends to the caller (see [`ToCaller`]).
    pub fn to_caller(&self) -> ToCaller {
        ToCaller(self.control.clone())
    }

    /// The engine's media address that `side` sends to.
    pub fn local(&self, side: Side) -> SocketAddr {
        match side {
            Side::A => self.a_port,
            Side::B => self.b_port,
        }
    }

    /// Binds a fresh socket for a party that is to replace `side`'s party (transfer,
    /// RFC 5589; INVITE with Replaces, RFC 3891) and returns its address, for the SDP
    /// that party gets. Until [`Relay::commit`], `side` keeps its current socket, so
    /// the call goes on while the new party rings. A second call for the same side
    /// reuses the prepared socket (several devices of the target ring at once).
    pub async fn prepare(&mut self, side: Side) -> std::io::Result<SocketAddr> {
        if let Some(addr) = self.pending[side as usize] {
            return Ok(addr);
        }
        let (socket, addr) = self.pool.socket().await?;
        self.pending[side as usize] = Some(addr);
        self.state().prepared[side as usize] = Some(PartySdp::default());
        let _ = self.control.send(Control::Prepare(side, socket, addr));
        Ok(addr)
    }

    /// The prepared socket takes over `side`; `addr` is the new party's media
    /// address from its SDP. The departing party's packets, which still arrive on
    /// the old socket, are no longer read. Without a prepared socket this is
    /// [`Relay::set_remote`].
    pub fn commit(&mut self, side: Side, addr: Option<SocketAddr>) {
        match self.pending[side as usize].take() {
            Some(local) => {
                match side {
                    Side::A => self.a_port = local,
                    Side::B => self.b_port = local,
                }
                let _ = self.control.send(Control::Commit(side, addr));
                // The new party's keys replace the departing party's.
                let mut st = self.state();
                let party = st.prepared[side as usize].take().unwrap_or_default();
                let p = &mut st.sides[side as usize];
                *p = party;
                if let Some(s) = p.update() {
                    let _ = self.control.send(Control::Srtp(side, s));
                }
                if let Some(t) = st.update_transcoding() {
                    let _ = self.control.send(Control::Transcode(t));
                }
            }
            None => self.set_remote(side, addr),
        }
    }

    /// Frees a prepared socket that will not be used.
    pub fn abandon(&mut self, side: Side) {
        if self.pending[side as usize].take().is_some() {
            self.state().prepared[side as usize] = None;
            let _ = self.control.send(Control::Abandon(side));
        }
    }

    /// Sets the media address `side`'s SDP announced (`None`: on hold at 0.0.0.0 or
    /// unknown); the latch is released so the next packet from that side re-latches.
    pub fn set_remote(&self, side: Side, addr: Option<SocketAddr>) {
        let _ = self.control.send(Control::Remote(side, addr));
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RelayStats> {
        &self.stats
    }
}

async fn run(
    mut a: Leg,
    mut b: Leg,
    mut control: mpsc::UnboundedReceiver<Control>,
    stats: Arc<RelayStats>,
    pool: Arc<SocketPool>,
) {
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let mut pending: [Option<(UdpSocket, SocketAddr)>; 2] = [None, None];
    let mut tap: Option<mpsc::UnboundedSender<Tapped>> = None;
    let mut keys: Option<(u8, mpsc::UnboundedSender<char>, DtmfReceiver)> = None;
    let mut xcode: Option<Box<(Transcoder, Transcoder)>> = None;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut buf_c = vec![0u8; 2048];
    // The consulted party (on the prepared B socket), while a consultation runs.
    let mut consult: Option<Leg> = None;
    loop {
        // The consultation socket, apart from its leg: the leg's SRTP contexts must
        // not be borrowed across the receive.
        let consult_socket = consult.as_ref().map(|c| c.socket.clone());
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Remote(side, addr)) => {
                    let leg = if side == Side::A { &mut a } else { &mut b };
                    leg.sdp = addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
                    leg.latched = None;
                }
                Some(Control::Prepare(side, socket, addr)) => {
                    pending[side as usize] = Some((socket, addr));
                }
                Some(Control::Commit(side, addr)) => {
                    let leg = if side == Side::A { &mut a } else { &mut b };
                    let old = if let Some((socket, addr)) = pending[side as usize].take() {
                        Some((std::mem::replace(&mut leg.socket, Arc::new(socket)), std::mem::replace(&mut leg.local, addr)))
                    } else if side == Side::B && let Some(c) = consult.take() {
                        Some((std::mem::replace(&mut leg.socket, c.socket), std::mem::replace(&mut leg.local, c.local)))
                    } else {
                        None
                    };
                    // The departed party's socket rests in the pool before reuse.
                    if let Some((socket, addr)) = old {
                        pool.give_shared(socket, addr);
                    }
                    leg.sdp = addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
                    leg.latched = None;
                    // A new party: its keys (if any) follow in a `Control::Srtp`.
                    leg.srtp = None;
                }
                Some(Control::Abandon(side)) => {
                    pending[side as usize] = None;
                    if side == Side::B {
                        consult = None;
                    }
                }
                Some(Control::Consult(with)) => match (with, pending[Side::B as usize].take()) {
                    (Some(addr), Some((socket, local))) => {
                        consult = Some(Leg {
                            socket: Arc::new(socket),
                            local,
                            sdp: Some(addr).filter(|a| !a.ip().is_unspecified() && a.port() != 0),
                            latched: None,
                            srtp: None,
                        });
                    }
                    (_, socket) => {
                        pending[Side::B as usize] = socket;
                        consult = None;
                    }
                },
                Some(Control::Tap(t)) => tap = t,
                Some(Control::KeysB(w)) => {
                    keys = w.map(|(pt, tx)| (pt, tx, DtmfReceiver::new(8000)));
                }
                Some(Control::Srtp(side, s)) => {
                    if side == Side::A { a.srtp = s } else { b.srtp = s }
                }
                Some(Control::Transcode(t)) => xcode = t,
                Some(Control::ToA(packet, to)) => {
                    if let Some(wire) = protect(&mut a, &packet) {
                        let _ = a.socket.send_to(wire.as_deref().unwrap_or(&packet), to).await;
                    }
                }
                None => break,
            },
            r = a.socket.recv_from(&mut buf_a) => {
                if let Ok((n, from)) = r
                    && let Some(plain) = receive(&mut a, &buf_a[..n], from)
                {
                    let plain = plain.as_deref().unwrap_or(&buf_a[..n]);
                    if let Some(t) = &tap {
                        let _ = t.send((Bytes::copy_from_slice(plain), from));
                    } else if let Some(x) = xcode.as_mut() {
                        out.clear();
                        x.0.convert(plain, &mut out);
                        let n = send_all(&mut b, &out).await;
                        stats.a_to_b.fetch_add(n, Ordering::Relaxed);
                    } else if let Some(to) = b.target()
                        && let Some(wire) = protect(&mut b, plain)
                        && b.socket.send_to(wire.as_deref().unwrap_or(plain), to).await.is_ok()
                    {
                        stats.a_to_b.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            r = b.socket.recv_from(&mut buf_b) => {
                if let Ok((n, from)) = r
                    && let Some(plain) = receive(&mut b, &buf_b[..n], from)
                {
                    let plain = plain.as_deref().unwrap_or(&buf_b[..n]);
                    if let Some((pt, tx, rx)) = keys.as_mut()
                        && let Some((p, ts, payload)) = crate::media_server::parse_rtp(plain)
                        && p == *pt
                    {
                        let now = std::time::Instant::now();
                        let _ = rx.handle(now, ts, payload);
                        while let Some(k) = rx.poll(now) {
                            if let DtmfNotice::Started(d) = k {
                                let _ = tx.send(d);
                            }
                        }
                    }
                    if let Some(c) = consult.as_mut()
                        && let Some(to) = c.target()
                    {
                        if let Some(wire) = protect(c, plain) {
                            let _ = c.socket.send_to(wire.as_deref().unwrap_or(plain), to).await;
                        }
                    } else if tap.is_some() {
                    } else if let Some(x) = xcode.as_mut() {
                        out.clear();
                        x.1.convert(plain, &mut out);
                        let n = send_all(&mut a, &out).await;
                        stats.b_to_a.fetch_add(n, Ordering::Relaxed);
                    } else if let Some(to) = a.target()
                        && let Some(wire) = protect(&mut a, plain)
                        && a.socket.send_to(wire.as_deref().unwrap_or(plain), to).await.is_ok()
                    {
                        stats.b_to_a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            r = async {
                match &consult_socket {
                    Some(socket) => socket.recv_from(&mut buf_c).await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Ok((n, from)), Some(c)) = (r, consult.as_mut())
                    && let Some(plain) = receive(c, &buf_c[..n], from)
                {
                    let plain = plain.as_deref().unwrap_or(&buf_c[..n]);
                    if let Some(to) = b.target()
                        && let Some(wire) = protect(&mut b, plain)
                    {
                        let _ = b.socket.send_to(wire.as_deref().unwrap_or(plain), to).await;
                    }
                }
            }
        }
    }
    // The relay was dropped: its sockets go back to the pool.
    for leg in [Some(a), Some(b), consult].into_iter().flatten() {
        pool.give_shared(leg.socket, leg.local);
    }
    for (socket, addr) in pending.into_iter().flatten() {
        pool.give(socket, addr);
    }
}

/// A datagram that arrived on `leg`'s socket from `from`: `None` to drop it (not
/// from the latched address, or failing SRTP authentication — such a packet does
/// not latch), `Some(None)` to use it as it is, `Some(Some(plain))` decrypted.
fn receive(leg: &mut Leg, packet: &[u8], from: SocketAddr) -> Option<Option<Bytes>> {
    if leg.latched.is_some_and(|l| l != from) {
        return None;
    }
    let plain = match leg.srtp.as_mut() {
        None => None,
        Some(s) => {
            let r = if vaxel_media::rtp::is_rtcp(packet) {
                s.unprotect_rtcp(packet)
            } else {
                s.unprotect_rtp(packet)
            };
            match r {
                Ok(p) => Some(p),
                Err(_) => return None,
            }
        }
    };
    leg.latched.get_or_insert(from);
    Some(plain)
}

/// Sends transcoded packets to `leg`'s party (encrypted if it uses SRTP); returns
/// how many went out.
async fn send_all(leg: &mut Leg, packets: &[Vec<u8>]) -> u64 {
    let Some(to) = leg.target() else { return 0 };
    let mut n = 0;
    for p in packets {
        if let Some(wire) = protect(leg, p)
            && leg
                .socket
                .send_to(wire.as_deref().unwrap_or(p), to)
                .await
                .is_ok()
        {
            n += 1;
        }
    }
    n
}

/// A plain packet to send to `leg`'s party: `Some(None)` as it is, `Some(Some(_))`
/// encrypted with the engine's key for that party, `None` if it cannot be.
fn protect(leg: &mut Leg, plain: &[u8]) -> Option<Option<Bytes>> {
    match leg.srtp.as_mut() {
        None => Some(None),
        Some(s) => {
            let r = if vaxel_media::rtp::is_rtcp(plain) {
                s.protect_rtcp(plain)
            } else {
                s.protect_rtp(plain)
            };
            r.ok().map(Some)
        }
    }
}

/// Rewrites an SDP body so its (first) audio stream points at `local`: the session
/// and media `c=` lines and the `m=audio` port. Everything else (codecs, direction
/// for hold, `a=crypto`) passes through. Returns the rewritten body and the media
/// address the body announced (`None` for a hold address or a hostname).
pub fn rewrite_sdp(body: &[u8], local: SocketAddr) -> Option<(String, Option<SocketAddr>)> {
    let mut sd = vaxel_media::sdp::parse(body).ok()?;
    let remote = media_address(&sd);
    rewrite(&mut sd, local);
    Some((sd.to_string(), remote))
}

/// The media address of the first audio stream (`None` for hold or a hostname).
fn media_address(sd: &SessionDescription) -> Option<SocketAddr> {
    let m = sd.media.iter().find(|m| m.kind == "audio" && m.port != 0)?;
    let ip = m
        .connection
        .as_ref()
        .or(sd.connection.as_ref())
        .and_then(|c| c.ip())?;
    Some(SocketAddr::new(ip, m.port)).filter(|r| !r.ip().is_unspecified())
}

/// Points the first audio stream at `local` (see [`rewrite_sdp`]).
fn rewrite(sd: &mut SessionDescription, local: SocketAddr) {
    let audio = sd
        .media
        .iter()
        .position(|m| m.kind == "audio" && m.port != 0);
    let hold = audio.is_some_and(|i| {
        sd.media[i]
            .connection
            .as_ref()
            .or(sd.connection.as_ref())
            .is_some_and(|c| c.is_hold())
    });
    let addr = if hold {
        // RFC 3264 §8.4: keep the hold address so the other side sees hold too.
        "0.0.0.0".to_owned()
    } else {
        local.ip().to_string()
    };
    sd.connection = Some(vaxel_media::sdp::Connection { address: addr });
    sd.origin.address = local.ip().to_string();
    for (i, m) in sd.media.iter_mut().enumerate() {
        if Some(i) == audio {
            m.port = local.port();
            m.connection = None;
            // RTCP is not relayed on its own port; drop the explicit one (RFC 3605).
            m.attributes
                .retain(|a| !a.name.eq_ignore_ascii_case("rtcp"));
        } else if m.port != 0 {
            // Only one audio stream is anchored; others are refused (RFC 3264 §6).
            m.port = 0;
        }
    }
}

/// The codecs of an SDP from one party for the other (RFC 3264 §6.1): offered as
/// they are plus what the engine can transcode to when the receiving party has not
/// stated its format yet; when it has and the two share no codec, its own format
/// (the relay transcodes, see [`transcode`]).
fn shape_codecs(m: &mut vaxel_media::sdp::MediaDescription, to: Option<&Format>) {
    use vaxel_media::sdp::Attribute;
    let src = Format::of(m);
    match to {
        None => {
            let used = m.payload_types();
            for (pt, kind) in transcode::additions(&src, &used) {
                m.formats.push(pt.to_string());
                let map = match kind.rtpmap_channels() {
                    Some(c) => format!(
                        "{pt} {}/{}/{c}",
                        kind.encoding_name(),
                        kind.rtp_clock_rate()
                    ),
                    None => format!("{pt} {}/{}", kind.encoding_name(), kind.rtp_clock_rate()),
                };
                m.attributes.push(Attribute::new("rtpmap", map));
            }
        }
        Some(to) if !src.shares_with(to) && !src.codecs.is_empty() => {
            let Some(&(pt, kind)) = to.codecs.first() else {
                return;
            };
            m.formats = vec![pt.to_string()];
            m.attributes.retain(|a| {
                !["rtpmap", "fmtp", "ptime", "maxptime"]
                    .iter()
                    .any(|n| a.name.eq_ignore_ascii_case(n))
            });
            let map = match kind.rtpmap_channels() {
                Some(c) => format!(
                    "{pt} {}/{}/{c}",
                    kind.encoding_name(),
                    kind.rtp_clock_rate()
                ),
                None => format!("{pt} {}/{}", kind.encoding_name(), kind.rtp_clock_rate()),
            };
            m.attributes.push(Attribute::new("rtpmap", map));
            if let (Some(_), Some((ev, clock))) = (src.events, to.events) {
                m.formats.push(ev.to_string());
                m.attributes.push(Attribute::new(
                    "rtpmap",
                    format!("{ev} telephone-event/{clock}"),
                ));
                m.attributes
                    .push(Attribute::new("fmtp", format!("{ev} 0-16")));
            }
            m.attributes
                .push(Attribute::new("ptime", to.ptime.to_string()));
        }
        Some(_) => {}
    }
}

/// The engine's SRTP offer with the other transport profile: RTP/SAVP becomes
/// RTP/AVP with the same `a=crypto` (opportunistic, RFC 8643) and the other way
/// round. For a callee that refused the first offer with 488 (RFC 3261 §21.4.26):
/// a phone without SRTP refuses RTP/SAVP, one that requires SRTP refuses RTP/AVP.
/// `None` when the offer has no `a=crypto` (nothing else to try).
pub fn other_profile(offer: &[u8]) -> Option<String> {
    let mut sd = vaxel_media::sdp::parse(offer).ok()?;
    let m = sd
        .media
        .iter_mut()
        .find(|m| m.kind == "audio" && m.port != 0)?;
    m.attribute("crypto")?;
    m.protocol = if m.protocol.contains("SAVP") {
        "RTP/AVP".to_owned()
    } else {
        "RTP/SAVP".to_owned()
    };
    sd.origin.session_version += 1;
    Some(sd.to_string())
}

/// The same SDP with every stream made `sendrecv` (RFC 3264 §6.1): what a party
/// who was on hold with the departing party is offered when it is joined to a new
/// one, so the new pair hear each other. `None` for an unreadable body.
pub fn sendrecv(body: &[u8]) -> Option<Vec<u8>> {
    let mut sd = vaxel_media::sdp::parse(body).ok()?;
    let direction = |a: &vaxel_media::sdp::Attribute| {
        ["sendonly", "recvonly", "inactive", "sendrecv"]
            .iter()
            .any(|d| a.name.eq_ignore_ascii_case(d))
    };
    sd.attributes.retain(|a| !direction(a));
    for m in &mut sd.media {
        m.attributes.retain(|a| !direction(a));
        if m.port != 0 {
            m.attributes
                .push(vaxel_media::sdp::Attribute::flag("sendrecv"));
        }
    }
    Some(sd.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_address_and_port_only() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 192.168.1.5\r\ns=-\r\nc=IN IP4 192.168.1.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
        let (out, remote) = rewrite_sdp(offer, "10.1.1.1:30000".parse().unwrap()).unwrap();
        assert_eq!(remote, Some("192.168.1.5:4000".parse().unwrap()));
        assert!(out.contains("c=IN IP4 10.1.1.1"), "{out}");
        assert!(out.contains("m=audio 30000 RTP/AVP 0 8 101"), "{out}");
        assert!(out.contains("a=sendonly"), "{out}");
        let resumed = String::from_utf8(sendrecv(out.as_bytes()).unwrap()).unwrap();
        assert!(!resumed.contains("a=sendonly"), "{resumed}");
        assert!(resumed.contains("a=sendrecv"), "{resumed}");
    }

    #[tokio::test]
    async fn relays_both_ways_and_latches() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let relay = Relay::start(&SocketPool::new(lo)).await.unwrap();
        let pa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pb = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // A announced a wrong (private) address; B announced the right one.
        relay.set_remote(Side::A, Some("10.99.99.99:4000".parse().unwrap()));
        relay.set_remote(Side::B, Some(pb.local_addr().unwrap()));
        tokio::task::yield_now().await;
        pa.send_to(b"from a", relay.local(Side::A)).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = pb.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"from a");
        // A latched to its real address, so B's answer reaches it.
        pb.send_to(b"from b", relay.local(Side::B)).await.unwrap();
        let (n, _) = pa.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"from b");
        assert_eq!(relay.stats().a_to_b.load(Ordering::Relaxed), 1);
        assert_eq!(relay.stats().b_to_a.load(Ordering::Relaxed), 1);
    }

    /// The transfer race: the departing party keeps sending to its old port after
    /// the new party took over; its packets must not win the latch.
    #[tokio::test]
    async fn a_replaced_party_cannot_steal_the_side() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut relay = Relay::start(&SocketPool::new(lo)).await.unwrap();
        let pa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let old = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let new = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        relay.set_remote(Side::A, Some(pa.local_addr().unwrap()));
        relay.set_remote(Side::B, Some(old.local_addr().unwrap()));
        let old_port = relay.local(Side::B);
        let fresh = relay.prepare(Side::B).await.unwrap();
        assert_ne!(fresh, old_port);
        relay.commit(Side::B, Some(new.local_addr().unwrap()));
        assert_eq!(relay.local(Side::B), fresh);
        tokio::task::yield_now().await;
        // The old party's late packet arrives first, then the new party's.
        old.send_to(b"late", old_port).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        new.send_to(b"new", fresh).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = pa.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"new");
        pa.send_to(b"to new", relay.local(Side::A)).await.unwrap();
        let (n, _) = new.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"to new");
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn crypto_of(sdp: &str) -> CryptoAttribute {
        let line = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=crypto:"))
            .unwrap_or_else(|| panic!("no a=crypto in {sdp}"));
        CryptoAttribute::parse(line).unwrap()
    }

    fn sdp(port: u16, proto: &str, crypto: Option<&CryptoAttribute>) -> String {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{}\r\n", c.to_value()));
        }
        s
    }

    /// RFC 4568 per leg: an SRTP caller and an SRTP callee each get the engine's
    /// key, never the other's; packets are re-encrypted across the relay.
    #[tokio::test]
    async fn srtp_is_terminated_per_leg() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let relay = Relay::start(&SocketPool::new(lo)).await.unwrap();
        relay.terminate();
        let pa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pb = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = rand::rng();
        let ka = CryptoAttribute {
            tag: 3,
            suite: SrtpSuite::AesCm128HmacSha1_32,
            key: SrtpMasterKey::generate(&mut rng),
        };
        let offer_a = sdp(pa.local_addr().unwrap().port(), "RTP/SAVP", Some(&ka));
        let to_b = relay.pass(Side::A, offer_a.as_bytes()).unwrap();
        // The callee is offered the caller's profile with the engine's own key; after
        // a 488 the other profile (opportunistic SRTP), same key.
        assert!(to_b.contains("RTP/SAVP"), "{to_b}");
        let eb = crypto_of(&to_b);
        assert_ne!(eb.key, ka.key);
        let retry = other_profile(to_b.as_bytes()).unwrap();
        assert!(
            retry.contains("m=audio") && retry.contains(" RTP/AVP "),
            "{retry}"
        );
        assert_eq!(crypto_of(&retry), eb);
        let kb = CryptoAttribute {
            tag: eb.tag,
            suite: eb.suite,
            key: SrtpMasterKey::generate(&mut rng),
        };
        let answer_b = sdp(pb.local_addr().unwrap().port(), "RTP/AVP", Some(&kb));
        let to_a = relay.pass(Side::B, answer_b.as_bytes()).unwrap();
        // The caller's answer echoes its tag, suite and profile with the engine's key.
        assert!(to_a.contains("RTP/SAVP"), "{to_a}");
        let ea = crypto_of(&to_a);
        assert_eq!((ea.tag, ea.suite), (3, SrtpSuite::AesCm128HmacSha1_32));
        assert!(ea.key != ka.key && ea.key != kb.key && ea.key != eb.key);
        let mut a = SrtpSession::new(ka.suite, &ka.key, &ea.key).unwrap();
        let mut b = SrtpSession::new(kb.suite, &kb.key, &eb.key).unwrap();
        tokio::task::yield_now().await;
        let mut buf = [0u8; 256];
        for seq in 1..4u16 {
            let wire = a.protect_rtp(&rtp(seq, b"hello b")).unwrap();
            pa.send_to(&wire, relay.local(Side::A)).await.unwrap();
            let (n, _) = pb.recv_from(&mut buf).await.unwrap();
            assert_eq!(&b.unprotect_rtp(&buf[..n]).unwrap()[12..], b"hello b");
            let wire = b.protect_rtp(&rtp(seq, b"hello a")).unwrap();
            pb.send_to(&wire, relay.local(Side::B)).await.unwrap();
            let (n, _) = pa.recv_from(&mut buf).await.unwrap();
            assert_eq!(&a.unprotect_rtp(&buf[..n]).unwrap()[12..], b"hello a");
        }
    }

    /// The engine answers the caller itself (the media server): the answer carries
    /// the engine's key for the caller (echoing its tag, suite and profile, not the
    /// key the answer was built with); the caller's packets reach the media server
    /// decrypted, forged ones not at all, and what the media server plays leaves
    /// encrypted.
    #[tokio::test]
    async fn the_media_server_talks_srtp_through_the_relay() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let relay = Relay::start(&SocketPool::new(lo)).await.unwrap();
        relay.terminate();
        let pa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = rand::rng();
        let ka = CryptoAttribute {
            tag: 2,
            suite: SrtpSuite::AesCm128HmacSha1_32,
            key: SrtpMasterKey::generate(&mut rng),
        };
        let offer = sdp(pa.local_addr().unwrap().port(), "RTP/SAVP", Some(&ka));
        relay.heard(Side::A, offer.as_bytes()).unwrap();
        let built_with = CryptoAttribute {
            key: SrtpMasterKey::generate(&mut rng),
            ..ka.clone()
        };
        let ours = sdp(relay.local(Side::A).port(), "RTP/SAVP", Some(&built_with));
        let answer = relay.answer_for(Side::A, ours.as_bytes()).unwrap();
        assert!(answer.contains(" RTP/SAVP "), "{answer}");
        assert_eq!(answer.matches("a=crypto:").count(), 1, "{answer}");
        let ea = crypto_of(&answer);
        assert_eq!((ea.tag, ea.suite), (2, SrtpSuite::AesCm128HmacSha1_32));
        assert!(ea.key != ka.key && ea.key != built_with.key);
        let (tx, mut tapped) = mpsc::unbounded_channel();
        relay.tap(Some(tx));
        let mut a = SrtpSession::new(ka.suite, &ka.key, &ea.key).unwrap();
        tokio::task::yield_now().await;
        forger
            .send_to(&rtp(9, b"forged"), relay.local(Side::A))
            .await
            .unwrap();
        let wire = a.protect_rtp(&rtp(1, b"caller")).unwrap();
        pa.send_to(&wire, relay.local(Side::A)).await.unwrap();
        let (plain, from) = tapped.recv().await.unwrap();
        assert_eq!(
            (&plain[12..], from),
            (&b"caller"[..], pa.local_addr().unwrap())
        );
        relay
            .to_caller()
            .send(rtp(7, b"prompt"), pa.local_addr().unwrap());
        let mut buf = [0u8; 256];
        let (n, _) = pa.recv_from(&mut buf).await.unwrap();
        assert_ne!(&buf[12..n.min(18)], b"prompt", "encrypted on the wire");
        assert_eq!(&a.unprotect_rtp(&buf[..n]).unwrap()[12..], b"prompt");
        // A re-offer with a new key (RFC 4568 §7.1.4): the engine keeps its own key
        // in the answer and decrypts with the new one.
        let ka2 = CryptoAttribute {
            key: SrtpMasterKey::generate(&mut rng),
            ..ka.clone()
        };
        let reoffer = sdp(pa.local_addr().unwrap().port(), "RTP/SAVP", Some(&ka2));
        relay.heard(Side::A, reoffer.as_bytes()).unwrap();
        let answer2 = relay.answer_for(Side::A, answer.as_bytes()).unwrap();
        assert_eq!(crypto_of(&answer2), ea);
        let mut a2 = SrtpSession::new(ka2.suite, &ka2.key, &ea.key).unwrap();
        tokio::task::yield_now().await;
        let wire = a2.protect_rtp(&rtp(2, b"rekeyed")).unwrap();
        pa.send_to(&wire, relay.local(Side::A)).await.unwrap();
        let (plain, _) = tapped.recv().await.unwrap();
        assert_eq!(&plain[12..], b"rekeyed");
    }

    /// An SRTP caller and a callee without SRTP (it ignores the opportunistic
    /// `a=crypto`): the callee gets plain RTP, the caller SRTP; a forged packet
    /// neither latches nor passes.
    #[tokio::test]
    async fn srtp_caller_talks_to_a_plain_callee() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let relay = Relay::start(&SocketPool::new(lo)).await.unwrap();
        relay.terminate();
        let pa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pb = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ka = CryptoAttribute {
            tag: 1,
            suite: SrtpSuite::AesCm128HmacSha1_80,
            key: SrtpMasterKey::generate(&mut rand::rng()),
        };
        let offer_a = sdp(pa.local_addr().unwrap().port(), "RTP/SAVP", Some(&ka));
        relay.pass(Side::A, offer_a.as_bytes()).unwrap();
        let answer_b = sdp(pb.local_addr().unwrap().port(), "RTP/AVP", None);
        let to_a = relay.pass(Side::B, answer_b.as_bytes()).unwrap();
        let ea = crypto_of(&to_a);
        let mut a = SrtpSession::new(ka.suite, &ka.key, &ea.key).unwrap();
        tokio::task::yield_now().await;
        forger
            .send_to(&rtp(9, b"forged"), relay.local(Side::A))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let wire = a.protect_rtp(&rtp(1, b"to plain b")).unwrap();
        pa.send_to(&wire, relay.local(Side::A)).await.unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = pb.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[12..n], b"to plain b");
        pb.send_to(&rtp(1, b"plain to a"), relay.local(Side::B))
            .await
            .unwrap();
        let (n, _) = pa.recv_from(&mut buf).await.unwrap();
        assert_eq!(&a.unprotect_rtp(&buf[..n]).unwrap()[12..], b"plain to a");
        assert_eq!(relay.stats().a_to_b.load(Ordering::Relaxed), 1);
    }
}
