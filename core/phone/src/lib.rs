//! The Vaxel softphone core: the tokio driver that turns the sans-IO protocol crates
//! (`vaxel-sip`, `vaxel-media`) and the sound devices (`vaxel-audio`) into a working phone —
//! accounts, registration, calls, presence and the `vaxel` CLI.
//!
//! So far it holds the call-media part: [`media`] runs one call's audio path (RTP/SRTP
//! over UDP, jitter buffer, codecs, DTMF) between the network and an audio source and
//! sink (sound devices, WAV files, tones, silence). Accounts, registration and call
//! control build on it.

pub mod media;
