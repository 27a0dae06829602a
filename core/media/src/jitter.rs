//! Adaptive jitter buffer for one received audio stream.
//!
//! The driver [`JitterBuffer::push`]es every received packet with its arrival time and
//! [`JitterBuffer::pop`]s once per packet time (ptime). `pop` says what to play:
//! a packet to decode, a gap to conceal (with the next packet for Opus FEC), or silence.
//!
//! # How the delay adapts
//! For every packet the buffer records its *transit* — arrival time minus media
//! timestamp, both in RTP clock units. The lowest transit in a sliding window is the
//! fastest the network has been; how far others lag behind it is the jitter. The
//! target delay is a high quantile (98 %) of that lag over the last ~2.5 s of packets
//! plus a small margin, clamped to `[min_delay, max_delay]`: it follows the measured
//! jitter instead of a fixed 100 ms. Playout is steered toward the target one frame at a
//! time: frames are inserted (concealment while nothing is lost) when the buffer is
//! too shallow and dropped when it is too deep — gently (one frame in five) when
//! slightly deep, every frame when far too deep, so a burst of delayed packets drains in
//! well under a second once the window has forgotten the spike.
//!
//! Robustness: reordered packets are slotted by timestamp, duplicates and packets
//! that arrive after their playout time are discarded (and counted as late), a new
//! SSRC or a timestamp jump of more than [`RESYNC_JUMP`] restarts the buffer, and the
//! number of buffered packets is bounded.

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A timestamp jump larger than this (in time) restarts the buffer (a new talk source).
pub const RESYNC_JUMP: Duration = Duration::from_secs(5);
/// Packets of transit history the target delay is computed from (≈2.5 s at 20 ms).
const WINDOW: usize = 128;
/// Target quantile of the transit lag.
const QUANTILE: f64 = 0.98;
/// Frames played before the buffer counts as settled; until then it re-centres on every pop.
const STARTUP_FRAMES: u64 = 100;
/// Most safety margin added to the measured jitter, ms (half a frame for short frames).
const MAX_MARGIN_MS: u32 = 5;
/// Consecutive late packets (with nothing buffered) after which playout restarts.
const LATE_RUN_RESYNC: u32 = 3;

/// Jitter buffer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// Duration of one packet (and of one `pop`), in ms.
    pub frame_ms: u32,
    /// Smallest target delay, in ms.
    pub min_delay_ms: u32,
    /// Largest target delay, in ms (bounded growth).
    pub max_delay_ms: u32,
    /// Most packets held at once; older ones are dropped beyond this.
    pub max_packets: usize,
}

impl JitterConfig {
    /// Sensible defaults for a codec clock and packet time: 20–400 ms delay.
    pub fn new(clock_rate: u32, frame_ms: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_ms,
            min_delay_ms: frame_ms.max(20),
            max_delay_ms: 400,
            max_packets: 100,
        }
    }
}

/// A packet as the jitter buffer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterPacket {
    /// SSRC of the stream.
    pub ssrc: u32,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Codec payload.
    pub payload: Bytes,
}

/// What to play for the next frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Frame(JitterPacket),
    /// The packet for this frame is lost or late: conceal it. `next` is the payload of the
    /// following packet if already here (Opus recovers the frame from its FEC data).
    Conceal {
        /// The next packet's payload, for in-band FEC.
        next: Option<Bytes>,
    },
    /// Play one extra frame of concealment to deepen the buffer; nothing was lost.
    Stretch,
    /// Nothing to play (not started, or the peer is silent): play silence or comfort noise.
    Silence,
}

/// Counters and current delays, for statistics and tuning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets discarded because their playout time had passed.
    pub late: u64,
    /// Duplicate packets discarded.
    pub duplicates: u64,
    /// Frames played from packets.
    pub played: u64,
    /// Frames concealed because the packet was missing at playout time.
    pub concealed: u64,
    /// Frames inserted to grow the delay.
    pub stretched: u64,
    /// Frames dropped to shrink the delay.
    pub dropped: u64,
    /// Packets dropped because the buffer was full or they were too far ahead.
    pub overflow: u64,
    /// Restarts (SSRC change, timestamp jump).
    pub resyncs: u64,
    /// The current target delay, in ms.
    pub target_delay_ms: f32,
    /// Mean time played packets spent in the buffer, in ms.
    pub mean_buffer_delay_ms: f32,
}

