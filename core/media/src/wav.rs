//! WAV prompts and recordings over in-memory readers and writers (the driver does the
//! file IO). Reads 8/16/24/32-bit integer and 32-bit float PCM, mono or multi-channel,
//! at any rate up to 384 kHz, and converts it to mono 16-bit at the stream's rate;
//! records mono 16-bit PCM.

use crate::resample::Resampler;
use hound::{SampleFormat, WavReader, WavSpec, WavWriter};
use std::io::{Read, Seek, Write};
use std::time::Duration;
use thiserror::Error;

/// Longest prompt we load: 30 minutes at 48 kHz stereo, in samples (guards memory against
/// a header that lies about its size).
pub const MAX_SAMPLES: u64 = 48_000 * 2 * 60 * 30;

/// Why a WAV could not be read or written. `Malformed` and `Unsupported` are faults of the
/// file (the admin's upload); `Io` is the writer's.
#[derive(Debug, Error)]
pub enum WavError {
    /// Not a valid WAV file (bad header, truncated data...).
    #[error("malformed WAV: {0}")]
    Malformed(String),
    /// A valid WAV we do not play (e.g. compressed, or 0 channels).
    #[error("unsupported WAV: {0}")]
    Unsupported(String),
    /// The underlying writer failed.
    #[error("WAV IO: {0}")]
    Io(String),
}

/// Maps a hound error met while reading: an IO error there means the bytes ran out or
/// were unreadable, which is the file's fault.
fn classify(e: hound::Error) -> WavError {
    match e {
        hound::Error::IoError(io) => WavError::Malformed(format!("truncated or unreadable: {io}")),
        hound::Error::FormatError(m) => WavError::Malformed(m.into()),
        hound::Error::TooWide => WavError::Malformed("sample wider than its container".into()),
        hound::Error::Unsupported => WavError::Unsupported("format".into()),
        hound::Error::InvalidSampleFormat => WavError::Unsupported("sample format".into()),
        other => WavError::Malformed(other.to_string()),
    }
}

/// A decoded prompt: mono 16-bit samples at one rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    samples: Vec<i16>,
    rate: u32,
}

impl Prompt {
    /// Decodes a WAV from `reader`, mixes it to mono and resamples it to `rate`.
    pub fn from_wav<R: Read>(reader: R, rate: u32) -> Result<Self, WavError> {
        let mut wav = WavReader::new(reader).map_err(classify)?;
        let spec = wav.spec();
        let channels = spec.channels as usize;
        if channels == 0 {
            return Err(WavError::Unsupported("0 channels".into()));
        }
        if !(1000..=384_000).contains(&spec.sample_rate) {
            return Err(WavError::Unsupported(format!("{} Hz", spec.sample_rate)));
        }
        if wav.len() as u64 > MAX_SAMPLES {
            return Err(WavError::Unsupported(format!(
                "{} samples is too long",
                wav.len()
            )));
        }
        let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
            (SampleFormat::Float, 32) => wav
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(classify)?,
            (SampleFormat::Int, bits @ 1..=32) => {
                let scale = 1.0 / (1u64 << (bits - 1)) as f32;
                wav.samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(classify)?
            }
            (f, b) => return Err(WavError::Unsupported(format!("{f:?} {b}-bit"))),
        };
        let mono: Vec<i16> = interleaved
            .chunks(channels)
            .map(|frame| {
                let avg = frame.iter().sum::<f32>() / channels as f32;
                crate::dsp::to_i16(avg.clamp(-1.0, 1.0) * 32767.0)
            })
            .collect();
        let samples = if spec.sample_rate == rate {
            mono
        } else {
            let mut r = Resampler::new(spec.sample_rate, rate)
                .map_err(|e| WavError::Unsupported(e.to_string()))?;
            let mut out =
                Vec::with_capacity(mono.len() * rate as usize / spec.sample_rate as usize + 16);
            r.process(&mono, &mut out);
            r.flush(&mut out);
            out
        };
        Ok(Prompt { samples, rate })
    }

    /// A prompt from samples already at `rate`.
    pub fn from_samples(samples: Vec<i16>, rate: u32) -> Self {
        Prompt { samples, rate }
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / self.rate.max(1) as u64)
    }
}

