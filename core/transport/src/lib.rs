//! Async SIP transports for the Vaxel phone and engine: UDP, TCP and TLS sockets,
//! connection reuse and RFC 3263 resolution. A thin driver: it moves bytes and
//! time into `vaxel-sip` and carries out what that crate asks for.
//!
//! # Layers
//!
//! - [`sockets::Sockets`]: UDP sockets, TCP and TLS listeners, one stream
//!   connection per far end (reused for requests and responses both ways),
//!   stream framing with [`vaxel_sip::msg::framing::StreamFramer`], RFC 5626
//!   CRLF keep-alives (pongs to pings; pings on the connections we open; a
//!   `keep_alive` for UDP registrations), idle timeouts. Bytes in, bytes out.
//! - [`endpoint::Endpoint`]: one tokio task owning the `Sockets` and a
//!   [`vaxel_sip::transaction::Transactions`]. It parses and validates what
//!   arrives, feeds the
//!   transaction layer (`handle_message`, `handle_timeout` at `poll_timeout`,
//!   `handle_transport_error` when a connection fails) and executes
//!   `poll_transmit`. Malformed input is answered 400 when it can be, logged
//!   at debug level and counted ([`StatsSnapshot`]), never returned as an error.
//! - [`resolve`]: RFC 3263 — from a SIP/SIPS URI to ordered [`Target`]s
//!   (NAPTR → SRV → A/AAAA), the ordering rules as plain functions.
//! - [`tls`]: rustls (ring provider) configurations from PEM or memory.
//!
//! # Using an endpoint
//!
//! The transaction user (the phone, the engine, the examples) gets an
//! [`EndpointHandle`] to act and an [`Events`] receiver of
//! [`vaxel_sip::transaction::TxEvent`]s to react:
//!
//! ```no_run
//! use vaxel_sip::msg::{Response, StatusCode};
//! use vaxel_sip::transaction::TxEvent;
//! use vaxel_transport::{Endpoint, EndpointConfig, SocketsConfig};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let config = EndpointConfig {
//!     sockets: SocketsConfig {
//!         udp: vec!["127.0.0.1:5060".parse().unwrap()],
//!         tcp: vec!["127.0.0.1:5060".parse().unwrap()],
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! };
//! let (handle, mut events) = Endpoint::start(config).await?;
//! while let Some(event) = events.recv().await {
//!     if let TxEvent::Request { tx, request, .. } = event {
//!         // Via, From, To, Call-ID and CSeq are copied (§8.2.6.2).
//!         let mut ok = Response::from_request(&request, StatusCode::OK);
//!         ok.set_to_tag("a6c85cf").unwrap();
//!         handle.send_response(tx, ok).await.ok();
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! To send a request, resolve its URI ([`EndpointHandle::resolve`]), put a
//! Via for the target's transport on top ([`EndpointHandle::via`] makes one
//! with a fresh branch and `rport`), and call
//! [`EndpointHandle::send_request`]; the final response, a timeout or a
//! transport error comes back as an event with the returned key. The
//! `sip-answer` and `sip-call` examples are complete user agents built this way.

pub mod endpoint;
pub mod resolve;
pub mod sockets;
pub mod tls;

pub use endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointHandle, Events};
pub use resolve::{Destination, DnsResolver, ResolveError, Resolver, Target};
pub use sockets::{
    CloseReason, Inbound, LocalAddr, SendError, Sockets, SocketsConfig, Stats, StatsSnapshot,
};
pub use vaxel_sip::transaction::{Peer, TransportKind};
