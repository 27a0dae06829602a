//! Media without IO: SDP offer/answer, RTP/RTCP, SRTP, jitter buffer, DTMF, codecs,
//! tones, WAV prompts and the conference mixer for the Vaxel phone and engine.
#![doc = include_str!("../README.md")]

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
