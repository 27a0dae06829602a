//! A seeded network emulator for testing the media path in virtual time: delay with
//! correlated jitter, delay spikes (a stalled queue that then delivers in a burst),
//! random and bursty (Gilbert–Elliott) loss, reordering and duplication.
//!
//! Same seed, same network: every run of a test sees the identical packet fate.
//! [`simulate`] drives a [`JitterBuffer`] through a profile and reports late loss and
//! added delay; [`profile_table`] prints those figures for the standard profiles.

use crate::jitter::{JitterBuffer, JitterConfig, JitterPacket, Playout};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// SplitMix64: tiny, seedable, good enough for simulation (not for keys).
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponentially distributed with mean 1.
    pub fn exp(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }
}

/// Gilbert–Elliott two-state loss: a good state with `loss_good` and a bad (burst) state
/// with `loss_bad`, switching with the given per-packet probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Probability of entering the bad state from the good state, per packet.
    pub p_enter: f64,
    /// Probability of leaving the bad state, per packet.
    pub p_leave: f64,
    /// Loss probability while bad.
    pub loss_bad: f64,
}

/// How a path behaves. All times in milliseconds, probabilities per packet.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkProfile {
    /// Name for reports.
    pub name: &'static str,
    /// Fixed one-way delay.
    pub base_delay_ms: f64,
    /// Mean extra delay (exponential, correlated by `correlation`).
    pub jitter_ms: f64,
    /// How much of the previous packet's jitter carries over (0 = independent).
    pub correlation: f64,
    /// Probability that a queue stall starts at a packet.
    pub spike_probability: f64,
    /// Length of a stall; delayed packets then arrive in a burst.
    pub spike_ms: f64,
    /// A single stall at this time since the start, if any (for recovery tests).
    pub spike_at: Option<(Duration, f64)>,
    /// Independent random loss.
    pub loss: f64,
    /// Bursty loss on top, if any.
    pub burst_loss: Option<BurstLoss>,
    /// Probability a packet is held back behind the next two.
    pub reorder: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Seed of the random generator.
    pub seed: u64,
}

impl NetworkProfile {
    fn base(name: &'static str, seed: u64) -> Self {
        NetworkProfile {
            name,
            base_delay_ms: 1.0,
            jitter_ms: 0.0,
            correlation: 0.0,
            spike_probability: 0.0,
            spike_ms: 0.0,
            spike_at: None,
            loss: 0.0,
            burst_loss: None,
            reorder: 0.0,
            duplicate: 0.0,
            seed,
        }
    }

    /// A wired office LAN: sub-millisecond jitter, no loss.
    pub fn lan(seed: u64) -> Self {
        NetworkProfile {
            base_delay_ms: 0.5,
            jitter_ms: 0.3,
            correlation: 0.5,
            ..Self::base("LAN", seed)
        }
    }

    /// Home or office Wi-Fi: a few ms of jitter, occasional 80 ms stalls (retries,
    /// scanning), light loss, rare reorder and duplicates.
    pub fn wifi(seed: u64) -> Self {
        NetworkProfile {
            base_delay_ms: 3.0,
            jitter_ms: 6.0,
            correlation: 0.6,
            spike_probability: 0.005,
            spike_ms: 80.0,
            loss: 0.005,
            reorder: 0.002,
            duplicate: 0.001,
            ..Self::base("Wi-Fi", seed)
        }
    }

    /// A 3G-like mobile path: long base delay, heavy correlated jitter, 200 ms stalls,
    /// 1.5 % loss, some reorder and duplicates.
    pub fn mobile_3g(seed: u64) -> Self {
        NetworkProfile {
            base_delay_ms: 90.0,
            jitter_ms: 25.0,
            correlation: 0.7,
            spike_probability: 0.004,
            spike_ms: 200.0,
            loss: 0.015,
            reorder: 0.01,
            duplicate: 0.005,
            ..Self::base("3G-like", seed)
        }
    }

    /// Moderate jitter with Gilbert–Elliott bursty loss (≈3.5 % lost, in bursts).
    pub fn bursty_loss(seed: u64) -> Self {
        NetworkProfile {
            base_delay_ms: 25.0,
            jitter_ms: 5.0,
            correlation: 0.5,
            burst_loss: Some(BurstLoss {
                p_enter: 0.01,
                p_leave: 0.25,
                loss_bad: 0.9,
            }),
            ..Self::base("bursty loss", seed)
        }
    }

    /// A calm path with one 300 ms stall five seconds in (tests recovery after a burst).
    pub fn delay_burst(seed: u64) -> Self {
        NetworkProfile {
            base_delay_ms: 20.0,
            jitter_ms: 2.0,
            correlation: 0.5,
            spike_at: Some((Duration::from_secs(5), 300.0)),
            ..Self::base("one 300 ms stall", seed)
        }
    }
}

