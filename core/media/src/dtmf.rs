//! DTMF: RFC 4733 telephone-events (send and receive), in-band tone detection
//! (Goertzel, ITU-T Q.24 style checks) and a tone generator.

use crate::dsp::{energy, goertzel_power};
use std::collections::VecDeque;
use std::f64::consts::PI;
use std::time::{Duration, Instant};
use thiserror::Error;

/// DTMF misuse or a broken event payload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DtmfError {
    /// Not one of `0-9 * # A-D` (our misuse).
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    /// A telephone-event payload shorter than 4 bytes (the sender's fault, RFC 4733 §2.3).
    #[error("telephone-event payload of {0} bytes")]
    ShortPayload(usize),
}

/// Row frequencies (Hz), ITU-T Q.23.
pub const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column frequencies (Hz), ITU-T Q.23.
pub const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The RFC 4733 §3.2 event code of a digit.
pub fn event_code(digit: char) -> Result<u8, DtmfError> {
    Ok(match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        d @ 'A'..='D' => d as u8 - b'A' + 12,
        other => return Err(DtmfError::BadDigit(other)),
    })
}

/// The digit for an RFC 4733 event code (0–15; 16 is flash, not a digit).
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

fn frequencies(digit: char) -> Result<(f64, f64), DtmfError> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYPAD.iter().enumerate() {
        if let Some(c) = row.iter().position(|&k| k == d) {
            return Ok((ROWS[r], COLS[c]));
        }
    }
    Err(DtmfError::BadDigit(digit))
}

/// One RTP packet of a telephone-event, ready for [`crate::rtp::RtpSession::build_rtp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The negotiated telephone-event payload type.
    pub payload_type: u8,
    /// Marker: set on the first packet of an event only (RFC 4733 §2.5.1.1).
    pub marker: bool,
    /// The event's timestamp: the same for every packet of the event (§2.5.1.2).
    pub timestamp: u32,
    /// The 4-byte payload (§2.3).
    pub payload: [u8; 4],
    /// Whether this is one of the end packets.
    pub end: bool,
}

#[derive(Debug, Clone)]
struct Sending {
    code: u8,
    timestamp: u32,
    total: u32,
    elapsed: u32,
    ends_sent: u8,
}

/// RFC 4733 sender. Call [`DtmfSender::next_packet`] every packet time; while it returns
/// packets, send them instead of audio.
///
/// Guarantees (§2.5.1): the first packet has the marker bit; every packet of an event
/// carries the event's start timestamp; the duration grows by one packet time per
/// packet; the end is sent three times with the final duration; events are separated by
/// at least [`DtmfSender::GAP`] of audio.
#[derive(Debug)]
pub struct DtmfSender {
    payload_type: u8,
    packet_units: u32,
    clock_rate: u32,
    volume: u8,
    queue: VecDeque<(u8, u32)>,
    current: Option<Sending>,
    gap_left: u32,
}

impl DtmfSender {
    /// Minimum pause between two events.
    pub const GAP: Duration = Duration::from_millis(60);

    /// A sender using `payload_type` at `clock_rate`, one packet every `ptime_ms`.
    pub fn new(payload_type: u8, clock_rate: u32, ptime_ms: u32) -> Self {
        DtmfSender {
            payload_type,
            packet_units: clock_rate * ptime_ms / 1000,
            clock_rate,
            volume: 10,
            queue: VecDeque::new(),
            current: None,
            gap_left: 0,
        }
    }

    /// Queues `digit` for `duration` (at least 40 ms, at most 5 s).
    pub fn send(&mut self, digit: char, duration: Duration) -> Result<(), DtmfError> {
        let code = event_code(digit)?;
        let ms = duration.as_millis().clamp(40, 5000) as u32;
        self.queue.push_back((code, self.clock_rate / 1000 * ms));
        Ok(())
    }

    /// Whether events are being sent or waiting.
    pub fn is_active(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty() || self.gap_left > 0
    }

    /// The packet for this packet time, or `None` to send audio. `media_ts` is the RTP
    /// timestamp the audio packet for this packet time would carry.
    pub fn next_packet(&mut self, media_ts: u32) -> Option<DtmfPacket> {
        if self.current.is_none() {
            if self.gap_left > 0 {
                self.gap_left = self.gap_left.saturating_sub(self.packet_units);
                return None;
            }
            let (code, total) = self.queue.pop_front()?;
            self.current = Some(Sending {
                code,
                timestamp: media_ts,
                total,
                elapsed: 0,
                ends_sent: 0,
            });
        }
        let s = self.current.as_mut().expect("set above");
        let marker = s.elapsed == 0;
        let end = s.elapsed >= s.total;
        if end {
            s.ends_sent += 1;
        } else {
            s.elapsed = (s.elapsed + self.packet_units).min(s.total);
        }
        let duration = s.elapsed.min(u16::MAX as u32) as u16;
        let end = end || s.elapsed >= s.total;
        if end && s.ends_sent == 0 {
            s.ends_sent = 1;
        }
        let payload = [
            s.code,
            if end { 0x80 } else { 0 } | (self.volume & 0x3f),
            (duration >> 8) as u8,
            duration as u8,
        ];
        let pkt = DtmfPacket {
            payload_type: self.payload_type,
            marker,
            timestamp: s.timestamp,
            payload,
            end,
        };
        if s.ends_sent >= 3 {
            self.current = None;
            self.gap_left = self.clock_rate * Self::GAP.as_millis() as u32 / 1000;
        }
        Some(pkt)
    }
}