/// The adaptive jitter buffer. See the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    epoch: Option<Instant>,
    frame: i64,
    ssrc: Option<u32>,
    last_ext: Option<i64>,
    packets: BTreeMap<i64, (JitterPacket, i64)>,
    playout: Option<i64>,
    transits: VecDeque<i64>,
    target: i64,
    last_arrival: i64,
    pops_since_drop: u32,
    late_run: u32,
    played_recent: VecDeque<i64>,
    delay_sum: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        let frame = (cfg.clock_rate as i64 * cfg.frame_ms as i64 / 1000).max(1);
        let target = cfg.clock_rate as i64 * cfg.min_delay_ms as i64 / 1000;
        JitterBuffer {
            cfg,
            epoch: None,
            frame,
            ssrc: None,
            last_ext: None,
            packets: BTreeMap::new(),
            playout: None,
            transits: VecDeque::with_capacity(WINDOW),
            target,
            last_arrival: 0,
            pops_since_drop: 0,
            late_run: 0,
            played_recent: VecDeque::with_capacity(64),
            delay_sum: 0.0,
            stats: JitterStats::default(),
        }
    }

    fn units(&self, ms: u32) -> i64 {
        self.cfg.clock_rate as i64 * ms as i64 / 1000
    }

    fn now_units(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        let d = now.saturating_duration_since(epoch);
        (d.as_nanos() * self.cfg.clock_rate as u128 / 1_000_000_000) as i64
    }

    fn to_ms(&self, units: f64) -> f32 {
        (units * 1000.0 / self.cfg.clock_rate as f64) as f32
    }

    /// Counters and delays so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats.clone();
        s.target_delay_ms = self.to_ms(self.target as f64);
        s.mean_buffer_delay_ms = if s.played == 0 {
            0.0
        } else {
            self.to_ms(self.delay_sum / s.played as f64)
        };
        s
    }

    /// The current target delay.
    pub fn target_delay(&self) -> Duration {
        Duration::from_nanos(
            (self.target as u64).saturating_mul(1_000_000_000) / self.cfg.clock_rate as u64,
        )
    }

    /// RTP timestamp of the next frame `pop` will play, once playout has started.
    pub fn next_timestamp(&self) -> Option<u32> {
        self.playout.map(|p| p as u32)
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packets are waiting.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Forgets everything about the stream except the counters.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.last_ext = None;
        self.packets.clear();
        self.playout = None;
        self.transits.clear();
        self.played_recent.clear();
        self.target = self.units(self.cfg.min_delay_ms);
    }

    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ext {
            None => ts as i64,
            Some(last) => last + (ts.wrapping_sub(last as u32) as i32 as i64),
        };
        if self.last_ext.is_none_or(|l| ext > l) {
            self.last_ext = Some(ext);
        }
        ext
    }

    fn update_target(&mut self, transit: i64) {
        if self.transits.len() == WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(transit);
        let min = *self.transits.iter().min().expect("non-empty");
        let mut lags: Vec<i64> = self.transits.iter().map(|t| t - min).collect();
        let k = ((lags.len() - 1) as f64 * QUANTILE).round() as usize;
        let (_, q, _) = lags.select_nth_unstable(k);
        let margin = (self.frame / 2).min(self.units(MAX_MARGIN_MS));
        self.target = (*q + margin).clamp(
            self.units(self.cfg.min_delay_ms),
            self.units(self.cfg.max_delay_ms),
        );
    }

    /// Offers a received packet at `now`.
    pub fn push(&mut self, now: Instant, packet: JitterPacket) {
        let arrival = self.now_units(now);
        self.stats.received += 1;
        if self.ssrc != Some(packet.ssrc) {
            if self.ssrc.is_some() {
                self.stats.resyncs += 1;
            }
            self.reset();
            self.ssrc = Some(packet.ssrc);
        }
        let mut ext = self.extend(packet.timestamp);
        let jump = self.units(RESYNC_JUMP.as_millis() as u32);
        let reference = self.playout.or(self.packets.keys().next().copied());
        if reference.is_some_and(|r| (ext - r).abs() > jump) {
            self.stats.resyncs += 1;
            let ssrc = packet.ssrc;
            self.reset();
            self.ssrc = Some(ssrc);
            ext = self.extend(packet.timestamp);
        }
        let transit = arrival - ext;
        if let Some(p) = self.playout
            && ext < p
        {
            if self.played_recent.contains(&ext) {
                self.stats.duplicates += 1;
                return;
            }
            self.late_run += 1;
            self.last_arrival = arrival;
            if self.late_run < LATE_RUN_RESYNC || !self.packets.is_empty() {
                self.stats.late += 1;
                // A late packet still tells us about the network's delay.
                self.update_target(transit);
                return;
            }
            // Nothing but late packets: playout ran ahead of the stream (the sender's
            // clock stepped back, e.g. after a capture glitch) and would stay ahead for
            // good. The transit history describes the old timing: start over from here.
            self.stats.resyncs += 1;
            self.playout = None;
            self.transits.clear();
        }
        self.late_run = 0;
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.last_arrival = arrival;
        self.update_target(transit);
        self.packets.insert(ext, (packet, arrival));
        let max_ahead = self.units(self.cfg.max_delay_ms) * 4;
        while self.packets.len() > self.cfg.max_packets
            || self.playout.is_some_and(|p| {
                self.packets
                    .keys()
                    .next_back()
                    .is_some_and(|&k| k - p > max_ahead)
            })
        {
            self.packets.pop_first();
            self.stats.overflow += 1;
            if let Some(p) = self.playout.as_mut()
                && let Some(&k) = self.packets.keys().next()
            {
                *p = (*p).max(k);
            }
        }
    }

    /// Where playout should be now: the timestamp that arrived `target` ago on the
    /// fastest path seen.
    fn ideal(&self, now_units: i64) -> Option<i64> {
        let min = *self.transits.iter().min()?;
        Some(now_units - min - self.target)
    }

    fn take(&mut self, key: i64, now_units: i64) -> JitterPacket {
        let (pkt, arrival) = self.packets.remove(&key).expect("key present");
        self.delay_sum += (now_units - arrival) as f64;
        self.stats.played += 1;
        if self.played_recent.len() == 64 {
            self.played_recent.pop_front();
        }
        self.played_recent.push_back(key);
        pkt
    }

    /// What to play for the frame starting at `now`. Call once per packet time.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let now_units = self.now_units(now);
        let Some(ideal) = self.ideal(now_units) else {
            return Playout::Silence;
        };
        let half = self.frame / 2;
        let mut pos = match self.playout {
            Some(p) => p,
            None => {
                // A backlog that piled up before the first pop (the peer sent before our
                // media started) is skipped, not played late: start at the oldest packet
                // that is still due.
                while self.packets.len() > 1 {
                    let Some((&k, _)) = self.packets.first_key_value() else {
                        break;
                    };
                    if k + half >= ideal {
                        break;
                    }
                    self.packets.pop_first();
                    self.stats.dropped += 1;
                }
                // Start once the first packet has waited its target delay.
                let Some(&first) = self.packets.keys().next() else {
                    return Playout::Silence;
                };
                if ideal + half < first {
                    return Playout::Silence;
                }
                self.playout = Some(first);
                first
            }
        };
        self.pops_since_drop += 1;
        let error = pos - ideal; // > 0: too shallow, < 0: too deep
        if error > self.frame + half {
            self.stats.stretched += 1;
            return Playout::Stretch;
        }
        if error < -self.frame {
            // Too deep by more than a frame: skip frames (the next packet still waits at
            // least the target). Far too deep (a drained burst): skip straight to the ideal
            // position; slightly: one frame in five, except while the buffer is young (the
            // first seconds decide the delay of the whole call: re-centre at once).
            let far = error < -4 * self.frame;
            let young = self.stats.played < STARTUP_FRAMES;
            if far || young || self.pops_since_drop >= 5 {
                self.pops_since_drop = 0;
                let skip_to = if far { ideal } else { pos + self.frame };
                while let Some((&k, _)) = self.packets.first_key_value() {
                    if k + half >= skip_to {
                        break;
                    }
                    self.packets.pop_first();
                    self.stats.dropped += 1;
                }
                pos = skip_to;
            }
        }
        // The packet for this slot: one whose timestamp lies within half a frame.
        let hit = self
            .packets
            .range(pos - half..pos + half)
            .next()
            .map(|(&k, _)| k);
        if let Some(k) = hit {
            let pkt = self.take(k, now_units);
            self.playout = Some(k + self.frame);
            return Playout::Frame(pkt);
        }
        // Discard anything stale that slipped behind the playout point.
        while let Some((&k, _)) = self.packets.first_key_value() {
            if k >= pos {
                break;
            }
            self.packets.pop_first();
            self.stats.late += 1;
        }
        self.playout = Some(pos + self.frame);
        let silent_for = now_units - self.last_arrival;
        if self.packets.is_empty() && silent_for > self.target + 10 * self.frame {
            // The peer stopped sending (DTX, hold): that is silence, not loss.
            return Playout::Silence;
        }
        self.stats.concealed += 1;
        let next = self
            .packets
            .range(pos + half..pos + self.frame + half)
            .next()
            .map(|(_, (p, _))| p.payload.clone());
        Playout::Conceal { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netem::{NetworkProfile, simulate};
    use crate::test_util::t0;

    fn pkt(ssrc: u32, ts: u32) -> JitterPacket {
        JitterPacket {
            ssrc,
            timestamp: ts,
            marker: false,
            payload: Bytes::from(ts.to_be_bytes().to_vec()),
        }
    }

    fn ts_of(p: &Playout) -> Option<u32> {
        match p {
            Playout::Frame(f) => Some(f.timestamp),
            _ => None,
        }
    }

    #[test]
    fn in_order_stream_plays_every_frame_at_min_delay() {
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        let mut played = Vec::new();
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            jb.push(now, pkt(1, i * 160));
            if let Some(ts) = ts_of(&jb.pop(now)) {
                played.push(ts);
            }
        }
        assert_eq!(
            played,
            (0..played.len() as u32)
                .map(|i| i * 160)
                .collect::<Vec<_>>()
        );
        assert!(played.len() >= 98);
        let s = jb.stats();
        assert_eq!(s.late + s.concealed + s.dropped, 0);
        assert!(s.mean_buffer_delay_ms <= 20.0, "{s:?}");
    }

    #[test]
    fn a_backlog_found_at_the_first_pop_is_skipped_not_played_late() {
        // The peer sent for 2 s before our media thread first popped: 100 packets are
        // already here, stamped with their real arrival times.
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        for i in 0..100u32 {
            jb.push(t0 + Duration::from_millis(20 * i as u64), pkt(1, i * 160));
        }
        let now = t0 + Duration::from_millis(2000);
        jb.push(now, pkt(1, 100 * 160));
        let first = ts_of(&jb.pop(now)).expect("plays at once");
        assert!(first >= 98 * 160, "started at packet {}", first / 160);
        assert!(jb.stats().dropped >= 98);
    }

    #[test]
    fn playout_ahead_of_the_stream_restarts() {
        // The sender's timestamps step back by 200 ms (its capture glitched) while it
        // keeps sending in real time: every packet is now "late". After a few, playout
        // restarts and plays the stream again.
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        let mut played_after = 0;
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let ts = if i < 100 { i * 160 } else { (i - 10) * 160 };
            jb.push(now, pkt(1, ts));
            if ts_of(&jb.pop(now)).is_some() && i >= 150 {
                played_after += 1;
            }
        }
        assert!(played_after >= 49, "played {played_after} of the last 50");
        assert!(jb.stats().resyncs >= 1, "{:?}", jb.stats());
    }

    #[test]
    fn reorder_duplicates_and_loss() {
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        // Packets 0..50 arrive in pairs swapped, 7 is lost, 9 is duplicated.
        let mut order: Vec<u32> = Vec::new();
        for i in (0..50).step_by(2) {
            order.push(i + 1);
            order.push(i);
        }
        order.retain(|&i| i != 7);
        order.insert(12, 9);
        let mut out = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * n as u64);
            jb.push(now, pkt(5, i * 160));
            out.push(jb.pop(now));
        }
        let frames: Vec<u32> = out.iter().filter_map(ts_of).map(|t| t / 160).collect();
        let mut sorted = frames.clone();
        sorted.sort();
        assert_eq!(frames, sorted, "played in order");
        assert!(!frames.contains(&7));
        assert!(
            out.iter()
                .any(|p| matches!(p, Playout::Conceal { next: Some(_) })),
            "gap at 7 concealed with FEC source"
        );
        let s = jb.stats();
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.concealed, 1);
    }

    #[test]
    fn ssrc_change_and_timestamp_jump_resync() {
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        for i in 0..20u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            jb.push(now, pkt(1, i * 160));
            jb.pop(now);
        }
        let mut played_new = 0;
        for i in 20..60u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let p = if i < 40 {
                pkt(2, 999_000 + i * 160)
            } else {
                pkt(2, 4_000_000_000u32.wrapping_add(i * 160))
            };
            jb.push(now, p);
            if ts_of(&jb.pop(now)).is_some() {
                played_new += 1;
            }
        }
        let s = jb.stats();
        assert_eq!(s.resyncs, 2, "{s:?}");
        assert!(played_new >= 34, "played {played_new}");
        assert_eq!(s.late, 0);
    }

    #[test]
    fn timestamp_wrap_is_seamless() {
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        let start = u32::MAX - 160 * 10;
        let mut played = 0;
        for i in 0..40u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            jb.push(now, pkt(1, start.wrapping_add(i * 160)));
            if ts_of(&jb.pop(now)).is_some() {
                played += 1;
            }
        }
        assert!(played >= 38);
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn silence_when_peer_stops_and_bounded_growth() {
        let t0 = t0();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
        for i in 0..10u32 {
            jb.push(t0 + Duration::from_millis(20 * i as u64), pkt(1, i * 160));
        }
        let mut last = Playout::Silence;
        for i in 0..30u32 {
            last = jb.pop(t0 + Duration::from_millis(20 * i as u64));
        }
        assert_eq!(last, Playout::Silence);
        // A flood of packets far ahead cannot grow the buffer without bound.
        for i in 0..1000u32 {
            jb.push(t0 + Duration::from_millis(600), pkt(1, 1600 + i * 160));
        }
        assert!(jb.len() <= 100);
        assert!(jb.target_delay() <= Duration::from_millis(400));
    }

    #[test]
    fn target_follows_jitter_and_recovers_after_burst() {
        let calm = simulate(t0(), &NetworkProfile::lan(1), 20, 8000, 20);
        let jittery = simulate(t0(), &NetworkProfile::mobile_3g(1), 20, 8000, 20);
        assert!(calm.mean_target_ms < 30.0, "{calm:?}");
        assert!(
            jittery.mean_target_ms > calm.mean_target_ms * 2.0,
            "{jittery:?}"
        );
        let burst = simulate(t0(), &NetworkProfile::delay_burst(3), 30, 8000, 20);
        // A 300 ms stall happens once; ten seconds later the buffer is shallow again.
        assert!(burst.final_target_ms < 80.0, "{burst:?}");
        assert!(burst.late_loss_percent < 3.0, "{burst:?}");
    }

    #[test]
    #[ignore = "prints the profile table; run with --ignored --nocapture"]
    fn print_profile_table() {
        println!("{}", crate::netem::profile_table(t0(), 60));
    }
}
