//! Sample-rate conversion between the rates our codecs, prompts and devices use
//! (8, 16, 44.1 and 48 kHz). Integer ratios up to 12 (48↔8, 48↔16, 16↔8 kHz: every
//! codec rate against the pipeline's 48 kHz) use a short polyphase FIR whose delay is
//! [`FIR_HALF_TAPS`] samples at the lower rate (2 ms at 8 kHz, 1 ms at 16 kHz) and that
//! works sample by sample; other ratios use rubato's FFT resampler in 10 ms chunks
//! (about 5 ms of delay).
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
    fir: Option<Fir>,
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
    /// A resampler from `from` Hz to `to` Hz: a short FIR for integer ratios, else FFT
    /// processing in 10 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let err = |reason: String| ResampleError { from, to, reason };
        if from == 0 || to == 0 || from > 384_000 || to > 384_000 {
            return Err(err("rate out of range".into()));
        }
        if let Some(fir) = Fir::new(from, to) {
            return Ok(Resampler {
                from,
                to,
                inner: None,
                skip: fir.delay_out(),
                fir: Some(fir),
                pending: Vec::new(),
                out_buf: Vec::new(),
                consumed: 0,
                produced: 0,
            });
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
            fir: None,
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
        if let Some(f) = &self.fir {
            return f.delay_in();
        }
        self.inner.as_ref().map_or(0, |r| r.input_frames_next())
    }

    /// The delay this resampler adds, in seconds (the FIR's group delay, or the FFT
    /// resampler's chunk and filter delay).
    pub fn delay_secs(&self) -> f64 {
        match (&self.fir, &self.inner) {
            (Some(f), _) => f.delay_out() as f64 / self.to as f64,
            (None, Some(r)) => {
                (r.output_delay() as f64 / self.to as f64)
                    + r.input_frames_next() as f64 / self.from as f64
            }
            (None, None) => 0.0,
        }
    }

    /// Converts `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.consumed += input.len() as u64;
        if let Some(f) = self.fir.as_mut() {
            let before = out.len();
            f.process(input, out);
            let made = out.len() - before;
            let drop = self.skip.min(made);
            self.skip -= drop;
            out.drain(before..before + drop);
            self.produced += (made - drop) as u64;
            return;
        }
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
        while self.produced < want && (self.inner.is_some() || self.fir.is_some()) && guard < 64 {
            guard += 1;
            let remaining = (want - self.produced) as usize;
            let need = match &self.fir {
                Some(f) => f.delay_in() + 1,
                None => self.inner.as_ref().map_or(0, |r| r.input_frames_next()),
            };
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

/// Taps on each side of the centre, counted at the lower rate: the FIR's delay.
pub const FIR_HALF_TAPS: usize = 16;

/// A polyphase windowed-sinc FIR for an integer ratio (up or down by `ratio`).
struct Fir {
    up: bool,
    ratio: usize,
    /// Taps at the higher rate, `2 * FIR_HALF_TAPS * ratio + 1` of them, gain included.
    taps: Vec<f32>,
    /// Recent input, newest last (`hist_len` kept).
    hist: Vec<f32>,
    /// Down: input samples since the last output.
    phase: usize,
}

impl Fir {
    fn new(from: u32, to: u32) -> Option<Fir> {
        let (hi, lo) = (from.max(to), from.min(to));
        if from == to || hi % lo != 0 || hi / lo > 12 {
            return None;
        }
        let ratio = (hi / lo) as usize;
        let n = 2 * FIR_HALF_TAPS * ratio + 1;
        let centre = (n / 2) as f64;
        // Cut off a little below the lower rate's Nyquist; Kaiser window (β = 6, ≈ 60 dB).
        let fc = 0.45 / ratio as f64;
        let beta = 6.0;
        let i0 = |x: f64| {
            let (mut sum, mut term) = (1.0, 1.0);
            for k in 1..30 {
                term *= (x / 2.0) / k as f64;
                sum += term * term;
            }
            sum
        };
        let mut taps: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 - centre;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / centre;
                sinc * i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0(beta)
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        // Unity DC gain; interpolation spreads each input over `ratio` outputs.
        let gain = if to > from { ratio as f64 } else { 1.0 } / sum;
        taps.iter_mut().for_each(|t| *t *= gain);
        let hist_len = if to > from { 2 * FIR_HALF_TAPS + 1 } else { n };
        Some(Fir {
            up: to > from,
            ratio,
            taps: taps.into_iter().map(|t| t as f32).collect(),
            hist: vec![0.0; hist_len],
            phase: 0,
        })
    }

    /// Group delay in output samples.
    fn delay_out(&self) -> usize {
        if self.up {
            FIR_HALF_TAPS * self.ratio
        } else {
            FIR_HALF_TAPS
        }
    }

    /// Group delay in input samples.
    fn delay_in(&self) -> usize {
        if self.up {
            FIR_HALF_TAPS
        } else {
            FIR_HALF_TAPS * self.ratio
        }
    }

    fn push(&mut self, x: i16) {
        self.hist.rotate_left(1);
        if let Some(last) = self.hist.last_mut() {
            *last = x as f32 / 32768.0;
        }
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let n = self.taps.len();
        for &x in input {
            self.push(x);
            if self.up {
                // Output p (0..ratio) after input m: sum over k of h[p + k·ratio]·x[m−k],
                // aligned so that taps[centre] lands on an input sample.
                let len = self.hist.len();
                for p in 0..self.ratio {
                    let mut acc = 0.0f32;
                    let mut k = 0;
                    while p + k * self.ratio < n {
                        acc += self.taps[p + k * self.ratio] * self.hist[len - 1 - k];
                        k += 1;
                    }
                    out.push(crate::dsp::to_i16(acc * 32768.0));
                }
            } else {
                self.phase += 1;
                if self.phase == self.ratio {
                    self.phase = 0;
                    let acc: f32 = self
                        .taps
                        .iter()
                        .zip(self.hist.iter().rev())
                        .map(|(h, x)| h * x)
                        .sum();
                    out.push(crate::dsp::to_i16(acc * 32768.0));
                }
            }
        }
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
    fn integer_ratios_use_the_short_fir() {
        for (from, to, max_ms) in [
            (48000, 8000, 2.01),
            (8000, 48000, 2.01),
            (48000, 16000, 1.01),
        ] {
            let r = Resampler::new(from, to).unwrap();
            assert!(
                r.delay_secs() * 1000.0 <= max_ms,
                "{from}->{to}: {}",
                r.delay_secs()
            );
        }
        // Works sample by sample: 10 ms in, 10 ms out from the first frame on (after the
        // lead-in), no 10 ms chunk to fill.
        let mut r = Resampler::new(48000, 8000).unwrap();
        let mut out = Vec::new();
        r.process(&vec![0; r.latency()], &mut out);
        assert!(out.is_empty());
        r.process(&[1000; 480], &mut out);
        assert_eq!(out.len(), 80);
        // A 3 kHz tone (inside the telephone band) passes at level, a 5 kHz one is gone.
        for (f, pass) in [(3000.0, true), (5000.0, false)] {
            let input = sine(48000, f, 10000.0, 48000);
            let mut r = Resampler::new(48000, 8000).unwrap();
            let mut out = Vec::new();
            r.process(&input, &mut out);
            let rms = |x: &[i16]| {
                (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
            };
            let ratio = rms(&out[800..7000]) / rms(&input[4800..42000]);
            if pass {
                assert!((ratio - 1.0).abs() < 0.1, "{f} Hz: {ratio}");
            } else {
                assert!(ratio < 0.03, "{f} Hz: {ratio}");
            }
        }
    }

    #[test]
    fn bad_rates_are_errors() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(Resampler::new(8000, 1_000_000).is_err());
    }
}