/// A detected or received digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtmfNotice {
    /// A key went down (first packet of an event).
    Started(char),
    /// A key came up, with how long it was held.
    Ended {
        /// The digit.
        digit: char,
        /// How long.
        duration: Duration,
    },
}

#[derive(Debug, Clone)]
struct Receiving {
    timestamp: u32,
    code: u8,
    duration: u16,
    last_seen: Instant,
}

/// RFC 4733 receiver: de-duplicates the repeated packets, reports each event once, and
/// ends an event whose end packets were all lost — when the next event starts, or after
/// [`DtmfReceiver::END_TIMEOUT`] without packets.
#[derive(Debug)]
pub struct DtmfReceiver {
    clock_rate: u32,
    current: Option<Receiving>,
    finished: VecDeque<u32>,
    notices: VecDeque<DtmfNotice>,
}

impl DtmfReceiver {
    /// Silence after which an event without end packets is taken as ended.
    pub const END_TIMEOUT: Duration = Duration::from_millis(250);

    /// A receiver for events at `clock_rate`.
    pub fn new(clock_rate: u32) -> Self {
        DtmfReceiver {
            clock_rate,
            current: None,
            finished: VecDeque::with_capacity(16),
            notices: VecDeque::new(),
        }
    }

    fn finish(&mut self) {
        if let Some(c) = self.current.take() {
            if let Some(digit) = event_digit(c.code) {
                let duration =
                    Duration::from_micros(c.duration as u64 * 1_000_000 / self.clock_rate as u64);
                self.notices
                    .push_back(DtmfNotice::Ended { digit, duration });
            }
            if self.finished.len() == 16 {
                self.finished.pop_front();
            }
            self.finished.push_back(c.timestamp);
        }
    }

    /// Handles one telephone-event RTP packet (its timestamp and payload).
    pub fn handle(
        &mut self,
        now: Instant,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), DtmfError> {
        if payload.len() < 4 {
            return Err(DtmfError::ShortPayload(payload.len()));
        }
        let code = payload[0];
        let end = payload[1] & 0x80 != 0;
        let duration = u16::from_be_bytes([payload[2], payload[3]]);
        if self.finished.contains(&timestamp) {
            return Ok(()); // a repeated end packet of an event already reported
        }
        match &mut self.current {
            Some(c) if c.timestamp == timestamp => {
                c.duration = c.duration.max(duration);
                c.last_seen = now;
            }
            _ => {
                self.finish(); // the previous event's end packets were lost
                if let Some(d) = event_digit(code) {
                    self.notices.push_back(DtmfNotice::Started(d));
                }
                self.current = Some(Receiving {
                    timestamp,
                    code,
                    duration,
                    last_seen: now,
                });
            }
        }
        if end {
            self.finish();
        }
        Ok(())
    }

    /// The next notice; also ends a silent event after [`Self::END_TIMEOUT`].
    pub fn poll(&mut self, now: Instant) -> Option<DtmfNotice> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| now.saturating_duration_since(c.last_seen) >= Self::END_TIMEOUT)
        {
            self.finish();
        }
        self.notices.pop_front()
    }

    /// When to call [`Self::poll`] to catch a lost end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .as_ref()
            .map(|c| c.last_seen + Self::END_TIMEOUT)
    }
}

/// Generates a DTMF digit sample-exactly: sample `n` of the tone is a pure function of
/// `n`, so a tone can be produced in pieces of any size.
#[derive(Debug, Clone)]
pub struct DtmfGenerator {
    rate: u32,
    low: f64,
    high: f64,
    amplitude: f64,
}

impl DtmfGenerator {
    /// A generator for `digit` at `rate`, each tone at peak `amplitude` (7000 ≈ −10 dBm0).
    pub fn new(digit: char, rate: u32, amplitude: f64) -> Result<Self, DtmfError> {
        let (low, high) = frequencies(digit)?;
        Ok(DtmfGenerator {
            rate,
            low,
            high,
            amplitude,
        })
    }