/// The emulated path. Feed it send times; it answers with arrival times.
#[derive(Debug, Clone)]
pub struct NetworkEmulator {
    profile: NetworkProfile,
    rng: SimRng,
    start: Option<Instant>,
    jitter: f64,
    stall_until: Option<Instant>,
    bad: bool,
    spike_done: bool,
}

impl NetworkEmulator {
    /// An emulator for `profile`.
    pub fn new(profile: NetworkProfile) -> Self {
        NetworkEmulator {
            rng: SimRng::new(profile.seed),
            profile,
            start: None,
            jitter: 0.0,
            stall_until: None,
            bad: false,
            spike_done: false,
        }
    }

    /// Arrival times of a packet sent at `sent`: none if lost, two if duplicated.
    pub fn transmit(&mut self, sent: Instant) -> Vec<Instant> {
        let p = &self.profile;
        let start = *self.start.get_or_insert(sent);
        // Loss.
        if let Some(b) = p.burst_loss {
            self.bad = if self.bad {
                !self.rng.chance(b.p_leave)
            } else {
                self.rng.chance(b.p_enter)
            };
            if self.bad && self.rng.chance(b.loss_bad) {
                return Vec::new();
            }
        }
        if self.rng.chance(p.loss) {
            return Vec::new();
        }
        // Correlated jitter.
        let fresh = self.rng.exp() * p.jitter_ms;
        self.jitter = p.correlation * self.jitter + (1.0 - p.correlation) * fresh;
        let mut delay = p.base_delay_ms + self.jitter;
        // Stalls: everything queued behind a stall leaves when it ends.
        if self.rng.chance(p.spike_probability) {
            self.stall_until = Some(sent + Duration::from_secs_f64(p.spike_ms / 1000.0));
        }
        if let Some((at, ms)) = p.spike_at
            && !self.spike_done
            && sent.saturating_duration_since(start) >= at
        {
            self.spike_done = true;
            self.stall_until = Some(sent + Duration::from_secs_f64(ms / 1000.0));
        }
        let mut arrival = sent + Duration::from_secs_f64(delay / 1000.0);
        if let Some(until) = self.stall_until {
            if until > sent {
                let released = until + Duration::from_secs_f64(p.base_delay_ms / 1000.0);
                arrival = arrival.max(released);
            } else {
                self.stall_until = None;
            }
        }
        if self.rng.chance(p.reorder) {
            delay = 45.0;
            arrival += Duration::from_secs_f64(delay / 1000.0);
        }
        let mut out = vec![arrival];
        if self.rng.chance(p.duplicate) {
            out.push(arrival + Duration::from_millis(1 + self.rng.next_u64() % 30));
        }
        out
    }
}

/// The outcome of [`simulate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Profile name.
    pub profile: &'static str,
    /// Packets sent.
    pub sent: u64,
    /// Lost in the network (never arrived), percent of sent.
    pub network_loss_percent: f64,
    /// Arrived too late to play, percent of sent.
    pub late_loss_percent: f64,
    /// Frames concealed (network + late loss as heard), percent of sent.
    pub concealed_percent: f64,
    /// Frames dropped or stretched to adapt, percent of sent.
    pub adapted_percent: f64,
    /// Mean one-way network delay of arrived packets, ms.
    pub mean_network_ms: f64,
    /// Mean delay added by the jitter buffer (playout − arrival), ms.
    pub mean_buffer_ms: f64,
    /// Mean sender-to-playout delay, ms.
    pub mean_mouth_to_ear_ms: f64,
    /// Mean target delay over the run, ms.
    pub mean_target_ms: f64,
    /// Target delay at the end, ms.
    pub final_target_ms: f64,
}

