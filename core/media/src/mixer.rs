//! Conference mixer: N parties, each hears everyone but itself ("N−1" mixing).
//!
//! Each round, every party hands in one frame ([`ConferenceMixer::set_input`]); a party
//! that hands in nothing is silent for that round. [`ConferenceMixer::mix`] sums all
//! inputs once in 32 bits, then gives each party the sum minus its own input, brought
//! back into 16 bits by the chosen [`Clipping`]: cost is O(N·frame), not O(N²·frame).

use std::collections::BTreeMap;
use thiserror::Error;

/// Identifies a party for as long as it is in the conference.
pub type PartyId = u32;

/// Mixer misuse (always the caller's fault).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MixerError {
    /// No such party (left, or never joined).
    #[error("no party {0}")]
    UnknownParty(PartyId),
    /// A frame of the wrong length.
    #[error("frame of {got} samples, mixer uses {expected}")]
    BadFrame {
        /// Samples per frame the mixer was made for.
        expected: usize,
        /// Samples given.
        got: usize,
    },
}

/// How sums beyond 16 bits are brought back into range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clipping {
    /// Hard saturation at ±32767.
    Saturate,
    /// A soft knee above −2.7 dBFS (tanh), which avoids the harsh distortion of hard
    /// clipping when several loud parties talk at once.
    SoftLimit,
}

const KNEE: f32 = 24_000.0;

#[inline]
fn soft_limit(x: i32) -> i16 {
    let a = x.unsigned_abs() as f32;
    if a <= KNEE {
        return x as i16;
    }
    let room = 32_767.0 - KNEE;
    let y = KNEE + room * ((a - KNEE) / room).tanh();
    (y.min(32_767.0) as i32 * x.signum()) as i16
}

#[derive(Debug, Clone)]
struct Party {
    input: Vec<i16>,
    fresh: bool,
    output: Vec<i16>,
}

/// The mixer. See the module documentation.
#[derive(Debug)]
pub struct ConferenceMixer {
    frame: usize,
    clipping: Clipping,
    next_id: PartyId,
    parties: BTreeMap<PartyId, Party>,
    sum: Vec<i32>,
}

impl ConferenceMixer {
    /// A mixer for frames of `frame_samples` (e.g. 960 for 20 ms at 48 kHz).
    pub fn new(frame_samples: usize, clipping: Clipping) -> Self {
        ConferenceMixer {
            frame: frame_samples,
            clipping,
            next_id: 1,
            parties: BTreeMap::new(),
            sum: vec![0; frame_samples],
        }
    }

    /// Adds a party; it hears the others from the next [`Self::mix`].
    pub fn join(&mut self) -> PartyId {
        let id = self.next_id;
        self.next_id += 1;
        self.parties.insert(
            id,
            Party {
                input: vec![0; self.frame],
                fresh: false,
                output: vec![0; self.frame],
            },
        );
        id
    }

    /// Removes a party; returns whether it was there.
    pub fn leave(&mut self, id: PartyId) -> bool {
        self.parties.remove(&id).is_some()
    }

    /// Parties present.
    pub fn len(&self) -> usize {
        self.parties.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.parties.is_empty()
    }

    /// Hands in a party's frame for this round.
    pub fn set_input(&mut self, id: PartyId, samples: &[i16]) -> Result<(), MixerError> {
        if samples.len() != self.frame {
            return Err(MixerError::BadFrame {
                expected: self.frame,
                got: samples.len(),
            });
        }
        let p = self
            .parties
            .get_mut(&id)
            .ok_or(MixerError::UnknownParty(id))?;
        p.input.copy_from_slice(samples);
        p.fresh = true;
        Ok(())
    }

    /// Mixes this round. Afterwards [`Self::output`] gives each party its frame, and all
    /// inputs are cleared for the next round.
    pub fn mix(&mut self) {
        self.sum.fill(0);
        for p in self.parties.values().filter(|p| p.fresh) {
            for (s, &x) in self.sum.iter_mut().zip(&p.input) {
                *s += x as i32;
            }
        }
        for p in self.parties.values_mut() {
            let own: &[i16] = if p.fresh { &p.input } else { &[] };
            for (i, o) in p.output.iter_mut().enumerate() {
                let v = self.sum[i] - own.get(i).copied().unwrap_or(0) as i32;
                *o = match self.clipping {
                    Clipping::Saturate => v.clamp(i16::MIN as i32, i16::MAX as i32) as i16,
                    Clipping::SoftLimit => soft_limit(v),
                };
            }
            p.fresh = false;
        }
    }

    /// What party `id` hears this round.
    pub fn output(&self, id: PartyId) -> Option<&[i16]> {
        self.parties.get(&id).map(|p| p.output.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everyone_hears_everyone_but_themselves() {
        let mut m = ConferenceMixer::new(4, Clipping::Saturate);
        let a = m.join();
        let b = m.join();
        let c = m.join();
        m.set_input(a, &[100; 4]).unwrap();
        m.set_input(b, &[20; 4]).unwrap();
        m.set_input(c, &[3; 4]).unwrap();
        m.mix();
        assert_eq!(m.output(a).unwrap(), &[23; 4]);
        assert_eq!(m.output(b).unwrap(), &[103; 4]);
        assert_eq!(m.output(c).unwrap(), &[120; 4]);
        // Next round: b says nothing, c left, d joined.
        assert!(m.leave(c));
        let d = m.join();
        m.set_input(a, &[1; 4]).unwrap();
        m.set_input(d, &[-5; 4]).unwrap();
        m.mix();
        assert_eq!(m.output(a).unwrap(), &[-5; 4]);
        assert_eq!(m.output(b).unwrap(), &[-4; 4]);
        assert_eq!(m.output(d).unwrap(), &[1; 4]);
        assert_eq!(m.output(c), None);
        assert_eq!(m.set_input(c, &[0; 4]), Err(MixerError::UnknownParty(c)));
        assert_eq!(
            m.set_input(a, &[0; 3]),
            Err(MixerError::BadFrame {
                expected: 4,
                got: 3
            })
        );
        assert!(!m.leave(c));
    }

    #[test]
    fn loud_parties_do_not_wrap() {
        for clipping in [Clipping::Saturate, Clipping::SoftLimit] {
            let mut m = ConferenceMixer::new(3, clipping);
            let ids: Vec<PartyId> = (0..10).map(|_| m.join()).collect();
            for &id in &ids {
                m.set_input(id, &[30_000, -30_000, 1000]).unwrap();
            }
            m.mix();
            let out = m.output(ids[0]).unwrap();
            assert!(out[0] > 30_000 && out[1] < -30_000, "{clipping:?}: {out:?}");
            assert_eq!(out[2], 9000);
        }
        // The soft limiter is monotonic and continuous at the knee.
        let mut last = soft_limit(0);
        for x in (0..400_000).step_by(97) {
            let y = soft_limit(x);
            assert!(y >= last);
            last = y;
        }
        assert_eq!(soft_limit(24_000), 24_000);
        assert_eq!(soft_limit(-24_001), -24_001);
        assert_eq!(soft_limit(1_000_000), 32_767);
    }

    #[test]
    fn one_party_hears_silence() {
        let mut m = ConferenceMixer::new(2, Clipping::SoftLimit);
        let a = m.join();
        m.set_input(a, &[500, 500]).unwrap();
        m.mix();
        assert_eq!(m.output(a).unwrap(), &[0, 0]);
    }
}
