//! Test signals and measurements: tones, clicks, a deterministic speech-like
//! signal, a simulated room echo, level and tone detection. Used by the
//! settings screen's device test, the examples and the tests.

use std::f32::consts::PI;

/// `len` samples of a sine at `freq` Hz and peak `amplitude`.
pub fn tone(freq: f32, amplitude: f32, len: usize, rate: u32) -> Vec<f32> {
    (0..len)
        .map(|n| amplitude * (2.0 * PI * freq * n as f32 / rate as f32).sin())
        .collect()
}

/// Root mean square of a block.
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Mean power (mean square) of a block, in f64 for summing long signals.
pub fn power(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64
}

/// Level in dB relative to full scale (a full-scale sine is −3 dBFS).
pub fn dbfs(x: &[f32]) -> f32 {
    20.0 * rms(x).max(1e-9).log10()
}

/// Echo return loss enhancement in dB: how much quieter the echo is after
/// cancellation, `10·log10(P(echo) / P(residual))` over the same samples.
pub fn erle_db(echo: &[f32], residual: &[f32]) -> f64 {
    let pe = power(echo).max(1e-15);
    let pr = power(residual).max(1e-15);
    10.0 * (pe / pr).log10()
}

/// Power of one frequency in a block (Goertzel algorithm), scaled so that a
/// sine of amplitude `a` at exactly `freq` gives about `(a·len/2)²`.
pub fn goertzel_power(x: &[f32], freq: f32, rate: u32) -> f32 {
    let w = 2.0 * PI * freq / rate as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Whether `freq` dominates the block: its Goertzel power beats that of the
/// neighbours half an octave away by `margin_db`.
pub fn tone_present(x: &[f32], freq: f32, rate: u32, margin_db: f32) -> bool {
    let on = goertzel_power(x, freq, rate);
    let off = goertzel_power(x, freq / 2f32.sqrt(), rate).max(goertzel_power(
        x,
        freq * 2f32.sqrt(),
        rate,
    ));
    on > 0.0 && 10.0 * (on / off.max(1e-12)).log10() > margin_db
}

/// Index of the first sample whose magnitude exceeds `threshold`.
pub fn first_above(x: &[f32], threshold: f32) -> Option<usize> {
    x.iter().position(|v| v.abs() > threshold)
}

/// A tiny deterministic generator, so test signals are the same on every run.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    /// Uniform in `-1.0..1.0`.
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A second-order resonator (formant filter).
struct Resonator {
    a1: f32,
    a2: f32,
    gain: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn new() -> Self {
        Resonator {
            a1: 0.0,
            a2: 0.0,
            gain: 0.0,
            y1: 0.0,
            y2: 0.0,
        }
    }

    fn tune(&mut self, freq: f32, bandwidth: f32, rate: u32) {
        let r = (-PI * bandwidth / rate as f32).exp();
        self.a1 = 2.0 * r * (2.0 * PI * freq / rate as f32).cos();
        self.a2 = -r * r;
        self.gain = 1.0 - r;
    }

    fn run(&mut self, x: f32) -> f32 {
        let y = self.gain * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// A deterministic speech-like signal: a glottal pulse train with drifting
/// pitch through three formant resonators that change every syllable, with
/// syllable envelopes, short fricative noise bursts and pauses between
/// phrases. Its spectrum and on/off rhythm resemble speech closely enough to
/// exercise an echo canceller and a noise suppressor; peak about 0.5.
pub fn speech_like(seed: u64, seconds: f32, pitch_hz: f32, rate: u32) -> Vec<f32> {
    // (F1, F2, F3) of a few vowels, Hz.
    const VOWELS: [(f32, f32, f32); 6] = [
        (730.0, 1090.0, 2440.0),
        (270.0, 2290.0, 3010.0),
        (530.0, 1840.0, 2480.0),
        (570.0, 840.0, 2410.0),
        (300.0, 870.0, 2240.0),
        (660.0, 1720.0, 2410.0),
    ];
    let mut rng = Lcg::new(seed);
    let len = (seconds * rate as f32) as usize;
    let mut out = Vec::with_capacity(len);
    let mut formants = [Resonator::new(), Resonator::new(), Resonator::new()];
    let mut phase = 0.0f32;
    let mut n = 0usize;
    while n < len {
        // A phrase of 3–7 syllables, then a pause of 150–400 ms.
        let syllables = 3 + ((rng.next_f32() + 1.0) * 2.5) as usize;
        for _ in 0..syllables {
            let syl_len = ((0.12 + 0.08 * (rng.next_f32() + 1.0)) * rate as f32) as usize;
            let v = VOWELS[((rng.next_f32() + 1.0) * 3.0) as usize % VOWELS.len()];
            for (res, (f, bw)) in formants
                .iter_mut()
                .zip([(v.0, 80.0), (v.1, 100.0), (v.2, 150.0)])
            {
                res.tune(f, bw, rate);
            }
            let fricative = rng.next_f32() > 0.3;
            let f0 = pitch_hz * (1.0 + 0.1 * rng.next_f32());
            for i in 0..syl_len {
                if n >= len {
                    break;
                }
                let t = i as f32 / syl_len as f32;
                // A short noisy onset (consonant), then the voiced vowel.
                let (voiced, noise) = if fricative && t < 0.2 {
                    (0.0, 0.15 * rng.next_f32())
                } else {
                    (1.0, 0.01 * rng.next_f32())
                };
                phase += f0 * (1.0 + 0.03 * (2.0 * PI * 5.0 * n as f32 / rate as f32).sin())
                    / rate as f32;
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                let src = voiced * pulse * 8.0 + noise;
                let y: f32 = formants.iter_mut().map(|r| r.run(src)).sum();
                let env = (PI * t).sin().powf(0.5);
                out.push(y * env);
                n += 1;
            }
        }
        let pause = ((0.15 + 0.125 * (rng.next_f32() + 1.0)) * rate as f32) as usize;
        for _ in 0..pause {
            if n >= len {
                break;
            }
            let y: f32 = formants.iter_mut().map(|r| r.run(0.0)).sum();
            out.push(y);
            n += 1;
        }
    }
    let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-9);
    out.iter_mut().for_each(|v| *v *= 0.5 / peak);
    out
}

/// A simulated acoustic echo path: loudspeaker to microphone in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEcho {
    /// Bulk delay (sound card buffers plus distance), milliseconds.
    pub delay_ms: f32,
    /// Reverberation time: how long the tail takes to fall by 60 dB, milliseconds.
    pub rt60_ms: f32,
    /// Gain of the direct path; the whole path's echo return loss is about
    /// 2 dB less than this gain alone gives (0.3: ≈ 8.5 dB ERL).
    pub gain: f32,
    /// Seed for the reflections' pattern.
    pub seed: u64,
}

impl RoomEcho {
    /// The impulse response at `rate`: a direct path after `delay_ms`, a few
    /// early reflections, then an exponentially decaying noise tail.
    pub fn impulse_response(&self, rate: u32) -> Vec<f32> {
        let ms = |m: f32| (m * rate as f32 / 1000.0) as usize;
        let delay = ms(self.delay_ms);
        let tail = ms(self.rt60_ms);
        let mut rng = Lcg::new(self.seed);
        let mut h = vec![0.0f32; delay + tail + 1];
        h[delay] = self.gain;
        // Early reflections in the first 15 ms.
        for k in 0..6 {
            let at = delay + ms(1.5 + 2.3 * k as f32) + (rng.next_f32().abs() * 10.0) as usize;
            if at < h.len() {
                h[at] += self.gain * 0.5 * rng.next_f32() * 0.8f32.powi(k);
            }
        }
        // Diffuse tail: −60 dB after rt60, carrying half the direct path's
        // energy (a direct-to-reverberant ratio of +3 dB, a desk phone in an office).
        let decay = (-6.9 / tail.max(1) as f32).exp();
        let mut env = self.gain * (1.5 * (1.0 - decay * decay)).sqrt();
        for v in h.iter_mut().skip(delay + ms(5.0)) {
            *v += env * rng.next_f32();
            env *= decay;
        }
        h
    }

    /// `x` as the microphone hears it through this room (same length as `x`).
    pub fn apply(&self, x: &[f32], rate: u32) -> Vec<f32> {
        convolve(x, &self.impulse_response(rate))
    }
}

/// Linear convolution of `x` with `h`, truncated to `x.len()`, by FFT
/// overlap-add (a 10k-tap room response over a minute of audio in
/// milliseconds rather than minutes).
pub fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    use realfft::RealFftPlanner;
    if x.is_empty() || h.is_empty() {
        return vec![0.0; x.len()];
    }
    let block = h.len().next_power_of_two().max(1024);
    let n = 2 * block;
    let mut planner = RealFftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut hbuf = fwd.make_input_vec();
    hbuf[..h.len()].copy_from_slice(h);
    let mut hspec = fwd.make_output_vec();
    if fwd.process(&mut hbuf, &mut hspec).is_err() {
        return vec![0.0; x.len()];
    }
    let mut y = vec![0.0f32; x.len() + n];
    let mut buf = fwd.make_input_vec();
    let mut spec = fwd.make_output_vec();
    let mut out = inv.make_output_vec();
    let scale = 1.0 / n as f32;
    for (b, chunk) in x.chunks(block).enumerate() {
        buf.fill(0.0);
        buf[..chunk.len()].copy_from_slice(chunk);
        if fwd.process(&mut buf, &mut spec).is_err() {
            break;
        }
        spec.iter_mut().zip(&hspec).for_each(|(s, h)| *s *= h);
        if inv.process(&mut spec, &mut out).is_err() {
            break;
        }
        let at = b * block;
        y[at..at + n]
            .iter_mut()
            .zip(&out)
            .for_each(|(y, o)| *y += o * scale);
    }
    y.truncate(x.len());
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone() {
        let x = tone(1000.0, 0.5, 4800, 48_000);
        assert!(tone_present(&x, 1000.0, 48_000, 20.0));
        assert!(!tone_present(&x, 2000.0, 48_000, 20.0));
        assert!((dbfs(&x) + 9.03).abs() < 0.1);
    }

    #[test]
    fn speech_like_is_deterministic_and_bursty() {
        let a = speech_like(7, 2.0, 120.0, 48_000);
        let b = speech_like(7, 2.0, 120.0, 48_000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 96_000);
        // Some 10 ms blocks are near silent (pauses), others loud.
        let levels: Vec<f32> = a.chunks(480).map(dbfs).collect();
        assert!(levels.iter().any(|&l| l < -50.0));
        assert!(levels.iter().any(|&l| l > -25.0));
    }

    #[test]
    fn fft_convolution_matches_direct() {
        let x: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        let h: Vec<f32> = (0..300)
            .map(|i| 0.99f32.powi(i) * if i % 3 == 0 { 1.0 } else { -0.5 })
            .collect();
        let fast = convolve(&x, &h);
        for n in [0, 1, 299, 300, 1023, 1024, 2047, 4999] {
            let direct: f32 = (0..=n.min(h.len() - 1)).map(|k| h[k] * x[n - k]).sum();
            assert!(
                (fast[n] - direct).abs() < 1e-3,
                "n={n}: {} vs {direct}",
                fast[n]
            );
        }
    }

    #[test]
    fn room_echo_delays_and_attenuates() {
        let room = RoomEcho {
            delay_ms: 50.0,
            rt60_ms: 150.0,
            gain: 0.3,
            seed: 1,
        };
        let mut x = vec![0.0f32; 48_000];
        x[0] = 1.0;
        let y = room.apply(&x, 48_000);
        assert_eq!(first_above(&y, 0.1), Some(2400));
        assert!(y[2400 + 48 * 200..].iter().all(|v| v.abs() < 0.01));
    }
}