/// Plays a [`Prompt`] into a stream, frame by frame.
#[derive(Debug, Clone)]
pub struct PromptPlayer {
    prompt: std::sync::Arc<Prompt>,
    pos: usize,
    looping: bool,
}

impl PromptPlayer {
    /// A player from the start of `prompt`; `looping` repeats it (music on hold).
    pub fn new(prompt: std::sync::Arc<Prompt>, looping: bool) -> Self {
        PromptPlayer {
            prompt,
            pos: 0,
            looping,
        }
    }

    /// Fills `out` with the next samples, silence after the end; returns how many samples
    /// came from the prompt.
    pub fn read(&mut self, out: &mut [i16]) -> usize {
        let src = self.prompt.samples();
        let mut written = 0;
        while written < out.len() {
            if self.pos >= src.len() {
                if self.looping && !src.is_empty() {
                    self.pos = 0;
                } else {
                    break;
                }
            }
            let n = (out.len() - written).min(src.len() - self.pos);
            out[written..written + n].copy_from_slice(&src[self.pos..self.pos + n]);
            self.pos += n;
            written += n;
        }
        out[written..].fill(0);
        written
    }

    /// Whether a non-looping prompt has been played to the end.
    pub fn is_finished(&self) -> bool {
        !self.looping && self.pos >= self.prompt.samples().len()
    }
}

/// Records a mono 16-bit stream as WAV into any `Write + Seek` (e.g. `Cursor<Vec<u8>>`).
pub struct WavRecorder<W: Write + Seek> {
    writer: WavWriter<W>,
}

impl<W: Write + Seek> std::fmt::Debug for WavRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("spec", &self.writer.spec())
            .finish()
    }
}

fn write_error(e: hound::Error) -> WavError {
    match e {
        hound::Error::IoError(io) => WavError::Io(io.to_string()),
        other => WavError::Io(other.to_string()),
    }
}

impl<W: Write + Seek> WavRecorder<W> {
    /// Starts a recording at `rate`.
    pub fn new(out: W, rate: u32) -> Result<Self, WavError> {
        let spec = WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        Ok(WavRecorder {
            writer: WavWriter::new(out, spec).map_err(write_error)?,
        })
    }

