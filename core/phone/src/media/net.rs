//! The network side of a call's media: the RTP/RTCP port pair and the tokio tasks that
//! move datagrams between the sockets and the media thread.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::MediaError;

/// Largest datagram we accept (RTP over Ethernet fits well inside).
const MAX_DATAGRAM: usize = 2048;

/// The local RTP port (even) and RTCP port (RTP + 1, RFC 3550 §11), bound before the SDP
/// offer or answer is written because it carries them. The RTCP port is bound even when
/// rtcp-mux will be negotiated, so the answer cannot leave us without one.
#[derive(Debug)]
pub struct MediaPorts {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
}

impl MediaPorts {
    /// Binds an even port of `ports` on `ip` for RTP and the next one for RTCP, trying the
    /// range from a random place (so concurrent calls rarely race for the same pair).
    pub async fn bind(ip: IpAddr, ports: RangeInclusive<u16>) -> Result<MediaPorts, MediaError> {
        let (lo, hi) = (*ports.start(), *ports.end());
        let first = lo + (lo % 2);
        if first == 0 || hi <= first {
            return Err(MediaError::BadConfig(format!(
                "port range {lo}..={hi} has no even/odd pair"
            )));
        }
        let pairs = (hi - first) / 2 + u16::from((hi - first) % 2 == 1);
        let pairs = pairs.max(1);
        let offset = rand::random::<u16>() % pairs;
        let mut last_err = String::new();
        for i in 0..pairs {
            let port = first + 2 * ((offset + i) % pairs);
            if port.checked_add(1).is_none_or(|p| p > hi) {
                continue;
            }
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => s,
                Err(e) => {
                    last_err = e.to_string();
                    continue;
                }
            };
            match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                Ok(rtcp) => return Ok(MediaPorts { rtp, rtcp }),
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(MediaError::NoPort {
            ip,
            range: format!("{lo}..={hi}"),
            reason: last_err,
        })
    }

    /// The RTP address to put in SDP.
    pub fn rtp_addr(&self) -> SocketAddr {
        self.rtp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The RTCP address (`a=rtcp` when it is not RTP + 1, which it always is here).
    pub fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// A datagram received, stamped with its arrival time at the socket (the jitter buffer
/// and RTP statistics measure from there, not from when the media thread sees it).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub from: SocketAddr,
    pub at: Instant,
    pub data: Bytes,
    /// Arrived on the RTCP port (as opposed to the RTP port, which may carry muxed RTCP).
    pub rtcp_port: bool,
}

/// A datagram to send.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub to: SocketAddr,
    pub data: Bytes,
    /// Send from the RTCP port (RTCP without mux).
    pub rtcp_port: bool,
}

/// Spawns the receive tasks (one per socket) and the send task. Receive tasks run until
/// aborted; the send task ends when the media thread drops its sender.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    ports: MediaPorts,
    inbound: mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Outbound>,
) -> Vec<JoinHandle<()>> {
    let rtp = Arc::new(ports.rtp);
    let rtcp = Arc::new(ports.rtcp);
    let recv = |sock: Arc<UdpSocket>, rtcp_port: bool, tx: mpsc::Sender<Inbound>| async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    let d = Inbound {
                        from,
                        at: Instant::now(),
                        data: Bytes::copy_from_slice(&buf[..n]),
                        rtcp_port,
                    };
                    // Never wait for the media thread: if it is that far behind, the
                    // packet would be late anyway.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(d) {
                        return;
                    }
                }
                Err(e) => {
                    // ICMP errors surface here on some systems; they are not fatal.
                    tracing::debug!("media socket receive: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    };
    let send_rtp = rtp.clone();
    let send_rtcp = rtcp.clone();
    let sender = async move {
        while let Some(o) = outbound.recv().await {
            let sock = if o.rtcp_port { &send_rtcp } else { &send_rtp };
            if let Err(e) = sock.send_to(&o.data, o.to).await {
                tracing::debug!(to = %o.to, "media socket send: {e}");
            }
        }
    };
    vec![
        rt.spawn(recv(rtp, false, inbound.clone())),
        rt.spawn(recv(rtcp, true, inbound)),
        rt.spawn(sender),
    ]
}
