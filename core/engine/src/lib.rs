//! The Vaxel routing engine: registrar, back-to-back user agent with anchored media,
//! trunks, call records and the control API, as the `vaxel-engine` daemon.
//!
//! A thin driver (ARCHITECTURE.md §3.2) over the sans-IO cores: `vaxel-sip` parses,
//! runs transactions, dialogs and digest authentication; `vaxel-transport` owns the
//! SIP sockets; `vaxel-media` reads and writes SDP. This crate owns the tokio tasks,
//! the media relay sockets and the SQLite database.
//!
//! # Shape
//!
//! - [`office`]: the office file (TOML) and its validation with file:line errors.
//! - [`db`]: the engine's SQLite schema: users with HA1s, bindings, call records.
//! - [`protect`]: per-source request-rate limiting and bans, pure with time
//!   as an argument.
//! - [`relay`]: the RTP relay between two legs, with latching.
//! - [`engine`]: one task that owns everything above and the SIP endpoint; calls and
//!   legs are small ids in maps it owns (ARCHITECTURE.md §3.8). Everyone else talks
//!   to it through an [`engine::EngineHandle`].
//! - [`api`]: the control API (HTTP + WebSocket, JSON).
//! - [`callflow`]: the office file's `[routing]` section (flows, hours, groups,
//!   mailboxes) and its translation for `vaxel-routing`.
//! - [`media_server`]: prompts, music on hold, DTMF and recording when the engine
//!   answers a caller itself; `engine`'s `flows` part carries out the router's
//!   decisions with it.
//! - [`mail`]: voicemail e-mail notification over SMTP.
//! - [`presence`]: the presence service's state: published documents (RFC
//!   3903), the presence composed from them, registrations, calls and `*24*`
//!   profiles, and the NOTIFY bodies; `engine`'s `presence` part serves SUBSCRIBE and
//!   PUBLISH with it.

pub mod api;
pub mod callflow;
pub mod db;
pub mod engine;
pub mod mail;
pub mod media_server;
pub mod office;
pub mod presence;
pub mod protect;
pub mod relay;
