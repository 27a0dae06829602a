//! Media without IO: SDP offer/answer, RTP/RTCP, SRTP, jitter buffer, DTMF, codecs,
//! tones, WAV prompts and the conference mixer for the Vaxel phone and engine.
//!
//! Nothing here opens a socket or a file, starts a thread or reads a clock
//! (ARCHITECTURE.md §3.1; `clippy.toml` enforces it). Datagrams come in as byte slices
//! with the `SocketAddr` they came from, time comes in as `Instant` arguments, randomness
//! (SSRCs, SRTP keys) as an injected `rand_core::RngCore`, and WAV files as `Read`/`Write`
//! values. That makes every behaviour testable in virtual time; [`netem`] provides a
//! seeded network to test with.
//!
//! # Driving a call
//!
//! 1. **Negotiate** with [`sdp::OfferAnswer`]: `create_offer` / `handle_answer`, or
//!    `handle_offer` on the answering side. Parse the peer's body with [`sdp::parse`],
//!    which tolerates what real devices send. The result, [`sdp::NegotiatedAudio`], names
//!    the codec, payload types (never assume 101 for `telephone-event`), ptime,
//!    direction, addresses, rtcp-mux and SDES keys. A [`sdp::NegotiationError`] tells
//!    you which SIP status to answer with (488 for no common codec).
//! 2. **Set up** the stream: [`CodecKind::build`] for the codec, [`srtp::SrtpSession`]
//!    from the negotiated keys, [`rtp::RtpSession`] for sequence numbers, statistics,
//!    symmetric latching and RTCP, [`jitter::JitterBuffer`] for playout, and
//!    [`dtmf::DtmfSender`]/[`dtmf::DtmfReceiver`] for RFC 4733 events.
//! 3. **Every packet time** (ptime, usually 20 ms) on the media thread:
//!    * send: take one frame of PCM at the codec's rate ([`resample::Resampler`] converts
//!      from the device rate), `encode`, `build_rtp`, `protect_rtp`, send the bytes to
//!      `RtpSession::remote_rtp()` — or, while `DtmfSender::next_packet` yields packets,
//!      send those instead of audio;
//!    * receive (whenever a datagram arrives): `unprotect_rtp`, `handle_rtp(now, from,
//!      bytes)`, then push audio into the jitter buffer and events into the DTMF
//!      receiver; with rtcp-mux, [`rtp::is_rtcp`] tells RTCP apart;
//!    * play: `JitterBuffer::pop(now)` says whether to `decode`, `conceal` (with the next
//!      packet for Opus FEC) or play silence.
//! 4. **Now and then**: send what `RtpSession::poll_rtcp(now)` returns (call again at
//!    `poll_timeout()`), feed received RTCP to `handle_rtcp`, drain `poll_event` (a
//!    latched NAT address, an SSRC change after a transfer, BYE), and show
//!    `RtpSession::stats` in the UI.
//!
//! Tones ([`tones`]), prompts and recordings ([`wav`]) and the conference
//! [`mixer`] work on PCM frames at the stream's rate and slot into step 3.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use vaxel_media::codec::CodecKind;
//! use vaxel_media::jitter::{JitterBuffer, JitterConfig, JitterPacket, Playout};
//! use vaxel_media::rtp::{RtpConfig, RtpSession};
//! use vaxel_media::sdp::{self, MediaPolicy, OfferAnswer, SrtpPolicy};
//! # fn rng() -> impl rand_core::RngCore { rand_chacha::ChaCha20Rng::seed_from_u64(1) }
//! # use rand_core::SeedableRng;
//!
//! let policy = MediaPolicy { codecs: vec![CodecKind::Pcma], srtp: SrtpPolicy::Disabled, ..Default::default() };
//! let mut us = OfferAnswer::new(policy, "192.0.2.1:4000".parse().unwrap(), &mut rng());
//! // The peer's offer, as a desk phone might send it (no t= line, DTMF on 96).
//! let offer = sdp::parse(b"o=- 1 1 IN IP4 10.0.0.9\r\nc=IN IP4 10.0.0.9\r\n\
//!     m=audio 30000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n").unwrap();
//! let (answer, audio) = us.handle_offer(&offer).unwrap();
//! assert_eq!(audio.telephone_event.unwrap().send_pt, 96);
//! let _body = answer.to_string(); // goes into the 200 OK
//!
//! let now = Instant::now(); // the driver's clock; the library never reads one
//! let mut codec = audio.codec.build(audio.ptime_ms).unwrap();
//! let mut rtp = RtpSession::new(
//!     RtpConfig {
//!         local_ssrc: 0x1234_5678,
//!         initial_seq: 1,
//!         cname: "alice@example".into(),
//!         clock_rate: audio.codec.rtp_clock_rate(),
//!         payload_types: vec![audio.recv_pt, 96],
//!         remote_rtp: audio.remote_rtp,
//!         remote_rtcp: audio.remote_rtcp,
//!         rtcp_mux: audio.rtcp_mux,
//!     },
//!     now,
//!     0, // NTP time matching `now`, from the driver's wall clock
//! );
//! let mut jb = JitterBuffer::new(JitterConfig::new(audio.codec.rtp_clock_rate(), audio.ptime_ms));
//!
//! // Send one frame...
//! let mut payload = Vec::new();
//! codec.encode(&vec![0i16; codec.frame_samples()], &mut payload).unwrap();
//! let datagram = rtp.build_rtp(now, audio.send_pt, true, 0, &payload);
//! // ...and, looping it back, receive and play it.
//! let r = rtp.handle_rtp(now, "10.0.0.9:30000".parse().unwrap(), &datagram).unwrap();
//! jb.push(now, JitterPacket { ssrc: r.ssrc, timestamp: r.timestamp, marker: r.marker, payload: r.payload });
//! let mut pcm = Vec::new();
//! match jb.pop(now + Duration::from_millis(20)) {
//!     Playout::Frame(p) => codec.decode(&p.payload, &mut pcm).unwrap(),
//!     Playout::Conceal { next } => codec.conceal(next.as_deref(), &mut pcm).unwrap(),
//!     Playout::Stretch => codec.conceal(None, &mut pcm).unwrap(),
//!     Playout::Silence => pcm.resize(codec.frame_samples(), 0),
//! }
//! assert_eq!(rtp.stats("PCMA").packets_received, 1);
//! ```

pub mod codec;
pub mod dsp;
pub mod dtmf;
pub mod jitter;
pub mod mixer;
pub mod netem;
pub mod resample;
pub mod rtp;
pub mod sdp;
pub mod srtp;
pub mod tones;
pub mod wav;

pub use codec::{AudioCodec, CodecError, CodecKind};
pub use resample::Resampler;

#[cfg(test)]
mod test_util {
    /// The origin of virtual time in tests. Only differences between instants matter, so
    /// reading the clock once here is harmless; library code never does.
    #[allow(clippy::disallowed_methods)]
    pub fn t0() -> std::time::Instant {
        std::time::Instant::now()
    }
}
