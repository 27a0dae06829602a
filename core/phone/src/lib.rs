//! The Vaxel softphone core: the tokio driver that turns the sans-IO protocol crates
//! (`vaxel-sip`, `vaxel-media`) and the sound devices (`vaxel-audio`) into a working
//! phone — accounts, registration, calls, transfer, messages, presence — and the `vaxel`
//! CLI.
//!
//! # Shape
//!
//! - [`Phone::start`] binds the SIP sockets (UDP and TCP on one port) and spawns the
//!   phone's task ([`phone`]). It returns a [`PhoneHandle`] to send [`Command`]s and a
//!   stream of [`Event`]s: the one vocabulary in and out (ARCHITECTURE.md §3.4). The
//!   `vaxel` program, the desktop app and the tests are only transports over it.
//! - [`media`] runs one call's audio path (RTP/SRTP over UDP, jitter buffer, codecs,
//!   DTMF) between the network and an audio source and sink (sound devices, WAV files,
//!   tones, silence).
//! - [`account`]: accounts are rows of the profile's store (`PROFILE/store.sqlite`,
//!   [`vaxel_store`]); passwords live in the OS keychain behind
//!   [`vaxel_store::SecretStore`], or come from `VAXEL_PASSWORD`, never from a file.
//! - The same store keeps the call history (every call is recorded as it progresses),
//!   the contacts and the directory; [`Command::History`], [`Command::Search`] and the
//!   contact and vCard commands reach it through one thread the phone owns.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vaxel_phone::{Command, Event, MediaFiles, Phone, PhoneConfig};
//! let mut config = PhoneConfig::new("127.0.0.1".parse()?);
//! config.media = MediaFiles { play: Some("tone.wav".into()), record: Some("in.wav".into()) };
//! let (phone, mut events) = Phone::start(config).await?;
//! phone.send(Command::Call { uri: "sip:bob@127.0.0.1:5080".into(), account: None, media: MediaFiles::default() });
//! while let Some(e) = events.recv().await {
//!     println!("{}", serde_json::to_string(&e)?);
//!     if let Event::Established { call, .. } = e { phone.send(Command::Hangup { call: Some(call) }); }
//!     if let Event::Ended { .. } = e { phone.send(Command::Quit); }
//! }
//! # Ok(()) }
//! ```

pub mod account;
pub mod api;
pub mod media;
pub mod phone;
mod presence;
mod records;

pub use account::Profile;
pub use api::{
    CallId, Command, DtmfMethod, DtmfVia, EndReason, ErrorCode, Event, MediaFiles, Side,
};
pub use phone::{Phone, PhoneConfig, PhoneError, PhoneEvents, PhoneHandle};