    /// Fills `out` with samples `start..start + out.len()` of the tone.
    pub fn fill(&self, start: u64, out: &mut [i16]) {
        let r = self.rate as f64;
        for (i, s) in out.iter_mut().enumerate() {
            let n = (start + i as u64) as f64;
            let v = self.amplitude
                * ((2.0 * PI * self.low * n / r).sin() + (2.0 * PI * self.high * n / r).sin());
            *s = crate::dsp::to_i16(v as f32);
        }
    }
}

/// In-band DTMF detector (Goertzel on 20 ms blocks). Checks, after ITU-T Q.24: both
/// tones above a minimum level, twist within +8/−4 dB, each peak 6 dB above the other
/// tones of its group, and the two tones carrying most of the block's energy (so speech
/// and music do not trigger it). A digit must hold for two blocks (40 ms) and is reported
/// once per key press.
#[derive(Debug)]
pub struct DtmfDetector {
    rate: u32,
    block: usize,
    buf: Vec<i16>,
    candidate: Option<char>,
    hits: u32,
    reported: Option<char>,
    notices: VecDeque<char>,
}

impl DtmfDetector {
    /// A detector for audio at `rate`.
    pub fn new(rate: u32) -> Self {
        let block = (rate / 50) as usize;
        DtmfDetector {
            rate,
            block,
            buf: Vec::with_capacity(block),
            candidate: None,
            hits: 0,
            reported: None,
            notices: VecDeque::new(),
        }
    }

