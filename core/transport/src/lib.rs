//! Async SIP transports for the Vaxel phone and engine: UDP, TCP and TLS sockets,
//! connection reuse and RFC 3263 resolution. A thin driver: it moves bytes and
//! time into `vaxel-sip` and carries out what that crate asks for.

pub mod fixup;
mod peer;
pub mod resolve;
pub mod sockets;
pub mod tls;

pub use peer::{Peer, TransportKind};
pub use resolve::{Destination, DnsResolver, ResolveError, Resolver, Target};
pub use sockets::{Inbound, Sockets, SocketsConfig, SendError, Stats, StatsSnapshot};
