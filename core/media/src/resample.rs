//! Sample-rate conversion between the rates our codecs, prompts and devices use
//! (8, 16, 44.1 and 48 kHz), built on rubato's FFT resampler.
//!
//! The resampler is streaming: feed any number of samples, get out what is ready.
//! Its group delay is compensated, so a signal comes out aligned with its input
//! (apart from the first [`Resampler::latency`] samples being consumed as lead-in).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use thiserror::Error;

/// A rate pair the resampler cannot handle (local fault: a bad argument).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot resample {from} Hz → {to} Hz: {reason}")]
pub struct ResampleError {
    /// Input rate.
    pub from: u32,
    /// Output rate.
    pub to: u32,
    /// Why.
    pub reason: String,
}

/// Streaming mono resampler from one fixed rate to another.
///
/// Guarantees: after `n` input samples and a [`Resampler::flush`], exactly
/// `round(n * to / from)` output samples have been produced in total; equal rates are a
/// copy. Never allocates per call once warmed up, except to grow `out`.
pub struct Resampler {
    from: u32,
    to: u32,
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output samples still to discard (the filter's group delay).
    skip: usize,
    consumed: u64,
    produced: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz, processing in 10 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let err = |reason: String| ResampleError { from, to, reason };
        if from == 0 || to == 0 || from > 384_000 || to > 384_000 {
            return Err(err("rate out of range".into()));
        }
        let inner = if from == to {
            None
        } else {
            let chunk = (from / 100).max(1) as usize;
            let r = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
                .map_err(|e| err(e.to_string()))?;
            Some(r)
        };
        let (skip, out_buf) = match &inner {
            Some(r) => (r.output_delay(), vec![0f32; r.output_frames_max()]),
            None => (0, Vec::new()),
        };
        Ok(Resampler {
            from,
            to,
            inner,
            pending: Vec::new(),
            out_buf,
            skip,
            consumed: 0,
            produced: 0,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Input samples buffered before the first output appears.
    pub fn latency(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.input_frames_next())
    }

    /// Converts `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.consumed += input.len() as u64;
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            self.produced += input.len() as u64;
            return;
        };
        self.pending
            .extend(input.iter().map(|&s| s as f32 / 32768.0));
        let mut used_total = 0;
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - used_total < need {
                break;
            }
            let chunk = &self.pending[used_total..used_total + need];
            let out_frames = r.output_frames_next();
            if self.out_buf.len() < out_frames {
                self.out_buf.resize(out_frames, 0.0);
            }
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(chunk, 1, need),
                InterleavedSlice::new_mut(&mut self.out_buf[..], 1, out_frames),
            ) else {
                break;
            };
            let Ok((used, made)) = r.process_into_buffer(&input, &mut output, None) else {
                break;
            };
            used_total += used;
            let produced = &self.out_buf[..made];
            let drop = self.skip.min(made);
            self.skip -= drop;
            out.extend(
                produced[drop..]
                    .iter()
                    .map(|&x| crate::dsp::to_i16(x * 32768.0)),
            );
            self.produced += (made - drop) as u64;
        }
        self.pending.drain(..used_total);
    }

    /// Pushes out the remaining samples at the end of a stream, so the total output is
    /// `round(consumed * to / from)` samples. The resampler can be reused afterwards.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let want = (self.consumed * self.to as u64 + self.from as u64 / 2) / self.from as u64;
        let mut guard = 0;
        while self.produced < want && self.inner.is_some() && guard < 64 {
            guard += 1;
            let remaining = (want - self.produced) as usize;
            let need = self.inner.as_ref().map_or(0, |r| r.input_frames_next());
            let pad = need.saturating_sub(self.pending.len()).max(1);
            let (consumed, produced) = (self.consumed, self.produced);
            let mut tmp = Vec::new();
            self.process(&vec![0; pad], &mut tmp);
            // Padding is not input, and only the part of it that completes the signal counts.
            self.consumed = consumed;
            let take = remaining.min(tmp.len());
            self.produced = produced + take as u64;
            out.extend_from_slice(&tmp[..take]);
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::{goertzel_power, sine};

    #[test]
    fn lengths_and_tones_survive_common_rates() {
        for (from, to) in [
            (8000, 48000),
            (48000, 8000),
            (16000, 48000),
            (44100, 8000),
            (8000, 16000),
        ] {
            let input = sine(from, 440.0, 10000.0, from as usize);
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for c in input.chunks(333) {
                r.process(c, &mut out);
            }
            r.flush(&mut out);
            assert_eq!(out.len(), to as usize, "{from}->{to}");
            let mid = &out[out.len() / 4..out.len() * 3 / 4];
            let ref_ = sine(to, 440.0, 10000.0, to as usize);
            let p = goertzel_power(mid, to, 440.0);
            let pr = goertzel_power(&ref_[ref_.len() / 4..ref_.len() * 3 / 4], to, 440.0);
            assert!((p / pr - 1.0).abs() < 0.1, "{from}->{to} level {p} vs {pr}");
        }
    }

    #[test]
    fn output_is_time_aligned() {
        // A click at sample 4000 of 8 kHz input must appear near sample 24000 at 48 kHz.
        let mut input = vec![0i16; 8000];
        input[4000] = 20000;
        let mut r = Resampler::new(8000, 48000).unwrap();
        let mut out = Vec::new();
        r.process(&input, &mut out);
        r.flush(&mut out);
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.unsigned_abs())
            .map(|(i, _)| i)
            .unwrap();
        assert!((peak as i64 - 24000).abs() <= 3, "peak at {peak}");
    }

    #[test]
    fn bad_rates_are_errors() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(Resampler::new(8000, 1_000_000).is_err());
    }
}
