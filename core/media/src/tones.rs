//! Call-progress tones (ringback, busy, congestion, call waiting, dial) per country,
//! generated sample-exactly from a position in the stream.
//!
//! Frequencies and cadences follow ITU-T E.180 Supplement 2 ("Various tones used in
//! national networks") for the Nordic countries — all on 425 Hz — and the North
//! American precise tone plan (ANSI T1.401) for the US. Any other plan can be built
//! with [`Tone::new`].

use std::f64::consts::PI;

/// What a tone means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToneKind {
    /// Dial tone (continuous).
    Dial,
    /// Ringback: the far end is ringing.
    Ringback,
    /// Busy.
    Busy,
    /// Congestion (network busy / reorder).
    Congestion,
    /// Call waiting, heard in an active call.
    CallWaiting,
}

/// Countries with built-in tone plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Country {
    /// Denmark.
    Dk,
    /// Sweden.
    Se,
    /// Norway.
    No,
    /// Finland.
    Fi,
    /// United States.
    Us,
    /// United Kingdom.
    Gb,
}

impl Country {
    /// The country for an ISO 3166 alpha-2 code (case-insensitive).
    pub fn from_code(code: &str) -> Option<Country> {
        Some(match code.to_ascii_uppercase().as_str() {
            "DK" => Country::Dk,
            "SE" => Country::Se,
            "NO" => Country::No,
            "FI" => Country::Fi,
            "US" => Country::Us,
            "GB" | "UK" => Country::Gb,
            _ => return None,
        })
    }
}

/// A tone: a sum of frequencies switched on and off by a repeating cadence.
#[derive(Debug, Clone, PartialEq)]
pub struct Tone {
    /// Frequencies in whole Hz, summed.
    pub frequencies: Vec<u32>,
    /// (on ms, off ms) pairs, repeated; empty means continuous.
    pub cadence: Vec<(u32, u32)>,
    /// Peak amplitude of each frequency.
    pub amplitude: f64,
}

impl Tone {
    /// A custom tone at about −13 dBm0 per frequency.
    pub fn new(frequencies: &[u32], cadence: &[(u32, u32)]) -> Self {
        Tone {
            frequencies: frequencies.to_vec(),
            cadence: cadence.to_vec(),
            amplitude: 5000.0,
        }
    }

    /// The built-in tone `kind` for `country`.
    pub fn for_country(country: Country, kind: ToneKind) -> Tone {
        use Country::*;
        use ToneKind::*;
        match (country, kind) {
            (Us, Dial) => Tone::new(&[350, 440], &[]),
            (Us, Ringback) => Tone::new(&[440, 480], &[(2000, 4000)]),
            (Us, Busy) => Tone::new(&[480, 620], &[(500, 500)]),
            (Us, Congestion) => Tone::new(&[480, 620], &[(250, 250)]),
            (Us, CallWaiting) => Tone::new(&[440], &[(300, 9700)]),
            (Gb, Dial) => Tone::new(&[350, 440], &[]),
            (Gb, Ringback) => Tone::new(&[400, 450], &[(400, 200), (400, 2000)]),
            (Gb, Busy) => Tone::new(&[400], &[(375, 375)]),
            (Gb, Congestion) => Tone::new(&[400], &[(400, 350), (225, 525)]),
            (Gb, CallWaiting) => Tone::new(&[400], &[(100, 3000)]),
            (_, Dial) => Tone::new(&[425], &[]),
            (Dk, Ringback) => Tone::new(&[425], &[(1000, 4000)]),
            (Dk, Busy) => Tone::new(&[425], &[(250, 250)]),
            (Dk, Congestion) => Tone::new(&[425], &[(250, 250)]),
            (Dk, CallWaiting) => Tone::new(&[425], &[(200, 600), (200, 4400)]),
            (Se, Ringback) => Tone::new(&[425], &[(1000, 5000)]),
            (Se, Busy) => Tone::new(&[425], &[(250, 250)]),
            (Se, Congestion) => Tone::new(&[425], &[(250, 750)]),
            (Se, CallWaiting) => Tone::new(&[425], &[(200, 500), (200, 9100)]),
            (No, Ringback) => Tone::new(&[425], &[(1000, 4000)]),
            (No, Busy) => Tone::new(&[425], &[(500, 500)]),
            (No, Congestion) => Tone::new(&[425], &[(200, 200)]),
            (No, CallWaiting) => Tone::new(&[425], &[(200, 600), (200, 10000)]),
            (Fi, Ringback) => Tone::new(&[425], &[(1000, 4000)]),
            (Fi, Busy) => Tone::new(&[425], &[(300, 300)]),
            (Fi, Congestion) => Tone::new(&[425], &[(200, 200)]),
            (Fi, CallWaiting) => Tone::new(&[425], &[(150, 150), (150, 8000)]),
        }
    }