    /// Appends samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let mut w = self.writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w.write_sample(s);
        }
        w.flush().map_err(write_error)
    }

    /// Writes the final header lengths. Without this the file is still playable by most
    /// tools but says it is empty.
    pub fn finish(self) -> Result<(), WavError> {
        self.writer.finalize().map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::{goertzel_power, sine};
    use std::io::Cursor;
    use std::sync::Arc;

    fn wav_bytes(spec: WavSpec, frames: usize, freq: f64) -> Vec<u8> {
        let mut c = Cursor::new(Vec::new());
        {
            let mut w = WavWriter::new(&mut c, spec).unwrap();
            for n in 0..frames {
                let x = (2.0 * std::f64::consts::PI * freq * n as f64 / spec.sample_rate as f64)
                    .sin()
                    * 0.5;
                for _ in 0..spec.channels {
                    match (spec.sample_format, spec.bits_per_sample) {
                        (SampleFormat::Float, _) => w.write_sample(x as f32).unwrap(),
                        (_, 8) => w.write_sample((x * 127.0) as i8).unwrap(),
                        (_, 16) => w.write_sample((x * 32767.0) as i16).unwrap(),
                        (_, b) => w
                            .write_sample((x * ((1i64 << (b - 1)) - 1) as f64) as i32)
                            .unwrap(),
                    }
                }
            }
            w.finalize().unwrap();
        }
        c.into_inner()
    }

    #[test]
    fn reads_common_formats_at_stream_rate() {
        let cases = [
            (8000, 1, 16, SampleFormat::Int),
            (16000, 1, 16, SampleFormat::Int),
            (44100, 2, 16, SampleFormat::Int),
            (48000, 2, 16, SampleFormat::Int),
            (8000, 1, 8, SampleFormat::Int),
            (22050, 1, 24, SampleFormat::Int),
            (48000, 1, 32, SampleFormat::Float),
        ];
        for (rate, channels, bits, fmt) in cases {
            let spec = WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format: fmt,
            };
            let bytes = wav_bytes(spec, rate as usize / 2, 440.0);
            for target in [8000, 16000, 48000] {
                let p = Prompt::from_wav(bytes.as_slice(), target).unwrap();
                assert_eq!(
                    p.samples().len(),
                    target as usize / 2,
                    "{rate}/{channels}/{bits} -> {target}"
                );
                let mid = &p.samples()[p.samples().len() / 4..p.samples().len() * 3 / 4];
                let want = goertzel_power(&sine(target, 440.0, 16383.0, mid.len()), target, 440.0);
                let got = goertzel_power(mid, target, 440.0);
                assert!(
                    (got / want - 1.0).abs() < 0.15,
                    "{rate}/{channels}/{bits} -> {target}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn broken_wavs_are_typed_errors() {
        let spec = WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let good = wav_bytes(spec, 800, 440.0);
        assert!(matches!(
            Prompt::from_wav(&b"RIFF"[..], 8000),
            Err(WavError::Malformed(_))
        ));
        assert!(matches!(
            Prompt::from_wav(&b"not a wav file at all"[..], 8000),
            Err(WavError::Malformed(_))
        ));
        assert!(matches!(
            Prompt::from_wav(&good[..good.len() - 101], 8000),
            Err(WavError::Malformed(_))
        ));
        let mut bad_rate = good.clone();
        bad_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(Prompt::from_wav(bad_rate.as_slice(), 8000).is_err());
        let mut no_channels = good.clone();
        no_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(Prompt::from_wav(no_channels.as_slice(), 8000).is_err());
        let mut compressed = good.clone();
        compressed[20..22].copy_from_slice(&2u16.to_le_bytes()); // ADPCM
        assert!(Prompt::from_wav(compressed.as_slice(), 8000).is_err());
        // Byte soup never panics.
        let mut x = 7u32;
        for _ in 0..500 {
            let mut b = good.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x >> 8) as usize % 60;
                b[i] = (x >> 24) as u8;
            }
            let _ = Prompt::from_wav(b.as_slice(), 16000);
        }
    }

    #[test]
    fn play_and_record_round_trip() {
        let p = Arc::new(Prompt::from_samples(
            (0..1000).map(|i| i as i16).collect(),
            8000,
        ));
        let mut player = PromptPlayer::new(p.clone(), false);
        let mut buf = Cursor::new(Vec::new());
        let mut rec = WavRecorder::new(&mut buf, 8000).unwrap();
        let mut frame = [0i16; 160];
        let mut total = 0;
        while !player.is_finished() {
            total += player.read(&mut frame);
            rec.write(&frame).unwrap();
        }
        rec.finish().unwrap();
        assert_eq!(total, 1000);
        let back = Prompt::from_wav(buf.get_ref().as_slice(), 8000).unwrap();
        assert_eq!(&back.samples()[..1000], p.samples());
        assert!(
            back.samples()[1000..].iter().all(|&s| s == 0),
            "silence after the end"
        );
        let mut looping = PromptPlayer::new(p, true);
        let mut big = vec![0i16; 2500];
        assert_eq!(looping.read(&mut big), 2500);
        assert_eq!(big[1000], 0);
        assert_eq!(big[1999], 999);
        assert_eq!(looping.read(&mut big[..10]), 10);
    }
}
