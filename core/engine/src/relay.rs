//! The media anchor: an RTP relay between the two legs of a call.
//!
//! Each leg gets its own UDP socket on the engine; the SDP each leg sees names that
//! socket. Packets arriving on leg A's socket go out of leg B's socket to B's media
//! address, and the other way round. The address to send to starts as the one in the
//! leg's SDP and then *latches* to where that leg's packets really come from (the
//! first packet after each SDP change), which is what makes calls work with phones
//! behind NAT that advertise private addresses. Packets are relayed as they are, so
//! SRTP with `a=crypto` passes end to end.
//!
//! When a transfer replaces the party on one side, the new party gets a *fresh*
//! socket ([`Relay::prepare`]) that takes over that side when it answers
//! ([`Relay::commit`]). Reusing the old port would let the departing party's last
//! packets (it keeps sending until our BYE reaches it) win the latch, and the new
//! party's audio would be dropped for the rest of the call.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use vaxel_media::dtmf::{DtmfNotice, DtmfReceiver};

/// Which side of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
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
    Prepare(Side, UdpSocket),
    /// The prepared socket takes over the side, with the new party's SDP address.
    Commit(Side, Option<SocketAddr>),
    /// The prepared socket is not needed (the transfer failed).
    Abandon(Side),
    Tap(Option<mpsc::UnboundedSender<Tapped>>),
    KeysB(Option<(u8, mpsc::UnboundedSender<char>)>),
    /// Consultation: B's party talks with the prepared B socket's party.
    Consult(Option<SocketAddr>),
}

/// A packet that arrived on leg A's socket while the relay is tapped: its bytes and
/// where it came from.
pub type Tapped = (bytes::Bytes, SocketAddr);

/// A running relay; dropping it stops the task and frees the ports.
#[derive(Debug)]
pub struct Relay {
    ip: IpAddr,
    a_port: SocketAddr,
    b_port: SocketAddr,
    /// Prepared sockets' addresses, until committed or abandoned.
    pending: [Option<SocketAddr>; 2],
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
    a_socket: Arc<UdpSocket>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Leg {
    socket: Arc<UdpSocket>,
    /// From the SDP, until latched.
    sdp: Option<SocketAddr>,
    /// Where this leg's packets come from.
    latched: Option<SocketAddr>,
}

impl Leg {
    fn target(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp)
    }
}