/// Sends `seconds` of `frame_ms` packets through `profile` into a [`JitterBuffer`] popped
/// every `frame_ms`, all in virtual time starting at `t0` (any instant: only differences
/// matter).
pub fn simulate(
    t0: Instant,
    profile: &NetworkProfile,
    seconds: u32,
    clock_rate: u32,
    frame_ms: u32,
) -> SimReport {
    let frame = Duration::from_millis(frame_ms as u64);
    let frame_units = clock_rate * frame_ms / 1000;
    let count = seconds * 1000 / frame_ms;
    let mut net = NetworkEmulator::new(profile.clone());
    let mut arrivals: Vec<(Instant, u32)> = Vec::new();
    let mut net_delay = 0f64;
    let mut arrived = std::collections::HashSet::new();
    for i in 0..count {
        let sent = t0 + frame * i;
        for at in net.transmit(sent) {
            if arrived.insert(i) {
                net_delay += (at - sent).as_secs_f64() * 1000.0;
            }
            arrivals.push((at, i));
        }
    }
    arrivals.sort();
    let mut jb = JitterBuffer::new(JitterConfig::new(clock_rate, frame_ms));
    let mut next = 0;
    let mut m2e = 0f64;
    let mut played = 0u64;
    let mut target_sum = 0f64;
    let mut at_end = None;
    let pops = count + 50;
    for k in 0..pops {
        // Pops happen half a millisecond after each frame boundary.
        let now = t0 + frame * k + Duration::from_micros(500);
        while next < arrivals.len() && arrivals[next].0 <= now {
            let i = arrivals[next].1;
            jb.push(
                arrivals[next].0,
                JitterPacket {
                    ssrc: 1,
                    timestamp: i * frame_units,
                    marker: i == 0,
                    payload: Bytes::new(),
                },
            );
            next += 1;
        }
        if let Playout::Frame(p) = jb.pop(now) {
            let sent = t0 + frame * (p.timestamp / frame_units);
            m2e += (now - sent).as_secs_f64() * 1000.0;
            played += 1;
        }
        target_sum += jb.target_delay().as_secs_f64() * 1000.0;
        // Count only what happened while the stream lasted, not the silence after it.
        let ended = jb
            .next_timestamp()
            .is_some_and(|ts| ts.wrapping_sub(count * frame_units) as i32 >= 0);
        if ended && at_end.is_none() {
            at_end = Some(jb.stats());
        }
    }
    let s = at_end.unwrap_or_else(|| jb.stats());
    let sent = count as u64;
    let pct = |n: u64| n as f64 * 100.0 / sent as f64;
    SimReport {
        profile: profile.name,
        sent,
        network_loss_percent: pct(sent - arrived.len() as u64),
        late_loss_percent: pct(s.late),
        concealed_percent: pct(s.concealed),
        adapted_percent: pct(s.dropped + s.stretched),
        mean_network_ms: net_delay / arrived.len().max(1) as f64,
        mean_buffer_ms: s.mean_buffer_delay_ms as f64,
        mean_mouth_to_ear_ms: m2e / played.max(1) as f64,
        mean_target_ms: target_sum / pops as f64,
        final_target_ms: jb.target_delay().as_secs_f64() * 1000.0,
    }
}

/// A text table of [`simulate`] over the standard profiles (seed 1, 20 ms G.711 frames),
/// in virtual time from `t0`.
pub fn profile_table(t0: Instant, seconds: u32) -> String {
    let mut out = format!(
        "{:<18} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}\n",
        "profile",
        "packets",
        "net loss",
        "late",
        "conceal",
        "adapt",
        "net ms",
        "buffer ms",
        "m2e ms",
        "target ms"
    );
    for p in [
        NetworkProfile::lan(1),
        NetworkProfile::wifi(1),
        NetworkProfile::mobile_3g(1),
        NetworkProfile::bursty_loss(1),
        NetworkProfile::delay_burst(1),
    ] {
        let r = simulate(t0, &p, seconds, 8000, 20);
        out.push_str(&format!(
            "{:<18} {:>7} {:>7.2}% {:>7.2}% {:>7.2}% {:>7.2}% {:>8.1} {:>9.1} {:>9.1} {:>9.1}\n",
            r.profile,
            r.sent,
            r.network_loss_percent,
            r.late_loss_percent,
            r.concealed_percent,
            r.adapted_percent,
            r.mean_network_ms,
            r.mean_buffer_ms,
            r.mean_mouth_to_ear_ms,
            r.mean_target_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::t0;

    #[test]
    fn same_seed_same_network() {
        let t0 = t0();
        let run = |seed| {
            let mut n = NetworkEmulator::new(NetworkProfile::mobile_3g(seed));
            (0..500u32)
                .map(|i| n.transmit(t0 + Duration::from_millis(20 * i as u64)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
    }

    #[test]
    fn profiles_have_the_advertised_character() {
        let t0 = t0();
        let stats = |p: NetworkProfile| {
            let mut n = NetworkEmulator::new(p);
            let (mut lost, mut dup, mut reordered, mut last) = (0, 0, 0, t0);
            for i in 0..20_000u32 {
                let a = n.transmit(t0 + Duration::from_millis(20 * i as u64));
                match a.len() {
                    0 => lost += 1,
                    2 => dup += 1,
                    _ => {}
                }
                if let Some(&first) = a.first() {
                    if first < last {
                        reordered += 1;
                    }
                    last = last.max(first);
                }
            }
            (lost as f64 / 200.0, dup, reordered)
        };
        let (lan_loss, lan_dup, lan_re) = stats(NetworkProfile::lan(1));
        assert_eq!((lan_loss, lan_dup, lan_re), (0.0, 0, 0));
        let (g_loss, g_dup, g_re) = stats(NetworkProfile::mobile_3g(1));
        assert!(g_loss > 1.0 && g_loss < 2.5, "{g_loss}");
        assert!(g_dup > 50 && g_re > 50);
        let (b_loss, _, _) = stats(NetworkProfile::bursty_loss(1));
        assert!(b_loss > 2.0 && b_loss < 6.0, "{b_loss}");
    }
}
