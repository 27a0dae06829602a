//! RTP/RTCP session for one audio stream (RFC 3550): sequence and timestamp bookkeeping,
//! symmetric RTP latching for NAT, SSRC changes, sender/receiver reports, and the call
//! statistics they yield.
//!
//! Sans-IO: the driver passes every received datagram with its source `SocketAddr` and
//! the current `Instant`, sends what [`RtpSession::build_rtp`] and
//! [`RtpSession::poll_rtcp`] return to [`RtpSession::remote_rtp`] /
//! [`RtpSession::remote_rtcp`], and calls `poll_rtcp` again at
//! [`RtpSession::poll_timeout`]. Wall-clock time (for the NTP timestamps of sender
//! reports) is fixed once at construction as an NTP value matching the `Instant` given.

use bytes::Bytes;
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::packet::Packet as RtcpPacket;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use rtc_rtp::{Header, Packet};
use rtc_shared::marshal::{Marshal, Unmarshal};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use thiserror::Error;

/// RFC 3550 A.1: a jump larger than this is a restart, not loss.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: packets this far behind are reordered/duplicates, not a restart.
const MAX_MISORDER: u16 = 100;
/// Minimum RTCP interval for a two-party call (RFC 3550 §6.2 uses 5 s).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// A datagram that is not acceptable RTP/RTCP. Always the sender's fault: count and drop.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtpError {
    /// Not an RTP version 2 packet, or truncated.
    #[error("malformed RTP: {0}")]
    Malformed(String),
    /// A payload type that was not negotiated.
    #[error("payload type {0} not negotiated")]
    UnknownPayloadType(u8),
    /// Malformed RTCP.
    #[error("malformed RTCP: {0}")]
    MalformedRtcp(String),
    /// A packet from a source we may not latch to (its sequence jumped, RFC 3550 A.1 probation).
    #[error("packet rejected by sequence validation")]
    BadSequence,
}

/// Whether a datagram on a muxed port is RTCP (RFC 5761 §4: second byte 192..=223).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Something the driver or UI should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpEvent {
    /// Symmetric RTP latched to a new source address (RFC 4961; NAT traversal): send there.
    RemoteAddressChanged(SocketAddr),
    /// The peer's SSRC changed (e.g. after a transfer); jitter buffer and decoder should reset.
    SsrcChanged {
        /// The previous SSRC.
        old: u32,
        /// The new SSRC.
        new: u32,
    },
    /// The peer sent RTCP BYE.
    Bye,
}

/// A received, validated RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number as sent.
    pub seq: u16,
    /// Extended sequence number (cycles × 65536 + seq, RFC 3550 A.1).
    pub ext_seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (start of talk spurt for audio, first packet of a DTMF event).
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Payload (padding removed).
    pub payload: Bytes,
    /// Whether this packet was already received (duplicate).
    pub duplicate: bool,
}

/// Figures for the UI's call-quality panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// Codec name (filled in by whoever knows it; see [`RtpSession::stats`]).
    pub codec: String,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Payload octets sent.
    pub octets_sent: u64,
    /// RTP packets received (including duplicates, as RFC 3550 A.3 counts).
    pub packets_received: u64,
    /// Cumulative packets lost (RFC 3550 A.3; negative with duplicates).
    pub packets_lost: i64,
    /// Lost / expected since the stream began, in percent.
    pub loss_percent: f32,
    /// Interarrival jitter (RFC 3550 A.8), in milliseconds.
    pub jitter_ms: f32,
    /// Loss the peer reports for our stream (last RR fraction lost), in percent.
    pub remote_loss_percent: Option<f32>,
    /// Jitter the peer reports for our stream, in milliseconds.
    pub remote_jitter_ms: Option<f32>,
    /// Round-trip time from the last report block with LSR/DLSR (RFC 3550 §6.4.1).
    pub rtt_ms: Option<f32>,
    /// Duplicate packets seen.
    pub duplicates: u64,
    /// How often the peer's SSRC changed.
    pub ssrc_changes: u32,
    /// Where we currently send RTP.
    pub remote_addr: Option<SocketAddr>,
}

