//! G.711 A-law and µ-law (ITU-T G.711), with our own lookup tables.
//!
//! The tables are computed at compile time from the segment/quantisation rules of
//! ITU-T G.711 §2–3, in the same integer arithmetic as the ITU-T G.191 reference
//! (`alaw_compress`/`ulaw_compress`), so encode and decode are bit-exact with it.

use super::{AudioCodec, CodecError, CodecKind, WaveformRepeat};

/// A-law decode table (G.711 Table 1a): code → 16-bit linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build_alaw_decode();
/// µ-law decode table (G.711 Table 2a): code → 16-bit linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_decode();
/// A-law encode table indexed by `(sample >> 3) + 4096` (A-law uses 13 significant bits).
static LINEAR_TO_ALAW: [u8; 8192] = build_alaw_encode();
/// µ-law encode table indexed by `(sample >> 2) + 8192` (µ-law uses 14 significant bits).
static LINEAR_TO_ULAW: [u8; 16384] = build_ulaw_encode();

const fn alaw_decode_one(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn ulaw_decode_one(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let mut t = (((u & 0x0f) as i32) << 3) + BIAS;
    t <<= ((u & 0x70) >> 4) as i32;
    if u & 0x80 != 0 {
        (BIAS - t) as i16
    } else {
        (t - BIAS) as i16
    }
}

/// A-law compression of a 13-bit value (`sample >> 3`), G.191 `alaw_compress`.
const fn alaw_encode13(v: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let (mask, mag) = if v >= 0 {
        (0xd5u8, v)
    } else {
        (0x55u8, -v - 1)
    };
    let mut seg = 0;
    while seg < 8 && mag > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let mut a = (seg as u8) << 4;
    if seg < 2 {
        a |= ((mag >> 1) & 0x0f) as u8;
    } else {
        a |= ((mag >> seg) & 0x0f) as u8;
    }
    a ^ mask
}

/// µ-law compression of a 14-bit value (`sample >> 2`), G.191 `ulaw_compress`.
const fn ulaw_encode14(v: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
    const CLIP: i32 = 8159;
    let (mask, mut mag) = if v < 0 { (0x7fu8, -v) } else { (0xffu8, v) };
    if mag > CLIP {
        mag = CLIP;
    }
    mag += 0x84 >> 2;
    let mut seg = 0;
    while seg < 8 && mag > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let u = ((seg as u8) << 4) | (((mag >> (seg + 1)) & 0x0f) as u8);
    u ^ mask
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_one(i as u8);
        i += 1;
    }
    t
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_one(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode13(i as i32 - 4096);
        i += 1;
    }
    t
}

const fn build_ulaw_encode() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_encode14(i as i32 - 8192);
        i += 1;
    }
    t
}

/// Encodes one 16-bit linear sample to A-law (G.711 §3, even bits inverted).
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    LINEAR_TO_ALAW[((sample >> 3) as i32 + 4096) as usize]
}

/// Decodes one A-law code to a 16-bit linear sample (G.711 §3).
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Encodes one 16-bit linear sample to µ-law (G.711 §2).
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    LINEAR_TO_ULAW[((sample >> 2) as i32 + 8192) as usize]
}

/// Decodes one µ-law code to a 16-bit linear sample (G.711 §2).
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Which G.711 companding law a [`G711`] codec uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// µ-law, RTP payload type 0 `PCMU` (RFC 3551 §4.5.14).
    Ulaw,
    /// A-law, RTP payload type 8 `PCMA` (RFC 3551 §4.5.14).
    Alaw,
}

/// G.711 codec state: stateless companding plus waveform-repeat concealment.
///
/// Guarantees: one byte per sample at 8 kHz; `decode` never fails (every byte is a
/// valid code); concealment repeats the last frame, fading out (G.711 Appendix I idea).
#[derive(Debug)]
pub struct G711 {
    law: G711Law,
    frame_samples: usize,
    plc: WaveformRepeat,
}

