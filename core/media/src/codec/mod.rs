//! Audio codecs behind one trait, so the pipeline treats Opus, G.711 and G.722 alike.
//!
//! Every codec works on mono 16-bit PCM at its own [`CodecKind::sample_rate`] and on
//! frames of [`AudioCodec::frame_samples`] samples (the negotiated ptime). The RTP
//! timestamp advances at [`CodecKind::rtp_clock_rate`], which differs from the sample
//! rate for G.722 (RFC 3551 §4.5.2: 8000 for historical reasons, though it samples at
//! 16 kHz) and matches the 48 kHz Opus clock (RFC 7587 §4.1).

pub mod g711;
pub mod g722;
pub mod opus;

use thiserror::Error;

pub use self::g711::{G711, G711Law};
pub use self::g722::G722;
pub use self::opus::OpusCodec;

/// A codec failure. Input faults (a broken payload from the network) are
/// [`CodecError::BadPayload`]; misuse of the API is [`CodecError::BadFrame`];
/// [`CodecError::Library`] reports a failure inside libopus.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The remote sent a payload this codec cannot decode (remote fault: drop and conceal).
    #[error("undecodable {codec} payload: {reason}")]
    BadPayload {
        /// Codec name.
        codec: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The caller passed a PCM frame of the wrong length (local fault).
    #[error("{codec} expects {expected} samples per frame, got {got}")]
    BadFrame {
        /// Codec name.
        codec: &'static str,
        /// Samples per frame the codec was configured for.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// The codec cannot be set up with these parameters (local fault).
    #[error("unsupported {codec} configuration: {reason}")]
    Unsupported {
        /// Codec name.
        codec: &'static str,
        /// Why.
        reason: String,
    },
    /// libopus reported an internal error.
    #[error("libopus: {0}")]
    Library(String),
}

/// The codecs Vaxel speaks, with their RTP/SDP identities (RFC 3551 Table 4, RFC 7587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodecKind {
    /// Opus, dynamic payload type, `opus/48000/2` in SDP (RFC 7587 §7).
    Opus,
    /// G.722 SB-ADPCM 64 kbit/s, static payload type 9.
    G722,
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl CodecKind {
    /// Every supported codec, in Vaxel's default preference order (wideband first).
    pub const ALL: [CodecKind; 4] = [
        CodecKind::Opus,
        CodecKind::G722,
        CodecKind::Pcma,
        CodecKind::Pcmu,
    ];

    /// The encoding name used in `a=rtpmap` (RFC 4566 §6, RFC 3551 §6).
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecKind::Opus => "opus",
            CodecKind::G722 => "G722",
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
        }
    }

    /// The rate at which PCM is fed to and taken from the codec.
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::G722 => 16_000,
            CodecKind::Pcmu | CodecKind::Pcma => 8_000,
        }
    }

    /// The RTP timestamp clock rate, as written in `a=rtpmap`. G.722 says 8000 although it
    /// samples at 16 kHz (RFC 3551 §4.5.2), so its timestamps advance by half the samples.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::G722 | CodecKind::Pcmu | CodecKind::Pcma => 8_000,
        }
    }

    /// The channel count written in `a=rtpmap` (Opus always says 2, RFC 7587 §7).
    pub fn rtpmap_channels(self) -> Option<u8> {
        match self {
            CodecKind::Opus => Some(2),
            _ => None,
        }
    }

    /// The static payload type from RFC 3551 Table 4, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::Opus => None,
        }
    }

    /// The packet durations (ms) this codec can produce; the first is the default.
    pub fn supported_ptimes(self) -> &'static [u32] {
        match self {
            CodecKind::Opus => &[20, 10, 40, 60],
            _ => &[20, 10, 30, 40, 50, 60],
        }
    }

    /// RTP timestamp units per `samples` PCM samples at [`Self::sample_rate`].
    pub fn rtp_units(self, samples: usize) -> u32 {
        (samples as u64 * self.rtp_clock_rate() as u64 / self.sample_rate() as u64) as u32
    }

    /// Matches an `a=rtpmap` encoding name and clock rate (case-insensitive, RFC 4566 §6).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<CodecKind> {
        CodecKind::ALL.into_iter().find(|k| {
            k.encoding_name().eq_ignore_ascii_case(name) && k.rtp_clock_rate() == clock_rate
        })
    }

    /// The codec for a static payload type (RFC 3551 Table 4), if we support it.
    pub fn from_static_payload_type(pt: u8) -> Option<CodecKind> {
        CodecKind::ALL
            .into_iter()
            .find(|k| k.static_payload_type() == Some(pt))
    }

    /// Builds a codec instance for `ptime_ms` packets.
    pub fn build(self, ptime_ms: u32) -> Result<Box<dyn AudioCodec>, CodecError> {
        if !self.supported_ptimes().contains(&ptime_ms) {
            return Err(CodecError::Unsupported {
                codec: self.encoding_name(),
                reason: format!("ptime {ptime_ms} ms"),
            });
        }
        Ok(match self {
            CodecKind::Pcmu => Box::new(G711::new(G711Law::Ulaw, ptime_ms)),
            CodecKind::Pcma => Box::new(G711::new(G711Law::Alaw, ptime_ms)),
            CodecKind::G722 => Box::new(G722::new(ptime_ms)),
            CodecKind::Opus => Box::new(OpusCodec::new(ptime_ms)?),
        })
    }
}

