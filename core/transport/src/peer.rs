//! Stand-ins for `vaxel_sip::transaction::{TransportKind, Peer}` (the shape in
//! coord/tx-api.md) until that module is merged; then this file goes and the
//! crate re-exports those types instead.

use std::net::SocketAddr;

/// A SIP transport.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub enum TransportKind {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl TransportKind {
    /// Whether the transport is reliable (a stream).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
    /// The Via token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }
}

/// The far end of a message or connection.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub struct Peer {
    /// Transport.
    pub transport: TransportKind,
    /// Address.
    pub addr: SocketAddr,
}