impl G711 {
    /// A G.711 codec for `law` with `ptime_ms` frames (8 samples per millisecond).
    pub fn new(law: G711Law, ptime_ms: u32) -> Self {
        let frame_samples = 8 * ptime_ms as usize;
        G711 {
            law,
            frame_samples,
            plc: WaveformRepeat::new(frame_samples),
        }
    }
}

impl AudioCodec for G711 {
    fn kind(&self) -> CodecKind {
        match self.law {
            G711Law::Ulaw => CodecKind::Pcmu,
            G711Law::Alaw => CodecKind::Pcma,
        }
    }

    fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.reserve(pcm.len());
        match self.law {
            G711Law::Ulaw => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
            G711Law::Alaw => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
        }
        Ok(())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        out.reserve(payload.len());
        match self.law {
            G711Law::Ulaw => out.extend(payload.iter().map(|&c| ulaw_to_linear(c))),
            G711Law::Alaw => out.extend(payload.iter().map(|&c| alaw_to_linear(c))),
        }
        self.plc.remember(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, _next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.plc.conceal(self.frame_samples, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_decode_values() {
        // Values from the ITU-T G.711 tables (and G.191 reference decoder).
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0x7e), -8);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(alaw_to_linear(0x80), 5504);
    }

    #[test]
    fn reference_encode_values() {
        // Silence encodes to the idle codes of G.711 (0xFF µ-law, 0xD5 A-law).
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(linear_to_ulaw(1000), 0xce);
        assert_eq!(linear_to_alaw(1000), 0xfa);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#x}");
            // µ-law has two zero codes (0x7F, 0xFF): both decode to 0, which encodes as 0xFF.
            let expect = if c == 0x7f { 0xff } else { c };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), expect, "µ-law {c:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let d = alaw_to_linear(linear_to_alaw(s));
            assert!(d >= last);
            last = d;
            let e = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            assert!((e - s as i32).abs() <= 1024, "µ-law error bounded at {s}");
        }
    }

    #[test]
    fn conceal_repeats_then_fades() {
        let mut c = G711::new(G711Law::Ulaw, 20);
        let pcm: Vec<i16> = (0..160).map(|i| ((i % 40) * 400 - 8000) as i16).collect();
        let mut enc = Vec::new();
        c.encode(&pcm, &mut enc).unwrap();
        let mut dec = Vec::new();
        c.decode(&enc, &mut dec).unwrap();
        let mut plc = Vec::new();
        c.conceal(None, &mut plc).unwrap();
        assert_eq!(plc.len(), 160);
        assert!(plc.iter().any(|&s| s != 0));
        for _ in 0..10 {
            plc.clear();
            c.conceal(None, &mut plc).unwrap();
        }
        assert!(plc.iter().all(|&s| s == 0), "long loss fades to silence");
    }

    fn checksum(values: impl Iterator<Item = u32>) -> u32 {
        values.fold(0u32, |c, v| c.wrapping_mul(31).wrapping_add(v))
    }

    /// All 65536 inputs and all 256 codes against an independent implementation:
    /// CPython's `audioop` (lin2ulaw/lin2alaw/ulaw2lin/alaw2lin, from the Sun/CCITT
    /// reference `g711.c`), reduced to checksums.
    #[test]
    fn exhaustive_match_with_reference_implementation() {
        let enc = |f: fn(i16) -> u8| checksum((i16::MIN..=i16::MAX).map(|s| f(s) as u32));
        assert_eq!(enc(linear_to_ulaw), 2_985_357_504);
        assert_eq!(enc(linear_to_alaw), 2_942_697_472);
        let dec = |f: fn(u8) -> i16| checksum((0..=255u8).map(|c| f(c) as u16 as u32));
        assert_eq!(dec(ulaw_to_linear), 2_256_732_160);
        assert_eq!(dec(alaw_to_linear), 67_108_864);
        assert_eq!(
            [
                alaw_to_linear(0),
                alaw_to_linear(1),
                alaw_to_linear(2),
                alaw_to_linear(3)
            ],
            [-5504, -5248, -6016, -5760]
        );
    }
}