/// Reception state of the peer's current SSRC (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u64,
    base_seq: u64,
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    jitter: f64,
    duplicates: u64,
    recent: VecDeque<u64>,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Self {
        Source {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: seq as u64,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            duplicates: 0,
            recent: VecDeque::with_capacity(64),
        }
    }

    fn ext_max(&self) -> u64 {
        self.cycles + self.max_seq as u64
    }

    /// RFC 3550 A.1 `update_seq`, returning the packet's extended sequence number, or
    /// `None` if it belongs to a jump that needs a second packet to confirm.
    fn update_seq(&mut self, seq: u16) -> Option<u64> {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: believe it only if the next packet continues from it.
            if self.bad_seq == Some(seq) {
                let ssrc = self.ssrc;
                let cycles = self.cycles;
                *self = Source::new(ssrc, seq);
                // Keep the extended numbering monotonic across the restart.
                self.cycles = cycles + (1 << 16);
                self.base_seq = self.cycles + seq as u64;
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return None;
            }
        }
        // else: duplicate or reordered packet, numbered relative to max_seq.
        let delta = seq.wrapping_sub(self.max_seq) as i16 as i64;
        let ext = (self.ext_max() as i64 + delta).max(0) as u64;
        self.received += 1;
        Some(ext)
    }

    /// RFC 3550 A.8: interarrival jitter in timestamp units.
    fn update_jitter(&mut self, arrival_ts: i64, rtp_ts: u32) {
        let transit = arrival_ts.wrapping_sub(rtp_ts as i64);
        if let Some(prev) = self.transit {
            // Work modulo 2^32 so a timestamp wrap is not a jitter spike.
            let d = (transit.wrapping_sub(prev) as i32 as i64).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    fn expected(&self) -> u64 {
        (self.ext_max() + 1).saturating_sub(self.base_seq)
    }

    fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// RFC 3550 A.3 report block values; advances the interval counters.
    fn report_block(&mut self, lsr: u32, dlsr: u32) -> ReceptionReport {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior.min(expected);
        let received_interval = self.received - self.received_prior.min(self.received);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64) as u8
        };
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost: fraction,
            // 24-bit signed field, clamped (RFC 3550 §6.4.1).
            total_lost: (self.lost().clamp(-0x80_0000, 0x7f_ffff) as u32) & 0xff_ffff,
            last_sequence_number: self.ext_max() as u32,
            jitter: self.jitter as u32,
            last_sender_report: lsr,
            delay: dlsr,
        }
    }
}

/// Configuration of an [`RtpSession`].
#[derive(Debug, Clone)]
pub struct RtpConfig {
    /// Our SSRC (random, from the driver's RNG, RFC 3550 §8.1).
    pub local_ssrc: u32,
    /// Our first sequence number (random, RFC 3550 §5.1).
    pub initial_seq: u16,
    /// CNAME for SDES (RFC 3550 §6.5.1).
    pub cname: String,
    /// RTP clock rate of the received audio (for jitter in ms).
    pub clock_rate: u32,
    /// Payload types we accept (audio and telephone-event, ours and the peer's numbers).
    pub payload_types: Vec<u8>,
    /// Where the peer's SDP says to send RTP, if anywhere.
    pub remote_rtp: Option<SocketAddr>,
    /// Where the peer's SDP says to send RTCP.
    pub remote_rtcp: Option<SocketAddr>,
    /// RTP and RTCP share a port (RFC 5761).
    pub rtcp_mux: bool,
}

/// One RTP/RTCP session (one SSRC each way).
#[derive(Debug)]
pub struct RtpSession {
    cfg: RtpConfig,
    epoch: Instant,
    epoch_ntp: u64,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    seq: u16,
    packets_sent: u64,
    octets_sent: u64,
    last_sent: Option<(Instant, u32)>,
    sent_since_report: bool,
    source: Option<Source>,
    ssrc_changes: u32,
    last_sr: Option<(u32, Instant)>,
    rtt: Option<Duration>,
    remote_report: Option<ReceptionReport>,
    next_rtcp: Instant,
    rtcp_count: u64,
    events: VecDeque<RtpEvent>,
}

/// Converts an NTP 64-bit timestamp to its middle 32 bits (RFC 3550 §4).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