/// One codec instance: an encoder and a decoder for one call leg.
///
/// Frames are mono PCM at `kind().sample_rate()`. `encode` appends one RTP payload,
/// `decode` appends the PCM of one payload, and `conceal` appends one frame of
/// replacement audio for a payload that never arrived (using `next`, the payload that
/// follows the gap, for in-band FEC where the codec has it).
pub trait AudioCodec: Send {
    /// Which codec this is.
    fn kind(&self) -> CodecKind;
    /// PCM samples per frame at the codec's sample rate.
    fn frame_samples(&self) -> usize;
    /// Encodes exactly one frame of [`Self::frame_samples`] samples, appending the payload.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes one payload, appending its PCM samples.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Appends one frame of concealment for a lost packet.
    fn conceal(&mut self, next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// The codec's name, as in SDP.
    fn name(&self) -> &'static str {
        self.kind().encoding_name()
    }
    /// PCM sample rate.
    fn sample_rate(&self) -> u32 {
        self.kind().sample_rate()
    }
    /// RTP timestamp clock rate (differs from the sample rate for G.722).
    fn rtp_clock_rate(&self) -> u32 {
        self.kind().rtp_clock_rate()
    }
}

/// Waveform-repeat packet loss concealment for codecs without their own (G.711, G.722).
///
/// Repeats the last good frame with a gain that drops by a quarter per further lost
/// frame; from the fifth lost frame in a row the output is silence. A simplified form of
/// ITU-T G.711 Appendix I (which also searches for the pitch period).
#[derive(Debug, Clone)]
pub struct WaveformRepeat {
    history: Vec<i16>,
    lost_in_row: u32,
}

impl WaveformRepeat {
    /// Concealment for frames of `frame_samples`.
    pub fn new(frame_samples: usize) -> Self {
        WaveformRepeat {
            history: vec![0; frame_samples],
            lost_in_row: 0,
        }
    }

    /// Records a good decoded frame.
    pub fn remember(&mut self, pcm: &[i16]) {
        self.lost_in_row = 0;
        if pcm.len() >= self.history.len() {
            let n = self.history.len();
            self.history.copy_from_slice(&pcm[pcm.len() - n..]);
        } else {
            self.history.rotate_left(pcm.len());
            let n = self.history.len();
            self.history[n - pcm.len()..].copy_from_slice(pcm);
        }
    }

    /// Appends `samples` of concealment.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.lost_in_row += 1;
        let gain = (1.0 - 0.25 * (self.lost_in_row - 1) as f32).max(0.0);
        let n = self.history.len().max(1);
        out.extend((0..samples).map(|i| (self.history[i % n] as f32 * gain) as i16));
    }
}