    /// Feeds audio; detected digits come out of [`Self::poll`].
    pub fn process(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(self.block) {
            let take = (self.block - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            let rest = &chunk[take..];
            if self.buf.len() == self.block {
                let d = self.classify();
                self.buf.clear();
                self.step(d);
            }
            self.buf.extend_from_slice(rest);
        }
    }

    /// The next detected digit.
    pub fn poll(&mut self) -> Option<char> {
        self.notices.pop_front()
    }

    fn step(&mut self, d: Option<char>) {
        match d {
            Some(c) if self.candidate == Some(c) => self.hits += 1,
            Some(c) => {
                self.candidate = Some(c);
                self.hits = 1;
            }
            None => {
                self.candidate = None;
                self.hits = 0;
                self.reported = None;
            }
        }
        if self.hits >= 2 && self.reported != self.candidate {
            self.reported = self.candidate;
            self.notices.extend(self.candidate);
        }
    }

    fn classify(&self) -> Option<char> {
        let b = &self.buf;
        let rows: Vec<f64> = ROWS
            .iter()
            .map(|&f| goertzel_power(b, self.rate, f))
            .collect();
        let cols: Vec<f64> = COLS
            .iter()
            .map(|&f| goertzel_power(b, self.rate, f))
            .collect();
        let best = |v: &[f64]| {
            let (i, &m) = v
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .expect("4 bins");
            let second = v
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, &x)| x)
                .fold(0.0, f64::max);
            (i, m, second)
        };
        let (r, rp, r2) = best(&rows);
        let (c, cp, c2) = best(&cols);
        // A sine of peak A has Goertzel power A²/4; require A ≥ 500 (≈ −33 dBm0) per tone.
        let min = 500.0 * 500.0 / 4.0;
        if rp < min || cp < min {
            return None;
        }
        // Twist: row (low) may be up to 8 dB above column, column up to 4 dB above row.
        if rp > cp * 6.3 || cp > rp * 2.5 {
            return None;
        }
        if rp < r2 * 4.0 || cp < c2 * 4.0 {
            return None;
        }
        // The two tones hold most of the energy (tone power A²/4 ↔ block energy A²/2).
        if 2.0 * (rp + cp) < 0.7 * energy(b) {
            return None;
        }
        Some(KEYPAD[r][c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::sine;
    use crate::test_util::t0;

    #[test]
    fn sender_follows_rfc4733() {
        let mut s = DtmfSender::new(96, 8000, 20);
        s.send('5', Duration::from_millis(100)).unwrap();
        s.send('#', Duration::from_millis(40)).unwrap();
        assert_eq!(
            s.send('x', Duration::from_millis(40)),
            Err(DtmfError::BadDigit('X'))
        );
        let mut pkts = Vec::new();
        let mut audio = 0;
        for i in 0..40u32 {
            match s.next_packet(1000 + i * 160) {
                Some(p) => pkts.push(p),
                None => audio += 1,
            }
        }
        let first: Vec<&DtmfPacket> = pkts.iter().filter(|p| p.payload[0] == 5).collect();
        assert_eq!(
            first.len(),
            5 + 2,
            "5 packets of 20 ms growing, then 2 more end repeats"
        );
        assert!(first[0].marker && first[1..].iter().all(|p| !p.marker));
        assert!(
            first
                .iter()
                .all(|p| p.timestamp == 1000 && p.payload_type == 96)
        );
        let durations: Vec<u16> = first
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        assert_eq!(first.iter().filter(|p| p.end).count(), 3);
        let hash: Vec<&DtmfPacket> = pkts.iter().filter(|p| p.payload[0] == 11).collect();
        assert_eq!(hash.len(), 4);
        assert!(
            hash[0].timestamp > 1000 + 6 * 160,
            "a gap of audio separates events"
        );
        assert!(audio >= 3);
        assert!(!s.is_active());
    }

    #[test]
    fn receiver_dedupes_and_survives_lost_end_packets() {
        let t0 = t0();
        let mut snd = DtmfSender::new(101, 8000, 20);
        for d in ['1', '2', '3'] {
            snd.send(d, Duration::from_millis(80)).unwrap();
        }
        let mut rx = DtmfReceiver::new(8000);
        let mut got = Vec::new();
        for i in 0..60u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            if let Some(p) = snd.next_packet(i * 160) {
                // Digit 2 loses every end packet; every packet of digit 3 arrives twice.
                if p.payload[0] == 2 && p.end {
                    continue;
                }
                rx.handle(now, p.timestamp, &p.payload).unwrap();
                if p.payload[0] == 3 {
                    rx.handle(now, p.timestamp, &p.payload).unwrap();
                }
            }
            while let Some(n) = rx.poll(now) {
                got.push(n);
            }
        }
        let ends: Vec<char> = got
            .iter()
            .filter_map(|n| match n {
                DtmfNotice::Ended { digit, duration } => {
                    assert!(*duration >= Duration::from_millis(60));
                    Some(*digit)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ends, vec!['1', '2', '3']);
        assert_eq!(
            got.iter()
                .filter(|n| matches!(n, DtmfNotice::Started(_)))
                .count(),
            3
        );
        assert_eq!(rx.handle(t0, 0, &[1, 2]), Err(DtmfError::ShortPayload(2)));
    }

    #[test]
    fn lone_event_without_end_times_out() {
        let t0 = t0();
        let mut rx = DtmfReceiver::new(8000);
        rx.handle(t0, 500, &[9, 10, 0, 160]).unwrap();
        assert_eq!(rx.poll(t0), Some(DtmfNotice::Started('9')));
        assert_eq!(rx.poll(t0 + Duration::from_millis(100)), None);
        assert_eq!(rx.poll_timeout(), Some(t0 + DtmfReceiver::END_TIMEOUT));
        assert!(matches!(
            rx.poll(t0 + Duration::from_millis(300)),
            Some(DtmfNotice::Ended { digit: '9', .. })
        ));
    }

    #[test]
    fn detects_every_generated_digit_once() {
        for rate in [8000, 16000] {
            let mut det = DtmfDetector::new(rate);
            let digits = "0123456789*#ABCD";
            for d in digits.chars() {
                let g = DtmfGenerator::new(d, rate, 5000.0).unwrap();
                let mut tone = vec![0i16; rate as usize / 10];
                // Generate in odd pieces to check sample-exact continuation.
                let (a, b) = tone.split_at_mut(333);
                g.fill(0, a);
                g.fill(333, b);
                det.process(&tone);
                det.process(&vec![0; rate as usize / 20]);
            }
            let mut got = String::new();
            while let Some(c) = det.poll() {
                got.push(c);
            }
            assert_eq!(got, digits, "at {rate} Hz");
        }
    }

    #[test]
    fn detector_rejects_speechlike_and_weak_signals() {
        let mut det = DtmfDetector::new(8000);
        // A single tone at a DTMF row frequency.
        det.process(&sine(8000, 697.0, 8000.0, 4000));
        // Two DTMF tones under loud broadband noise.
        let g = DtmfGenerator::new('5', 8000, 3000.0).unwrap();
        let mut tone = vec![0i16; 4000];
        g.fill(0, &mut tone);
        let mut x = 1u32;
        for s in tone.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *s = s.saturating_add(((x >> 16) as i16) / 2);
        }
        det.process(&tone);
        // Too quiet.
        let quiet = DtmfGenerator::new('1', 8000, 100.0).unwrap();
        let mut q = vec![0i16; 4000];
        quiet.fill(0, &mut q);
        det.process(&q);
        // Excessive twist: column 12 dB above row.
        let mut twisted: Vec<i16> = sine(8000, 770.0, 1000.0, 4000);
        for (s, c) in twisted.iter_mut().zip(sine(8000, 1336.0, 4000.0, 4000)) {
            *s = s.saturating_add(c);
        }
        det.process(&twisted);
        assert_eq!(det.poll(), None);
    }

    #[test]
    fn event_codes() {
        assert_eq!(event_code('*').unwrap(), 10);
        assert_eq!(event_code('d').unwrap(), 15);
        assert_eq!(event_digit(11), Some('#'));
        assert_eq!(event_digit(16), None);
    }
}