impl Relay {
    /// Binds two sockets on `ip` and starts relaying.
    pub async fn start(ip: IpAddr) -> std::io::Result<Relay> {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let b = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let (a_port, b_port) = (a.local_addr()?, b.local_addr()?);
        let (a, b) = (Arc::new(a), Arc::new(b));
        let a_socket = a.clone();
        let (control, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(RelayStats::default());
        let task = tokio::spawn(run(
            Leg {
                socket: a,
                sdp: None,
                latched: None,
            },
            Leg {
                socket: b,
                sdp: None,
                latched: None,
            },
            rx,
            stats.clone(),
        ));
        Ok(Relay {
            ip,
            a_port,
            b_port,
            pending: [None, None],
            control,
            stats,
            task,
            a_socket,
        })
    }

    /// Media-server mode (the engine itself answers the caller): while `tap` is
    /// `Some`, packets from leg A go to it instead of to B, and B's packets are
    /// dropped; the media server sends to A through [`Relay::a_socket`]. `None`
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

    /// Leg A's socket, for the media server to send from (the caller keeps one
    /// media address for the whole call).
    pub fn a_socket(&self) -> Arc<UdpSocket> {
        self.a_socket.clone()
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
        let socket = UdpSocket::bind(SocketAddr::new(self.ip, 0)).await?;
        let addr = socket.local_addr()?;
        self.pending[side as usize] = Some(addr);
        let _ = self.control.send(Control::Prepare(side, socket));
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
            }
            None => self.set_remote(side, addr),
        }
    }

    /// Frees a prepared socket that will not be used.
    pub fn abandon(&mut self, side: Side) {
        if self.pending[side as usize].take().is_some() {
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
) {
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let mut pending: [Option<UdpSocket>; 2] = [None, None];
    let mut tap: Option<mpsc::UnboundedSender<Tapped>> = None;
    let mut keys: Option<(u8, mpsc::UnboundedSender<char>, DtmfReceiver)> = None;
    let mut buf_c = vec![0u8; 2048];
    // The consulted party (on the prepared B socket), while a consultation runs.
    let mut consult: Option<Leg> = None;
    loop {
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Remote(side, addr)) => {
                    let leg = if side == Side::A { &mut a } else { &mut b };
                    leg.sdp = addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
                    leg.latched = None;
                }
                Some(Control::Prepare(side, socket)) => pending[side as usize] = Some(socket),
                Some(Control::Commit(side, addr)) => {
                    let leg = if side == Side::A { &mut a } else { &mut b };
                    if let Some(socket) = pending[side as usize].take() {
                        leg.socket = Arc::new(socket);
                    } else if side == Side::B && let Some(c) = consult.take() {
                        leg.socket = c.socket;
                    }
                    leg.sdp = addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
                    leg.latched = None;
                }
                Some(Control::Abandon(side)) => {
                    pending[side as usize] = None;
                    if side == Side::B {
                        consult = None;
                    }
                }
                Some(Control::Consult(with)) => match (with, pending[Side::B as usize].take()) {
                    (Some(addr), Some(socket)) => {
                        consult = Some(Leg {
                            socket: Arc::new(socket),
                            sdp: Some(addr).filter(|a| !a.ip().is_unspecified() && a.port() != 0),
                            latched: None,
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
                None => return,
            },
            r = a.socket.recv_from(&mut buf_a) => {
                if let Ok((n, from)) = r {
                    a.latched.get_or_insert(from);
                    if let Some(t) = &tap {
                        let _ = t.send((bytes::Bytes::copy_from_slice(&buf_a[..n]), from));
                    } else if a.latched == Some(from)
                        && let Some(to) = b.target()
                        && b.socket.send_to(&buf_a[..n], to).await.is_ok()
                    {
                        stats.a_to_b.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            r = b.socket.recv_from(&mut buf_b) => {
                if let Ok((n, from)) = r {
                    b.latched.get_or_insert(from);
                    if let Some((pt, tx, rx)) = keys.as_mut()
                        && b.latched == Some(from)
                        && let Some((p, ts, payload)) = crate::media_server::parse_rtp(&buf_b[..n])
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
                    if let Some(c) = &consult
                        && b.latched == Some(from)
                        && let Some(to) = c.target()
                    {
                        let _ = c.socket.send_to(&buf_b[..n], to).await;
                    } else if tap.is_none()
                        && b.latched == Some(from)
                        && let Some(to) = a.target()
                        && a.socket.send_to(&buf_b[..n], to).await.is_ok()
                    {
                        stats.b_to_a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            r = async {
                match &consult {
                    Some(c) => c.socket.recv_from(&mut buf_c).await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Ok((n, from)), Some(c)) = (r, consult.as_mut()) {
                    c.latched.get_or_insert(from);
                    if c.latched == Some(from)
                        && let Some(to) = b.target()
                    {
                        let _ = b.socket.send_to(&buf_c[..n], to).await;
                    }
                }
            }
        }
    }
}

/// Rewrites an SDP body so its (first) audio stream points at `local`: the session
/// and media `c=` lines and the `m=audio` port. Everything else (codecs, direction
/// for hold, `a=crypto`) passes through. Returns the rewritten body and the media
/// address the body announced (`None` for a hold address or a hostname).
pub fn rewrite_sdp(body: &[u8], local: SocketAddr) -> Option<(String, Option<SocketAddr>)> {
    let mut sd = vaxel_media::sdp::parse(body).ok()?;
    let audio = sd
        .media
        .iter()
        .position(|m| m.kind == "audio" && m.port != 0);
    let remote = audio.and_then(|i| {
        let m = &sd.media[i];
        let ip = m
            .connection
            .as_ref()
            .or(sd.connection.as_ref())
            .and_then(|c| c.ip())?;
        Some(SocketAddr::new(ip, m.port))
    });
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
    let conn = vaxel_media::sdp::Connection {
        address: addr.clone(),
    };
    sd.connection = Some(conn.clone());
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
    Some((sd.to_string(), remote.filter(|r| !r.ip().is_unspecified())))
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
        let relay = Relay::start(lo).await.unwrap();
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
        let mut relay = Relay::start(lo).await.unwrap();
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
}
