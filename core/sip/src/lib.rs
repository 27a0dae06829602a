//! SIP without IO: the message, transaction, dialog and authentication layers of
//! RFC 3261 as plain state machines that the Vaxel phone and engine drive.
//!
//! Nothing in this crate touches a socket, a file, a thread or a clock. Time comes
//! in as an argument and randomness through an injected generator, so every
//! behaviour can be tested in virtual time (ARCHITECTURE.md §3.1).

pub mod auth;
pub mod dialog;
pub mod msg;
pub mod transaction;
pub mod usage;
