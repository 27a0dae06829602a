//! Opus (RFC 6716) through libopus, configured for VoIP: 48 kHz mono, 10 or 20 ms frames
//! (RFC 7587 §4.2 allows 2.5–120 ms; we offer what SIP phones use), in-band FEC and PLC.

use super::{AudioCodec, CodecError, CodecKind};
use opus::{Application, Bitrate, Channels, Decoder, Encoder};

/// Largest Opus packet we produce or accept (RFC 6716 §3.4 caps a frame at 1275 bytes).
const MAX_PACKET: usize = 1275;

/// An Opus encoder/decoder pair for one call leg.
///
/// Guarantees: `encode` produces one RFC 7587 payload per frame; `conceal` uses the FEC
/// data in the next packet when given (RFC 6716 §2.1.7, `decode_fec`), otherwise libopus'
/// own packet loss concealment; `decode` rejects malformed payloads with
/// [`CodecError::BadPayload`] instead of panicking.
pub struct OpusCodec {
    enc: Encoder,
    dec: Decoder,
    frame_samples: usize,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for OpusCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusCodec")
            .field("frame_samples", &self.frame_samples)
            .finish()
    }
}

fn lib(e: opus::Error) -> CodecError {
    CodecError::Library(e.to_string())
}

impl OpusCodec {
    /// An Opus codec with `ptime_ms` frames (10, 20, 40 or 60), 32 kbit/s VBR, FEC on,
    /// tuned for 10 % expected loss so FEC data is present.
    pub fn new(ptime_ms: u32) -> Result<Self, CodecError> {
        if ![10, 20, 40, 60].contains(&ptime_ms) {
            return Err(CodecError::Unsupported {
                codec: "opus",
                reason: format!("ptime {ptime_ms} ms"),
            });
        }
        let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).map_err(lib)?;
        enc.set_bitrate(Bitrate::Bits(32_000)).map_err(lib)?;
        enc.set_inband_fec(true).map_err(lib)?;
        enc.set_packet_loss_perc(10).map_err(lib)?;
        let dec = Decoder::new(48_000, Channels::Mono).map_err(lib)?;
        let frame_samples = 48 * ptime_ms as usize;
        Ok(OpusCodec {
            enc,
            dec,
            frame_samples,
            scratch: vec![0; 48 * 120],
        })
    }

    /// Tells the encoder how much loss the far end reports (RTCP fraction lost), so it
    /// spends more bits on FEC when the path is lossy.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        self.enc
            .set_packet_loss_perc(percent.min(100) as i32)
            .map_err(lib)
    }
}

impl AudioCodec for OpusCodec {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }

    fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if pcm.len() != self.frame_samples {
            return Err(CodecError::BadFrame {
                codec: "opus",
                expected: self.frame_samples,
                got: pcm.len(),
            });
        }
        let start = out.len();
        out.resize(start + MAX_PACKET, 0);
        let n = self.enc.encode(pcm, &mut out[start..]).map_err(lib)?;
        out.truncate(start + n);
        Ok(())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() || payload.len() > MAX_PACKET * 3 {
            return Err(CodecError::BadPayload {
                codec: "opus",
                reason: format!("{} bytes", payload.len()),
            });
        }
        let n = self
            .dec
            .decode(payload, &mut self.scratch, false)
            .map_err(|e| CodecError::BadPayload {
                codec: "opus",
                reason: e.to_string(),
            })?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    fn conceal(&mut self, next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError> {
        let n = self.frame_samples;
        let r = match next {
            // Recover the lost frame from the LBRR data carried in the next packet.
            Some(p) if !p.is_empty() => self.dec.decode(p, &mut self.scratch[..n], true),
            _ => self.dec.decode(&[], &mut self.scratch[..n], false),
        };
        let got = match r {
            Ok(got) => got,
            // A corrupt next packet: fall back to plain PLC.
            Err(_) => self
                .dec
                .decode(&[], &mut self.scratch[..n], false)
                .map_err(lib)?,
        };
        out.extend_from_slice(&self.scratch[..got]);
        out.resize(out.len() + (n - got.min(n)), 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::{goertzel_power, sine};

    fn run(ptime: u32) {
        let mut c = OpusCodec::new(ptime).unwrap();
        let n = c.frame_samples();
        let pcm = sine(48_000, 800.0, 8000.0, 48_000);
        let mut dec = Vec::new();
        for f in pcm.chunks_exact(n) {
            let mut enc = Vec::new();
            c.encode(f, &mut enc).unwrap();
            assert!(!enc.is_empty() && enc.len() < 400);
            c.decode(&enc, &mut dec).unwrap();
        }
        assert_eq!(dec.len(), pcm.len());
        let tail = &dec[24_000..];
        assert!(goertzel_power(tail, 48_000, 800.0) > 50.0 * goertzel_power(tail, 48_000, 1300.0));
    }

    #[test]
    fn round_trip_20ms() {
        run(20);
    }

    #[test]
    fn round_trip_10ms() {
        run(10);
    }

    #[test]
    fn fec_and_plc_fill_a_lost_frame() {
        let mut c = OpusCodec::new(20).unwrap();
        let pcm = sine(48_000, 500.0, 8000.0, 48_000);
        let packets: Vec<Vec<u8>> = pcm
            .chunks_exact(960)
            .map(|f| {
                let mut v = Vec::new();
                c.encode(f, &mut v).unwrap();
                v
            })
            .collect();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == 30 {
                c.conceal(Some(&packets[31]), &mut out).unwrap();
            } else if i == 40 {
                c.conceal(None, &mut out).unwrap();
            } else {
                c.decode(p, &mut out).unwrap();
            }
        }
        assert_eq!(out.len(), pcm.len());
        let fec = &out[30 * 960..31 * 960];
        let plc = &out[40 * 960..41 * 960];
        assert!(goertzel_power(fec, 48_000, 500.0) > 10.0 * goertzel_power(fec, 48_000, 1500.0));
        assert!(plc.iter().any(|&s| s != 0));
    }

    #[test]
    fn garbage_payload_is_a_typed_error() {
        let mut c = OpusCodec::new(20).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            c.decode(&[], &mut out),
            Err(CodecError::BadPayload { .. })
        ));
        // TOC byte announcing code 3 with a frame count of 0 is invalid (RFC 6716 §3.2.5).
        let r = c.decode(&[0x03, 0x00], &mut out);
        assert!(matches!(r, Err(CodecError::BadPayload { .. })), "{r:?}");
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..(seed % 90 + 1))
                .map(|i| (i * 37 + seed * 11) as u8)
                .collect();
            let _ = c.decode(&junk, &mut out);
        }
    }
}