impl RtpSession {
    /// A session starting at `now`, when the wall clock reads `ntp_now` (NTP 64-bit fixed
    /// point: seconds since 1900 in the high 32 bits).
    pub fn new(cfg: RtpConfig, now: Instant, ntp_now: u64) -> Self {
        RtpSession {
            remote_rtp: cfg.remote_rtp,
            remote_rtcp: cfg.remote_rtcp.or(cfg.remote_rtp),
            seq: cfg.initial_seq,
            cfg,
            epoch: now,
            epoch_ntp: ntp_now,
            packets_sent: 0,
            octets_sent: 0,
            last_sent: None,
            sent_since_report: false,
            source: None,
            ssrc_changes: 0,
            last_sr: None,
            rtt: None,
            remote_report: None,
            // The first report goes out after half the interval (RFC 3550 §6.2).
            next_rtcp: now + RTCP_INTERVAL / 2,
            rtcp_count: 0,
            events: VecDeque::new(),
        }
    }

    /// Applies a renegotiation (re-INVITE): new destination and payload types. Latching
    /// starts over from the new SDP address.
    pub fn update_remote(
        &mut self,
        remote_rtp: Option<SocketAddr>,
        remote_rtcp: Option<SocketAddr>,
        payload_types: Vec<u8>,
    ) {
        self.remote_rtp = remote_rtp;
        self.remote_rtcp = remote_rtcp.or(remote_rtp);
        self.cfg.payload_types = payload_types;
    }

    /// Where to send RTP now (SDP address, or the latched source address).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    /// Where to send RTCP now.
    pub fn remote_rtcp(&self) -> Option<SocketAddr> {
        self.remote_rtcp
    }

    /// Our SSRC.
    pub fn local_ssrc(&self) -> u32 {
        self.cfg.local_ssrc
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<RtpEvent> {
        self.events.pop_front()
    }

    fn ntp(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.epoch);
        let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
        self.epoch_ntp.wrapping_add((d.as_secs() << 32) | frac)
    }

    fn arrival_units(&self, now: Instant) -> i64 {
        let d = now.saturating_duration_since(self.epoch);
        (d.as_nanos() * self.cfg.clock_rate as u128 / 1_000_000_000) as i64
    }

    /// Validates and accounts a received RTP datagram from `from`.
    ///
    /// Symmetric RTP: the first valid packet from a new source address makes it the
    /// destination for our media (emits [`RtpEvent::RemoteAddressChanged`]). "Valid" means
    /// a well-formed RTP v2 packet with a negotiated payload type; with SRTP, call this
    /// only after `unprotect_rtp` succeeded, so only authenticated packets move the latch.
    /// A new SSRC resets reception statistics (emits [`RtpEvent::SsrcChanged`]).
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<ReceivedRtp, RtpError> {
        if datagram.len() < 12 || datagram[0] >> 6 != 2 {
            return Err(RtpError::Malformed(format!("{} bytes", datagram.len())));
        }
        let mut buf = datagram;
        let pkt = Packet::unmarshal(&mut buf).map_err(|e| RtpError::Malformed(e.to_string()))?;
        let h = &pkt.header;
        if !self.cfg.payload_types.contains(&h.payload_type) {
            return Err(RtpError::UnknownPayloadType(h.payload_type));
        }
        let seq = h.sequence_number;
        let duplicate;
        let ext_seq = match self.source.as_mut() {
            Some(src) if src.ssrc == h.ssrc => {
                let max_before = src.ext_max();
                let ext = src.update_seq(seq).ok_or(RtpError::BadSequence)?;
                duplicate = ext <= max_before && src.recent.contains(&ext);
                if duplicate {
                    src.duplicates += 1;
                }
                ext
            }
            other => {
                if let Some(old) = other {
                    let old = old.ssrc;
                    self.ssrc_changes += 1;
                    self.events
                        .push_back(RtpEvent::SsrcChanged { old, new: h.ssrc });
                }
                let mut src = Source::new(h.ssrc, seq);
                let ext = src.update_seq(seq).unwrap_or(seq as u64);
                self.source = Some(src);
                duplicate = false;
                ext
            }
        };
        let arrival = self.arrival_units(now);
        let src = self.source.as_mut().expect("source set above");
        if !duplicate {
            src.update_jitter(arrival, h.timestamp);
        }
        if src.recent.len() == 64 {
            src.recent.pop_front();
        }
        src.recent.push_back(ext_seq);
        if self.remote_rtp != Some(from) {
            self.remote_rtp = Some(from);
            if self.cfg.rtcp_mux {
                self.remote_rtcp = Some(from);
            } else {
                self.remote_rtcp = Some(SocketAddr::new(from.ip(), from.port().wrapping_add(1)));
            }
            self.events.push_back(RtpEvent::RemoteAddressChanged(from));
        }
        Ok(ReceivedRtp {
            ssrc: h.ssrc,
            seq,
            ext_seq,
            timestamp: h.timestamp,
            marker: h.marker,
            payload_type: h.payload_type,
            payload: pkt.payload,
            duplicate,
        })
    }

