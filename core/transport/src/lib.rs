//! Async SIP transports for the Vaxel phone and engine: UDP, TCP and TLS sockets,
//! connection reuse and RFC 3263 resolution. A thin driver: it moves bytes and
//! time into `vaxel-sip` and carries out what that crate asks for.

pub mod endpoint;
pub mod fixup;
pub mod resolve;
pub mod sockets;
pub mod tls;

pub use endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointHandle, Events};
pub use resolve::{Destination, DnsResolver, ResolveError, Resolver, Target};
pub use sockets::{Inbound, SendError, Sockets, SocketsConfig, Stats, StatsSnapshot};
pub use vaxel_sip::transaction::{Peer, TransportKind};
