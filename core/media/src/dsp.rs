//! Small signal helpers shared by tones, DTMF, tests and benchmarks.

use std::f64::consts::PI;

/// Converts a float sample to 16-bit with saturation (never wraps).
#[inline]
pub fn to_i16(x: f32) -> i16 {
    x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// `count` samples of a sine at `freq` Hz and peak `amplitude`, starting at phase 0.
pub fn sine(rate: u32, freq: f64, amplitude: f64, count: usize) -> Vec<i16> {
    (0..count)
        .map(|n| to_i16((amplitude * (2.0 * PI * freq * n as f64 / rate as f64).sin()) as f32))
        .collect()
}

/// Power of `freq` in `block` by the Goertzel algorithm (normalised by block length²).
pub fn goertzel_power(block: &[i16], rate: u32, freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / rate as f64).cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &x in block {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = block.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

/// Mean energy per sample of `block`.
pub fn energy(block: &[i16]) -> f64 {
    block.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / block.len().max(1) as f64
}
