//! The fixed pipeline format and the conversions to and from a device's own
//! format. All of it runs on the media thread: the cpal callback only copies
//! raw bytes (ARCHITECTURE.md §3.6).

use std::fmt;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::error::AudioError;

/// The pipeline's sample rate: every frame the media thread sees is 48 kHz mono.
pub const PIPELINE_RATE: u32 = 48_000;

/// Samples in one pipeline frame: 10 ms at [`PIPELINE_RATE`].
pub const FRAME_SAMPLES: usize = 480;

/// One 10 ms mono frame at 48 kHz, samples in `-1.0..=1.0`.
pub type Frame = [f32; FRAME_SAMPLES];

/// A sample encoding this crate converts from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleKind {
    /// Unsigned 8-bit, silence at 128.
    U8,
    /// Signed 16-bit.
    I16,
    /// Signed 24-bit in the low bytes of a 4-byte container (cpal's `I24`).
    I24,
    /// Signed 32-bit.
    I32,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl SampleKind {
    /// The cpal format, if this crate can convert it.
    pub fn from_cpal(format: cpal::SampleFormat) -> Option<Self> {
        Some(match format {
            cpal::SampleFormat::U8 => SampleKind::U8,
            cpal::SampleFormat::I16 => SampleKind::I16,
            cpal::SampleFormat::I24 => SampleKind::I24,
            cpal::SampleFormat::I32 => SampleKind::I32,
            cpal::SampleFormat::F32 => SampleKind::F32,
            cpal::SampleFormat::F64 => SampleKind::F64,
            _ => return None,
        })
    }

    /// The matching cpal format.
    pub fn to_cpal(self) -> cpal::SampleFormat {
        match self {
            SampleKind::U8 => cpal::SampleFormat::U8,
            SampleKind::I16 => cpal::SampleFormat::I16,
            SampleKind::I24 => cpal::SampleFormat::I24,
            SampleKind::I32 => cpal::SampleFormat::I32,
            SampleKind::F32 => cpal::SampleFormat::F32,
            SampleKind::F64 => cpal::SampleFormat::F64,
        }
    }

    /// Bytes per sample in cpal's buffers.
    pub fn bytes(self) -> usize {
        match self {
            SampleKind::U8 => 1,
            SampleKind::I16 => 2,
            SampleKind::I24 | SampleKind::I32 | SampleKind::F32 => 4,
            SampleKind::F64 => 8,
        }
    }

    /// How much we like running a stream in this encoding: float needs no
    /// scaling, and wider integers lose nothing.
    pub(crate) fn preference(self) -> u8 {
        match self {
            SampleKind::F32 => 6,
            SampleKind::I16 => 5,
            SampleKind::I32 => 4,
            SampleKind::I24 => 3,
            SampleKind::F64 => 2,
            SampleKind::U8 => 1,
        }
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            SampleKind::U8 => (b[0] as f32 - 128.0) / 128.0,
            SampleKind::I16 => i16::from_ne_bytes([b[0], b[1]]) as f32 / 32768.0,
            SampleKind::I24 => {
                // Sign-extend the low 24 bits of the container.
                let v = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                ((v << 8) >> 8) as f32 / 8_388_608.0
            }
            SampleKind::I32 => {
                i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
            }
            SampleKind::F32 => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            SampleKind::F64 => {
                f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    }

    fn encode(self, x: f32, out: &mut Vec<u8>) {
        let x = if x.is_finite() {
            x.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        match self {
            SampleKind::U8 => out.push((x * 127.0 + 128.0).round() as u8),
            SampleKind::I16 => out.extend_from_slice(&((x * 32767.0).round() as i16).to_ne_bytes()),
            SampleKind::I24 => {
                out.extend_from_slice(&((x * 8_388_607.0).round() as i32).to_ne_bytes())
            }
            SampleKind::I32 => {
                out.extend_from_slice(&((x as f64 * 2_147_483_647.0).round() as i32).to_ne_bytes())
            }
            SampleKind::F32 => out.extend_from_slice(&x.to_ne_bytes()),
            SampleKind::F64 => out.extend_from_slice(&(x as f64).to_ne_bytes()),
        }
    }

    /// The byte that fills silence, for callbacks that pad a short read.
    pub(crate) fn silence_byte(self) -> u8 {
        if self == SampleKind::U8 { 0x80 } else { 0 }
    }
}

impl fmt::Display for SampleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SampleKind::U8 => "u8",
            SampleKind::I16 => "s16",
            SampleKind::I24 => "s24in32",
            SampleKind::I32 => "s32",
            SampleKind::F32 => "f32",
            SampleKind::F64 => "f64",
        })
    }
}