    /// Length of one cadence cycle in samples at `rate` (0 for continuous).
    pub fn cycle_samples(&self, rate: u32) -> u64 {
        self.cadence
            .iter()
            .map(|&(on, off)| (on + off) as u64 * rate as u64 / 1000)
            .sum()
    }

    /// Whether sample `n` (at `rate`) falls in an "on" part of the cadence.
    pub fn is_on(&self, rate: u32, n: u64) -> bool {
        let cycle = self.cycle_samples(rate);
        if cycle == 0 {
            return true;
        }
        let mut pos = n % cycle;
        for &(on, off) in &self.cadence {
            let on_s = on as u64 * rate as u64 / 1000;
            let off_s = off as u64 * rate as u64 / 1000;
            if pos < on_s {
                return true;
            }
            if pos < on_s + off_s {
                return false;
            }
            pos -= on_s + off_s;
        }
        false
    }

    /// Fills `out` with samples `start..start + out.len()` of the tone at `rate`. Sample
    /// `n` depends only on `n`: the phase is computed from `(f · n) mod rate` in integers,
    /// so there is no drift however long the tone plays or however it is chunked.
    pub fn fill(&self, rate: u32, start: u64, out: &mut [i16]) {
        for (i, s) in out.iter_mut().enumerate() {
            let n = start + i as u64;
            if !self.is_on(rate, n) {
                *s = 0;
                continue;
            }
            let v: f64 = self
                .frequencies
                .iter()
                .map(|&f| {
                    let phase = (f as u64 * n) % rate as u64;
                    (2.0 * PI * phase as f64 / rate as f64).sin()
                })
                .sum();
            *s = crate::dsp::to_i16((v * self.amplitude) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::goertzel_power;

    #[test]
    fn nordic_ringback_cadences() {
        let dk = Tone::for_country(Country::Dk, ToneKind::Ringback);
        assert_eq!(dk.frequencies, vec![425]);
        assert_eq!(dk.cycle_samples(8000), 40_000);
        assert!(dk.is_on(8000, 0) && dk.is_on(8000, 7999) && !dk.is_on(8000, 8000));
        assert!(dk.is_on(8000, 40_000), "repeats");
        let se = Tone::for_country(Country::Se, ToneKind::Ringback);
        assert_eq!(se.cycle_samples(8000), 48_000);
        let mut buf = vec![0i16; 8000];
        se.fill(8000, 0, &mut buf);
        assert!(goertzel_power(&buf, 8000, 425.0) > 1000.0 * goertzel_power(&buf, 8000, 600.0));
        let mut off = vec![1i16; 800];
        se.fill(8000, 9000, &mut off);
        assert!(off.iter().all(|&s| s == 0));
    }

    #[test]
    fn us_ringback_is_dual_tone() {
        let t = Tone::for_country(Country::from_code("us").unwrap(), ToneKind::Ringback);
        let mut buf = vec![0i16; 4000];
        t.fill(8000, 0, &mut buf);
        let p440 = goertzel_power(&buf, 8000, 440.0);
        let p480 = goertzel_power(&buf, 8000, 480.0);
        assert!(p440 > 1e6 && p480 > 1e6 && (p440 / p480 - 1.0).abs() < 0.1);
    }

    #[test]
    fn chunked_generation_is_sample_exact() {
        for country in [
            Country::Dk,
            Country::Se,
            Country::No,
            Country::Fi,
            Country::Us,
            Country::Gb,
        ] {
            for kind in [
                ToneKind::Dial,
                ToneKind::Ringback,
                ToneKind::Busy,
                ToneKind::Congestion,
                ToneKind::CallWaiting,
            ] {
                let t = Tone::for_country(country, kind);
                let mut whole = vec![0i16; 16_000];
                t.fill(16_000, 1_000_000_007, &mut whole);
                let mut pieces = vec![0i16; 16_000];
                let mut at = 0;
                for len in [1, 159, 160, 4000, 11_680] {
                    t.fill(16_000, 1_000_000_007 + at as u64, &mut pieces[at..at + len]);
                    at += len;
                }
                assert_eq!(whole, pieces, "{country:?} {kind:?}");
            }
        }
    }

    #[test]
    fn busy_differs_by_country() {
        let on_ms = |c| Tone::for_country(c, ToneKind::Busy).cadence[0].0;
        assert_eq!(on_ms(Country::Dk), 250);
        assert_eq!(on_ms(Country::No), 500);
        assert_eq!(on_ms(Country::Fi), 300);
        assert_eq!(Country::from_code("xx"), None);
    }
}
