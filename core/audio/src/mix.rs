//! A local conference: several calls' media threads swap what their far ends say, so
//! each far end hears the others as well as the microphone (SPEC R-105, "merge into a
//! three-party call" without a server-side conference).
//!
//! ```text
//!   call 1 ─ far end said ─▶ bus ─▶ added to what call 2 (and 3…) sends
//!   call 2 ─ far end said ─▶ bus ─▶ added to what call 1 (and 3…) sends
//! ```
//!
//! The user hears every far end already: each call plays into its own playback
//! stream and the sound server mixes them. What the bus adds is the far ends hearing
//! each other. Each member keeps one short queue per other member, filled by that
//! member's media thread and emptied by its own, one 10 ms frame per tick: the threads
//! are paced by different clocks, so a queue starts playing only when it holds
//! [`PRIME_FRAMES`] and is cut back to that when it grows past [`MAX_FRAMES`] (a
//! faster clock's surplus). The lock is held for a few copies of 480 samples, by
//! media threads only (never by a device callback).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::format::Frame;

/// Frames a queue holds before it plays (the delay the bus adds, 20 ms).
pub const PRIME_FRAMES: usize = 2;
/// Frames a queue may hold before the oldest are dropped.
pub const MAX_FRAMES: usize = 6;

/// Adds `src` to `dst`, clipped to the full scale (−1…1).
pub fn mix_into(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (*d + s).clamp(-1.0, 1.0);
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    playing: bool,
}

#[derive(Default)]
struct Inner {
    /// member → (other member → what that other member's far end said, for this one).
    inboxes: BTreeMap<u64, BTreeMap<u64, Queue>>,
}

/// The conference: hand each call a [`BusMember`].
#[derive(Clone, Default)]
pub struct ConferenceBus {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for ConferenceBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConferenceBus")
    }
}

impl ConferenceBus {
    /// An empty conference.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member with this id (a call id); an existing member is kept.
    pub fn join(&self, id: u64) -> BusMember {
        self.lock().inboxes.entry(id).or_default();
        BusMember {
            id,
            bus: self.clone(),
        }
    }

    /// The members' ids.
    pub fn members(&self) -> Vec<u64> {
        self.lock().inboxes.keys().copied().collect()
    }
}

/// One call's place in a [`ConferenceBus`]; leaves it when dropped.
#[derive(Debug)]
pub struct BusMember {
    id: u64,
    bus: ConferenceBus,
}

impl BusMember {
    /// One 10 ms tick of this call's media thread: `heard` is what its far end said
    /// (what goes to the speaker); the other far ends' queued audio is added to
    /// `to_send` (what goes to this call's far end, the microphone already in it).
    pub fn exchange(&self, heard: &Frame, to_send: &mut Frame) {
        let mut inner = self.bus.lock();
        for (&member, inbox) in inner.inboxes.iter_mut() {
            if member == self.id {
                continue;
            }
            let q = inbox.entry(self.id).or_default();
            q.frames.push_back(*heard);
            if q.frames.len() > MAX_FRAMES {
                let drop = q.frames.len() - PRIME_FRAMES;
                q.frames.drain(..drop);
            }
        }
        if let Some(mine) = inner.inboxes.get_mut(&self.id) {
            for q in mine.values_mut() {
                if !q.playing && q.frames.len() >= PRIME_FRAMES {
                    q.playing = true;
                }
                if !q.playing {
                    continue;
                }
                match q.frames.pop_front() {
                    Some(f) => mix_into(to_send, &f),
                    // Ran dry: wait for the queue to fill again.
                    None => q.playing = false,
                }
            }
        }
    }

    /// The member's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for BusMember {
    fn drop(&mut self) {
        let mut inner = self.bus.lock();
        inner.inboxes.remove(&self.id);
        for inbox in inner.inboxes.values_mut() {
            inbox.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FRAME_SAMPLES;

    fn frame(v: f32) -> Frame {
        [v; FRAME_SAMPLES]
    }

    #[test]
    fn mixing_adds_and_clips() {
        let mut d = [0.5, -0.5, 0.9, -0.9];
        mix_into(&mut d, &[0.25, -0.25, 0.5, -0.5]);
        assert_eq!(d, [0.75, -0.75, 1.0, -1.0]);
    }

    #[test]
    fn each_member_hears_the_others_not_itself_after_the_priming_delay() {
        let bus = ConferenceBus::new();
        let (a, b, c) = (bus.join(1), bus.join(2), bus.join(3));
        let mut sent = [frame(0.0), frame(0.0), frame(0.0)];
        let mut out = Vec::new();
        for _ in 0..4 {
            for s in sent.iter_mut() {
                *s = frame(0.01); // the microphone
            }
            a.exchange(&frame(0.1), &mut sent[0]);
            b.exchange(&frame(0.2), &mut sent[1]);
            c.exchange(&frame(0.4), &mut sent[2]);
            out.push([sent[0][0], sent[1][0], sent[2][0]]);
        }
        // The first tick only fills the queues (2 frames needed): microphone only.
        assert_eq!(out[0], [0.01, 0.01, 0.01]);
        // Then a hears b + c, b hears a + c, c hears a + b: never itself.
        for o in &out[2..] {
            assert!((o[0] - 0.61).abs() < 1e-6, "{o:?}");
            assert!((o[1] - 0.51).abs() < 1e-6, "{o:?}");
            assert!((o[2] - 0.31).abs() < 1e-6, "{o:?}");
        }
    }

    #[test]
    fn a_faster_clock_is_cut_back_and_a_slower_one_reprimes() {
        let bus = ConferenceBus::new();
        let (a, b) = (bus.join(1), bus.join(2));
        let mut s = frame(0.0);
        // a ticks ten times for each of b's: b's queue of a never exceeds MAX_FRAMES.
        for _ in 0..10 {
            a.exchange(&frame(0.1), &mut s);
        }
        let len = bus.lock().inboxes[&2][&1].frames.len();
        assert!(len <= MAX_FRAMES, "{len}");
        // b plays it, then runs dry and waits to refill instead of clicking every frame.
        let mut heard = Vec::new();
        for _ in 0..(len + 2) {
            let mut s = frame(0.0);
            b.exchange(&frame(0.0), &mut s);
            heard.push(s[0]);
        }
        assert_eq!(heard.iter().filter(|&&x| x > 0.0).count(), len);
        assert!(!bus.lock().inboxes[&2][&1].playing);
    }

    #[test]
    fn leaving_removes_the_member_everywhere() {
        let bus = ConferenceBus::new();
        let a = bus.join(1);
        let b = bus.join(2);
        let mut s = frame(0.0);
        a.exchange(&frame(0.3), &mut s);
        drop(a);
        assert_eq!(bus.members(), vec![2]);
        for _ in 0..3 {
            let mut s = frame(0.0);
            b.exchange(&frame(0.0), &mut s);
            assert_eq!(s[0], 0.0, "a's queued audio left with a");
        }
    }
}