/// The format a stream actually runs in on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFormat {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Interleaved channel count (at least 1).
    pub channels: u16,
    /// Sample encoding.
    pub sample: SampleKind,
}

impl DeviceFormat {
    /// Bytes in one interleaved frame (one sample per channel).
    pub fn frame_bytes(&self) -> usize {
        self.channels as usize * self.sample.bytes()
    }

    /// Bytes of `ms` milliseconds of audio.
    pub fn bytes_for_ms(&self, ms: u32) -> usize {
        (self.rate as usize * ms as usize / 1000).max(1) * self.frame_bytes()
    }

    /// Milliseconds of audio in `bytes`.
    pub fn ms_for_bytes(&self, bytes: usize) -> f64 {
        (bytes / self.frame_bytes()) as f64 * 1000.0 / self.rate as f64
    }

    fn check(&self) -> Result<(), AudioError> {
        if self.channels == 0 || self.rate == 0 {
            return Err(AudioError::InvalidArgument(format!(
                "device format needs a rate and a channel: {self:?}"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for DeviceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz {} ch {}", self.rate, self.channels, self.sample)
    }
}

/// A 10 ms-chunk mono resampler between a device rate and the pipeline rate.
struct Resampling {
    resampler: Fft<f32>,
    chunk: usize,
    out: Vec<f32>,
}

impl Resampling {
    fn new(from: u32, to: u32) -> Result<Option<Self>, AudioError> {
        if from == to {
            return Ok(None);
        }
        let chunk = (from as usize / 100).max(1);
        let resampler = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
            .map_err(|e| AudioError::UnsupportedDevice {
                device: format!("{from} Hz"),
                reason: format!("cannot resample {from} Hz to {to} Hz: {e}"),
            })?;
        let out = vec![0.0; resampler.output_frames_max()];
        Ok(Some(Resampling {
            resampler,
            chunk,
            out,
        }))
    }

    /// Resamples exactly one chunk; returns the produced samples.
    fn run(&mut self, input: &[f32]) -> &[f32] {
        debug_assert_eq!(input.len(), self.chunk);
        let frames_out = self.resampler.output_frames_next();
        if self.out.len() < frames_out {
            self.out.resize(frames_out, 0.0);
        }
        let produced = match (
            InterleavedSlice::new(input, 1, self.chunk),
            InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out),
        ) {
            (Ok(i), Ok(mut o)) => self
                .resampler
                .process_into_buffer(&i, &mut o, None)
                .map(|(_, n)| n)
                .unwrap_or(0),
            _ => 0,
        };
        &self.out[..produced]
    }

    fn delay_frames(&self) -> usize {
        self.resampler.output_delay()
    }
}

/// Turns the raw bytes a capture callback copied into 10 ms pipeline frames:
/// decode, mix down to mono, resample to 48 kHz, cut into frames.
pub struct CaptureConverter {
    format: DeviceFormat,
    partial: Vec<u8>,
    mono: Vec<f32>,
    resampling: Option<Resampling>,
    pipeline: Vec<f32>,
}

impl CaptureConverter {
    /// A converter for a stream running in `format`.
    pub fn new(format: DeviceFormat) -> Result<Self, AudioError> {
        format.check()?;
        Ok(CaptureConverter {
            format,
            partial: Vec::with_capacity(format.frame_bytes()),
            mono: Vec::with_capacity(format.rate as usize / 50),
            resampling: Resampling::new(format.rate, PIPELINE_RATE)?,
            pipeline: Vec::with_capacity(FRAME_SAMPLES * 4),
        })
    }

    /// The device format this converter reads.
    pub fn format(&self) -> DeviceFormat {
        self.format
    }

    /// Feeds raw interleaved bytes as the device produced them. A trailing
    /// partial frame is kept for the next call.
    pub fn push_bytes(&mut self, mut bytes: &[u8]) {
        let fb = self.format.frame_bytes();
        if !self.partial.is_empty() {
            let need = fb - self.partial.len();
            let take = need.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == fb {
                let frame = std::mem::take(&mut self.partial);
                self.push_frames(&frame);
                self.partial = frame;
                self.partial.clear();
            }
        }
        let whole = bytes.len() / fb * fb;
        self.push_frames(&bytes[..whole]);
        self.partial.extend_from_slice(&bytes[whole..]);
    }

    fn push_frames(&mut self, bytes: &[u8]) {
        let sb = self.format.sample.bytes();
        let ch = self.format.channels as usize;
        let scale = 1.0 / ch as f32;
        for frame in bytes.chunks_exact(self.format.frame_bytes()) {
            let sum: f32 = frame
                .chunks_exact(sb)
                .map(|s| self.format.sample.decode(s))
                .sum();
            self.mono.push(sum * scale);
        }
        match &mut self.resampling {
            None => {
                self.pipeline.append(&mut self.mono);
            }
            Some(r) => {
                let mut start = 0;
                while self.mono.len() - start >= r.chunk {
                    let produced = r.run(&self.mono[start..start + r.chunk]);
                    self.pipeline.extend_from_slice(produced);
                    start += r.chunk;
                }
                self.mono.drain(..start);
            }
        }
    }

    /// Takes one 10 ms pipeline frame if a whole one is ready.
    pub fn pop_frame(&mut self, out: &mut Frame) -> bool {
        if self.pipeline.len() < FRAME_SAMPLES {
            return false;
        }
        out.copy_from_slice(&self.pipeline[..FRAME_SAMPLES]);
        self.pipeline.drain(..FRAME_SAMPLES);
        true
    }

    /// Pipeline samples converted but not yet taken, plus device samples
    /// waiting for a whole resampler chunk, in milliseconds.
    pub fn buffered_ms(&self) -> f64 {
        self.pipeline.len() as f64 * 1000.0 / PIPELINE_RATE as f64
            + self.mono.len() as f64 * 1000.0 / self.format.rate as f64
    }

    /// The resampler's own delay in milliseconds (0 when the device runs at 48 kHz).
    pub fn resampler_delay_ms(&self) -> f64 {
        self.resampling.as_ref().map_or(0.0, |r| {
            r.delay_frames() as f64 * 1000.0 / PIPELINE_RATE as f64
        })
    }
}

/// Turns 10 ms pipeline frames into the raw bytes a playback callback copies
/// out: resample to the device rate, copy to every channel, encode.
pub struct PlaybackConverter {
    format: DeviceFormat,
    resampling: Option<Resampling>,
    bytes: Vec<u8>,
}

impl PlaybackConverter {
    /// A converter for a stream running in `format`.
    pub fn new(format: DeviceFormat) -> Result<Self, AudioError> {
        format.check()?;
        // The resampler takes fixed 10 ms chunks of the pipeline side.
        Ok(PlaybackConverter {
            format,
            resampling: Resampling::new(PIPELINE_RATE, format.rate)?,
            bytes: Vec::with_capacity(format.bytes_for_ms(20)),
        })
    }

    /// The device format this converter writes.
    pub fn format(&self) -> DeviceFormat {
        self.format
    }

    /// Converts one frame; the returned bytes hold whole device frames
    /// (usually 10 ms' worth, give or take the resampler's chunking).
    pub fn convert(&mut self, frame: &Frame) -> &[u8] {
        self.bytes.clear();
        let (samples, sample, ch): (&[f32], _, _) = match &mut self.resampling {
            None => (&frame[..], self.format.sample, self.format.channels),
            Some(r) => (r.run(frame), self.format.sample, self.format.channels),
        };
        for &x in samples {
            for _ in 0..ch {
                sample.encode(x, &mut self.bytes);
            }
        }
        &self.bytes
    }

    /// The resampler's own delay in milliseconds (0 when the device runs at 48 kHz).
    pub fn resampler_delay_ms(&self) -> f64 {
        self.resampling.as_ref().map_or(0.0, |r| {
            r.delay_frames() as f64 * 1000.0 / self.format.rate as f64
        })
    }
}

/// Resamples a whole mono clip (a prompt, a test recording) from `from` Hz to
/// `to` Hz, trimming the resampler's start-up delay. Not for real-time use.
pub fn resample_clip(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let err = |e: String| AudioError::InvalidArgument(format!("resample {from}→{to} Hz: {e}"));
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(e.to_string()))?;
    let len = r.process_all_needed_output_len(input.len());
    let mut out = vec![0.0f32; len];
    let i = InterleavedSlice::new(input, 1, input.len()).map_err(|e| err(e.to_string()))?;
    let mut o = InterleavedSlice::new_mut(&mut out[..], 1, len).map_err(|e| err(e.to_string()))?;
    let (_, produced) = r
        .process_all_into_buffer(&i, &mut o, input.len(), None)
        .map_err(|e| err(e.to_string()))?;
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{goertzel_power, rms, tone};

    fn encode_all(kind: SampleKind, channels: u16, xs: &[f32]) -> Vec<u8> {
        let mut v = Vec::new();
        for &x in xs {
            for _ in 0..channels {
                kind.encode(x, &mut v);
            }
        }
        v
    }

    #[test]
    fn every_encoding_round_trips() {
        for kind in [
            SampleKind::U8,
            SampleKind::I16,
            SampleKind::I24,
            SampleKind::I32,
            SampleKind::F32,
            SampleKind::F64,
        ] {
            for x in [-1.0f32, -0.5, 0.0, 0.25, 0.999] {
                let mut b = Vec::new();
                kind.encode(x, &mut b);
                assert_eq!(b.len(), kind.bytes());
                let y = kind.decode(&b);
                let tol = if kind == SampleKind::U8 { 0.01 } else { 1e-4 };
                assert!((x - y).abs() < tol, "{kind}: {x} → {y}");
            }
        }
        let mut b = Vec::new();
        SampleKind::I16.encode(f32::NAN, &mut b);
        assert_eq!(SampleKind::I16.decode(&b), 0.0);
    }

    #[test]
    fn capture_at_48k_mono_is_a_pass_through() {
        let fmt = DeviceFormat {
            rate: 48_000,
            channels: 1,
            sample: SampleKind::F32,
        };
        let mut c = CaptureConverter::new(fmt).unwrap();
        let x = tone(1000.0, 0.5, 960, 48_000);
        let bytes = encode_all(SampleKind::F32, 1, &x);
        // Odd split: a partial frame must wait for its remaining bytes.
        c.push_bytes(&bytes[..1001]);
        c.push_bytes(&bytes[1001..]);
        let mut f = [0.0; FRAME_SAMPLES];
        assert!(c.pop_frame(&mut f));
        assert_eq!(&f[..], &x[..480]);
        assert!(c.pop_frame(&mut f));
        assert_eq!(&f[..], &x[480..]);
        assert!(!c.pop_frame(&mut f));
    }

    #[test]
    fn capture_from_44k1_stereo_s16_resamples_and_mixes_down() {
        let fmt = DeviceFormat {
            rate: 44_100,
            channels: 2,
            sample: SampleKind::I16,
        };
        let mut c = CaptureConverter::new(fmt).unwrap();
        let x = tone(1000.0, 0.5, 44_100, 44_100);
        c.push_bytes(&encode_all(SampleKind::I16, 2, &x));
        let mut got = Vec::new();
        let mut f = [0.0; FRAME_SAMPLES];
        while c.pop_frame(&mut f) {
            got.extend_from_slice(&f);
        }
        // One second in, one second (less the resampler delay) out.
        assert!(got.len() >= 46_000 && got.len() <= 48_000, "{}", got.len());
        let tail = &got[got.len() - 9_600..];
        assert!(
            (rms(tail) - 0.5 / 2f32.sqrt()).abs() < 0.02,
            "rms {}",
            rms(tail)
        );
        let on = goertzel_power(tail, 1000.0, 48_000);
        let off = goertzel_power(tail, 1300.0, 48_000);
        assert!(on > 1000.0 * off, "1 kHz {on} vs 1.3 kHz {off}");
        assert!(c.resampler_delay_ms() > 0.0);
    }

    #[test]
    fn playback_to_44k1_stereo_f32_keeps_the_tone() {
        let fmt = DeviceFormat {
            rate: 44_100,
            channels: 2,
            sample: SampleKind::F32,
        };
        let mut p = PlaybackConverter::new(fmt).unwrap();
        let x = tone(1000.0, 0.5, 48_000, 48_000);
        let mut bytes = Vec::new();
        for chunk in x.chunks_exact(FRAME_SAMPLES) {
            let f: &Frame = chunk.try_into().unwrap();
            bytes.extend_from_slice(p.convert(f));
        }
        assert_eq!(bytes.len() % fmt.frame_bytes(), 0);
        let left: Vec<f32> = bytes
            .chunks_exact(8)
            .map(|fr| SampleKind::F32.decode(&fr[..4]))
            .collect();
        assert!(
            left.len() > 43_000 && left.len() <= 44_100,
            "{}",
            left.len()
        );
        let tail = &left[left.len() - 8_820..];
        assert!(
            goertzel_power(tail, 1000.0, 44_100) > 1000.0 * goertzel_power(tail, 700.0, 44_100)
        );
    }

    #[test]
    fn clips_resample_to_the_right_length() {
        let x = tone(440.0, 0.3, 22_050, 22_050);
        let y = resample_clip(&x, 22_050, 48_000).unwrap();
        assert!((y.len() as i64 - 48_000).abs() <= 2, "{}", y.len());
        assert!(goertzel_power(&y, 440.0, 48_000) > 100.0 * goertzel_power(&y, 600.0, 48_000));
    }

    #[test]
    fn bad_formats_are_caller_errors() {
        let fmt = DeviceFormat {
            rate: 48_000,
            channels: 0,
            sample: SampleKind::F32,
        };
        assert!(CaptureConverter::new(fmt).is_err());
        assert!(PlaybackConverter::new(fmt).is_err());
    }
}