    /// Builds the next RTP packet to send: our SSRC, the next sequence number, and the
    /// caller's media timestamp (the caller owns the media clock so DTMF events can hold
    /// one timestamp, RFC 4733 §2.5.1.2).
    pub fn build_rtp(
        &mut self,
        now: Instant,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Bytes {
        let pkt = Packet {
            header: Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: self.seq,
                timestamp,
                ssrc: self.cfg.local_ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        self.last_sent = Some((now, timestamp));
        self.sent_since_report = true;
        pkt.marshal().map(|b| b.freeze()).unwrap_or_default()
    }

    /// Accounts a received RTCP compound packet: sender reports (for LSR), report blocks
    /// about our stream (peer-side loss, jitter, and RTT = A − LSR − DLSR, RFC 3550 §6.4.1),
    /// and BYE.
    pub fn handle_rtcp(&mut self, now: Instant, datagram: &[u8]) -> Result<(), RtpError> {
        let mut buf = datagram;
        let packets = rtc_rtcp::packet::unmarshal(&mut buf)
            .map_err(|e| RtpError::MalformedRtcp(e.to_string()))?;
        for p in packets {
            let any = p.as_any();
            let blocks: &[ReceptionReport] = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.last_sr = Some((ntp_middle(sr.ntp_time), now));
                &sr.reports
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else {
                if any.downcast_ref::<Goodbye>().is_some() {
                    self.events.push_back(RtpEvent::Bye);
                }
                continue;
            };
            for b in blocks.iter().filter(|b| b.ssrc == self.cfg.local_ssrc) {
                if b.last_sender_report != 0 {
                    let a = ntp_middle(self.ntp(now));
                    let rtt = a.wrapping_sub(b.last_sender_report).wrapping_sub(b.delay);
                    // Ignore nonsense (clock steps, forged blocks): more than a minute.
                    if rtt < 60 << 16 {
                        self.rtt = Some(Duration::from_nanos((rtt as u64 * 1_000_000_000) >> 16));
                    }
                }
                self.remote_report = Some(b.clone());
            }
        }
        Ok(())
    }

    /// When [`Self::poll_rtcp`] next has something to send.
    pub fn poll_timeout(&self) -> Instant {
        self.next_rtcp
    }

    /// The next RTCP compound packet (SR or RR, then SDES CNAME, RFC 3550 §6.1) if one is
    /// due at `now`.
    pub fn poll_rtcp(&mut self, now: Instant) -> Option<Bytes> {
        if now < self.next_rtcp {
            return None;
        }
        self.rtcp_count += 1;
        // Deterministic spread over [0.5, 1.5] × interval (RFC 3550 §6.3.1 randomises to
        // avoid synchronisation; the SSRC is already random).
        let spread = ((self.cfg.local_ssrc as u64 ^ self.rtcp_count.wrapping_mul(0x9e37_79b9))
            % 1000) as u32;
        self.next_rtcp = now + RTCP_INTERVAL / 2 + RTCP_INTERVAL * spread / 1000;
        Some(self.build_report(now))
    }

    /// Builds a report right now (also used for the final report before BYE).
    pub fn build_report(&mut self, now: Instant) -> Bytes {
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, ((d.as_nanos() << 16) / 1_000_000_000) as u32)
            }
            None => (0, 0),
        };
        let reports: Vec<ReceptionReport> = self
            .source
            .as_mut()
            .map(|s| s.report_block(lsr, dlsr))
            .into_iter()
            .collect();
        let mut packets: Vec<Box<dyn RtcpPacket>> = Vec::with_capacity(2);
        if self.sent_since_report {
            let ntp = self.ntp(now);
            let rtp_time = match self.last_sent {
                Some((at, ts)) => {
                    let d = now.saturating_duration_since(at);
                    ts.wrapping_add(
                        (d.as_nanos() * self.cfg.clock_rate as u128 / 1_000_000_000) as u32,
                    )
                }
                None => 0,
            };
            packets.push(Box::new(SenderReport {
                ssrc: self.cfg.local_ssrc,
                ntp_time: ntp,
                rtp_time,
                packet_count: self.packets_sent as u32,
                octet_count: self.octets_sent as u32,
                reports,
                ..Default::default()
            }));
        } else {
            packets.push(Box::new(ReceiverReport {
                ssrc: self.cfg.local_ssrc,
                reports,
                ..Default::default()
            }));
        }
        self.sent_since_report = false;
        packets.push(Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.cfg.local_ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::copy_from_slice(self.cfg.cname.as_bytes()),
                }],
            }],
        }));
        rtc_rtcp::packet::marshal(&packets)
            .map(|b| b.freeze())
            .unwrap_or_default()
    }

    /// Builds a BYE (RFC 3550 §6.6) after a final report.
    pub fn build_bye(&mut self, now: Instant) -> Bytes {
        let report = self.build_report(now);
        let bye: Vec<Box<dyn RtcpPacket>> = vec![Box::new(Goodbye {
            sources: vec![self.cfg.local_ssrc],
            reason: Bytes::new(),
        })];
        let mut out = report.to_vec();
        out.extend_from_slice(
            &rtc_rtcp::packet::marshal(&bye)
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        );
        Bytes::from(out)
    }

    /// Current call statistics; `codec` is the negotiated codec's name.
    pub fn stats(&self, codec: &str) -> CallStats {
        let clock = self.cfg.clock_rate.max(1) as f32;
        let (received, lost, expected, jitter, dups) = match &self.source {
            Some(s) => (s.received, s.lost(), s.expected(), s.jitter, s.duplicates),
            None => (0, 0, 0, 0.0, 0),
        };
        CallStats {
            codec: codec.to_string(),
            packets_sent: self.packets_sent,
            octets_sent: self.octets_sent,
            packets_received: received,
            packets_lost: lost,
            loss_percent: if expected == 0 {
                0.0
            } else {
                (lost.max(0) as f32 * 100.0) / expected as f32
            },
            jitter_ms: jitter as f32 * 1000.0 / clock,
            remote_loss_percent: self
                .remote_report
                .as_ref()
                .map(|r| r.fraction_lost as f32 * 100.0 / 256.0),
            remote_jitter_ms: self
                .remote_report
                .as_ref()
                .map(|r| r.jitter as f32 * 1000.0 / clock),
            rtt_ms: self.rtt.map(|d| d.as_secs_f32() * 1000.0),
            duplicates: dups,
            ssrc_changes: self.ssrc_changes,
            remote_addr: self.remote_rtp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;

    fn cfg(ssrc: u32, remote: &str) -> RtpConfig {
        RtpConfig {
            local_ssrc: ssrc,
            initial_seq: 65530,
            cname: format!("test{ssrc}@vaxel"),
            clock_rate: 8000,
            payload_types: vec![0, 101],
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            rtcp_mux: true,
        }
    }

    const NTP0: u64 = 3_900_000_000u64 << 32;

    #[test]
    fn sequence_wrap_loss_and_jitter() {
        let t0 = t0();
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut tx = RtpSession::new(cfg(1, "10.0.0.1:5000"), t0, NTP0);
        let mut rx = RtpSession::new(cfg(2, "10.0.0.2:4000"), t0, NTP0);
        let mut last_ext = 0;
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let p = tx.build_rtp(now, 0, i == 0, i * 160, &[0xff; 160]);
            if i % 10 == 3 {
                continue; // 10 % loss
            }
            // Alternate 0 and 4 ms of extra delay: jitter D = 4 ms = 32 units.
            let arrive = now + Duration::from_millis(if i % 2 == 0 { 0 } else { 4 });
            let r = rx.handle_rtp(arrive, peer, &p).unwrap();
            assert!(r.ext_seq > last_ext || i == 0);
            last_ext = r.ext_seq;
        }
        assert!(last_ext > 65535, "extended across the wrap");
        let s = rx.stats("PCMU");
        assert_eq!(s.packets_received, 180);
        assert_eq!(s.packets_lost, 20);
        assert!((s.loss_percent - 10.0).abs() < 0.1);
        assert!(
            s.jitter_ms > 2.0 && s.jitter_ms < 5.0,
            "jitter {}",
            s.jitter_ms
        );
    }

    #[test]
    fn reorder_and_duplicates_are_numbered_right() {
        let t0 = t0();
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut tx = RtpSession::new(cfg(1, "10.0.0.1:5000"), t0, NTP0);
        let mut rx = RtpSession::new(cfg(2, "10.0.0.2:4000"), t0, NTP0);
        let p: Vec<Bytes> = (0..10)
            .map(|i| tx.build_rtp(t0, 0, false, i * 160, &[1; 160]))
            .collect();
        let order = [0, 1, 3, 2, 4, 4, 5, 7, 6, 8, 9];
        let exts: Vec<u64> = order
            .iter()
            .map(|&i| rx.handle_rtp(t0, peer, &p[i]).unwrap().ext_seq)
            .collect();
        let base = exts[0];
        let rel: Vec<u64> = exts.iter().map(|e| e - base).collect();
        assert_eq!(rel, vec![0, 1, 3, 2, 4, 4, 5, 7, 6, 8, 9]);
        let s = rx.stats("PCMU");
        assert_eq!(s.duplicates, 1);
        assert_eq!(
            s.packets_lost, -1,
            "RFC 3550 A.3 counts duplicates as received"
        );
    }

    #[test]
    fn latching_ssrc_change_and_rejections() {
        let t0 = t0();
        let mut tx = RtpSession::new(cfg(1, "10.0.0.1:5000"), t0, NTP0);
        let mut rx = RtpSession::new(cfg(2, "198.51.100.1:4000"), t0, NTP0);
        let nat: SocketAddr = "203.0.113.9:61000".parse().unwrap();
        let p = tx.build_rtp(t0, 0, true, 0, &[0; 160]);
        rx.handle_rtp(t0, nat, &p).unwrap();
        assert_eq!(rx.poll_event(), Some(RtpEvent::RemoteAddressChanged(nat)));
        assert_eq!(rx.remote_rtp(), Some(nat));
        assert_eq!(rx.remote_rtcp(), Some(nat), "rtcp-mux follows");
        // Garbage from elsewhere does not move the latch.
        let evil: SocketAddr = "192.0.2.66:1".parse().unwrap();
        assert!(rx.handle_rtp(t0, evil, &[0x80, 0, 0]).is_err());
        assert!(matches!(
            rx.handle_rtp(t0, evil, &[0x40; 20]),
            Err(RtpError::Malformed(_))
        ));
        let mut wrong_pt = p.to_vec();
        wrong_pt[1] = 96;
        assert_eq!(
            rx.handle_rtp(t0, evil, &wrong_pt),
            Err(RtpError::UnknownPayloadType(96))
        );
        assert_eq!(rx.remote_rtp(), Some(nat));
        assert_eq!(rx.poll_event(), None);
        // After a transfer a new SSRC arrives from a new address.
        let mut tx2 = RtpSession::new(cfg(77, "10.0.0.1:5000"), t0, NTP0);
        let moved: SocketAddr = "203.0.113.10:40000".parse().unwrap();
        let q = tx2.build_rtp(t0, 0, true, 12345, &[0; 160]);
        rx.handle_rtp(t0, moved, &q).unwrap();
        assert_eq!(
            rx.poll_event(),
            Some(RtpEvent::SsrcChanged { old: 1, new: 77 })
        );
        assert_eq!(rx.poll_event(), Some(RtpEvent::RemoteAddressChanged(moved)));
        assert_eq!(rx.stats("PCMU").ssrc_changes, 1);
        assert_eq!(rx.stats("PCMU").packets_received, 1);
    }

    #[test]
    fn large_sequence_jump_needs_confirmation() {
        let t0 = t0();
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut tx = RtpSession::new(cfg(1, "10.0.0.1:5000"), t0, NTP0);
        let mut rx = RtpSession::new(cfg(2, "10.0.0.2:4000"), t0, NTP0);
        rx.handle_rtp(t0, peer, &tx.build_rtp(t0, 0, false, 0, &[0; 10]))
            .unwrap();
        let mut jump = tx.build_rtp(t0, 0, false, 160, &[0; 10]).to_vec();
        jump[2] ^= 0x80; // seq + 32768
        assert_eq!(rx.handle_rtp(t0, peer, &jump), Err(RtpError::BadSequence));
        let mut next = jump.clone();
        let s = u16::from_be_bytes([jump[2], jump[3]]).wrapping_add(1);
        next[2..4].copy_from_slice(&s.to_be_bytes());
        assert!(
            rx.handle_rtp(t0, peer, &next).is_ok(),
            "second packet confirms the restart"
        );
    }

    #[test]
    fn reports_give_rtt_and_remote_loss() {
        let t0 = t0();
        let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut a = RtpSession::new(cfg(1, "10.0.0.2:4000"), t0, NTP0);
        let mut b = RtpSession::new(cfg(2, "10.0.0.1:5000"), t0, NTP0 + (7u64 << 32));
        let one_way = Duration::from_millis(40);
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let p = a.build_rtp(now, 0, false, i * 160, &[0; 160]);
            if i % 20 != 5 {
                b.handle_rtp(now + one_way, a_addr, &p).unwrap();
            }
        }
        // A sends an SR; B answers with an RR 100 ms later; A gets it 40 ms after.
        let t_sr = t0 + Duration::from_secs(3);
        let sr = a.poll_rtcp(t_sr).expect("report due");
        assert!(a.poll_rtcp(t_sr).is_none(), "not due again at once");
        b.handle_rtcp(t_sr + one_way, &sr).unwrap();
        let rr = b.build_report(t_sr + one_way + Duration::from_millis(100));
        a.handle_rtcp(t_sr + 2 * one_way + Duration::from_millis(100), &rr)
            .unwrap();
        let s = a.stats("PCMU");
        let rtt = s.rtt_ms.unwrap();
        assert!((rtt - 80.0).abs() < 1.0, "rtt {rtt}");
        let loss = s.remote_loss_percent.unwrap();
        assert!((loss - 5.0).abs() < 0.5, "remote loss {loss}");
        assert!(a.handle_rtcp(t_sr, &[0x80, 0xc9, 0, 5]).is_err());
        let bye = b.build_bye(t_sr);
        a.handle_rtcp(t_sr, &bye).unwrap();
        assert_eq!(a.poll_event(), Some(RtpEvent::Bye));
        assert!(is_rtcp(&bye) && !is_rtcp(&a.build_rtp(t_sr, 0, false, 0, &[])));
        let _ = b_addr;
    }

    #[test]
    fn byte_soup_never_panics() {
        let t0 = t0();
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut tx = RtpSession::new(cfg(1, "10.0.0.1:5000"), t0, NTP0);
        let mut rx = RtpSession::new(cfg(2, "10.0.0.2:4000"), t0, NTP0);
        let good_rtp = tx.build_rtp(t0, 0, false, 0, &[1; 40]).to_vec();
        let good_rtcp = tx.build_bye(t0).to_vec();
        let mut x = 0x2545_f491u32;
        for round in 0..5000 {
            let base = if round % 2 == 0 {
                &good_rtp
            } else {
                &good_rtcp
            };
            let mut b = base.clone();
            let len = (x as usize >> 3) % (b.len() + 1);
            b.truncate(len.max(1));
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % b.len();
                b[i] = (x >> 24) as u8;
            }
            let _ = rx.handle_rtp(t0, peer, &b);
            let _ = rx.handle_rtcp(t0, &b);
        }
        let _ = rx.stats("PCMU");
        let _ = rx.build_report(t0);
    }
}
