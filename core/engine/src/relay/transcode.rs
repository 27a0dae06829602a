//! Transcoding in the relay when the two parties share no codec: each RTP packet of
//! one party's codec is decoded, resampled (48 kHz Opus ↔ 8 kHz G.711) and encoded in
//! the other party's codec with vaxel-media's codecs; RFC 4733 telephone-events are
//! carried over with the other party's payload type and clock.
//!
//! The outgoing stream keeps the sender's SSRC; its sequence numbers and timestamps
//! start at the sender's first ones and then advance per frame sent, the timestamp
//! at the output codec's clock (RFC 3550 §5.1). Starting from the sender's keeps
//! the stream continuous for a receiver that already got the sender's first packets
//! as they were (sent before the answer reached the engine).

use vaxel_media::codec::{AudioCodec, CodecKind};
use vaxel_media::resample::Resampler;
use vaxel_media::sdp::MediaDescription;

/// One party's audio format as its SDP states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Codecs the party lists, in its order, with their payload types.
    pub codecs: Vec<(u8, CodecKind)>,
    /// Every encoding the party lists (name/clock, lower case), ours or not.
    pub encodings: Vec<String>,
    /// `telephone-event` payload type and clock (RFC 4733 §7.1.1).
    pub events: Option<(u8, u32)>,
    /// Packet time in ms (`a=ptime`, default 20).
    pub ptime: u32,
}

impl Format {
    /// The audio format of an `m=audio` line.
    pub fn of(m: &MediaDescription) -> Format {
        let mut f = Format {
            codecs: Vec::new(),
            encodings: Vec::new(),
            events: None,
            ptime: m
                .ptime()
                .filter(|p| [10, 20, 30, 40, 60].contains(p))
                .unwrap_or(20),
        };
        for pt in m.payload_types() {
            let (name, clock) = match m.rtpmap(pt) {
                Some(r) => (r.encoding, r.clock_rate),
                None => match CodecKind::from_static_payload_type(pt) {
                    Some(k) => (k.encoding_name().to_owned(), k.rtp_clock_rate()),
                    None => continue,
                },
            };
            if name.eq_ignore_ascii_case("telephone-event") {
                f.events.get_or_insert((pt, clock));
                continue;
            }
            f.encodings
                .push(format!("{}/{clock}", name.to_ascii_lowercase()));
            if let Some(k) = CodecKind::from_rtpmap(&name, clock)
                .filter(|k| matches!(k, CodecKind::Opus | CodecKind::Pcmu | CodecKind::Pcma))
            {
                f.codecs.push((pt, k));
            }
        }
        f
    }

    /// Whether the two formats have an encoding in common (then no transcoding).
    pub fn shares_with(&self, other: &Format) -> bool {
        self.encodings.iter().any(|e| other.encodings.contains(e))
    }
}

/// The codecs the engine adds to an offer so a callee without the caller's codecs
/// can still answer (Opus for a G.711 caller, G.711 for an Opus caller), with the
/// payload types to use: static ones, or a free dynamic one for Opus.
pub fn additions(f: &Format, used: &[u8]) -> Vec<(u8, CodecKind)> {
    let has = |k: CodecKind| f.codecs.iter().any(|(_, c)| *c == k);
    let mut add = Vec::new();
    if has(CodecKind::Opus) {
        for k in [CodecKind::Pcmu, CodecKind::Pcma] {
            if !has(k) {
                add.push((k.static_payload_type().unwrap_or(0), k));
            }
        }
    } else if (has(CodecKind::Pcmu) || has(CodecKind::Pcma))
        && let Some(pt) = (96..128).find(|p| !used.contains(p))
    {
        add.push((pt, CodecKind::Opus));
    }
    add
}

/// One direction of a transcoded call: the sender's format in, the receiver's out.
pub struct Transcoder {
    in_pt: u8,
    dec: Box<dyn AudioCodec>,
    out_pt: u8,
    enc: Box<dyn AudioCodec>,
    resampler: Option<Resampler>,
    /// Sender's and receiver's telephone-event payload type and clock.
    events: Option<((u8, u32), (u8, u32))>,
    pcm: Vec<i16>,
    fifo: Vec<i16>,
    /// Whether `seq` and `ts` were taken from the sender's first packet.
    started: bool,
    seq: u16,
    ts: u32,
    /// The sender's event timestamp and ours for it (RFC 4733 §2.5.1.2: all packets
    /// of one event carry its start time).
    event_ts: Option<(u32, u32)>,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("in", &self.dec.kind())
            .field("out", &self.enc.kind())
            .finish()
    }
}

impl Transcoder {
    /// From `from`'s first codec to `to`'s first codec, or `None` when either has
    /// none the engine can transcode.
    pub fn new(from: &Format, to: &Format) -> Option<Transcoder> {
        let (in_pt, in_kind) = *from.codecs.first()?;
        let (out_pt, out_kind) = *to.codecs.first()?;
        let dec = in_kind.build(from.ptime).ok()?;
        let enc = out_kind.build(to.ptime).ok()?;
        let resampler = if in_kind.sample_rate() == out_kind.sample_rate() {
            None
        } else {
            Some(Resampler::new(in_kind.sample_rate(), out_kind.sample_rate()).ok()?)
        };
        Some(Transcoder {
            in_pt,
            dec,
            out_pt,
            enc,
            resampler,
            events: from.events.zip(to.events),
            pcm: Vec::new(),
            fifo: Vec::new(),
            started: false,
            seq: 0,
            ts: 0,
            event_ts: None,
            payload: Vec::new(),
        })
    }

    /// Converts one plain RTP packet, appending the packets to send (none, one, or
    /// more when frame sizes differ) to `out`. Other payloads (comfort noise, an
    /// unknown codec) and RTCP are dropped: they describe the sender's stream.
    pub fn convert(&mut self, packet: &[u8], out: &mut Vec<Vec<u8>>) {
        let Some((pt, ts, payload)) = crate::media_server::parse_rtp(packet) else {
            return;
        };
        let ssrc = [packet[8], packet[9], packet[10], packet[11]];
        let marker = packet[1] & 0x80 != 0;
        if !self.started {
            self.started = true;
            self.seq = u16::from_be_bytes([packet[2], packet[3]]).wrapping_sub(1);
            self.ts = ts;
        }
        if pt == self.in_pt {
            self.pcm.clear();
            if self.dec.decode(payload, &mut self.pcm).is_err() {
                return;
            }
            match self.resampler.as_mut() {
                Some(r) => r.process(&self.pcm, &mut self.fifo),
                None => self.fifo.extend_from_slice(&self.pcm),
            }
            let frame = self.enc.frame_samples();
            let mut first = true;
            while self.fifo.len() >= frame {
                self.payload.clear();
                let ok = self.enc.encode(&self.fifo[..frame], &mut self.payload);
                self.fifo.drain(..frame);
                if ok.is_ok() {
                    let m = marker && first;
                    out.push(self.packet(self.out_pt, m, self.ts, ssrc));
                    first = false;
                }
                self.ts = self.ts.wrapping_add(self.enc.kind().rtp_units(frame));
            }
        } else if let Some(((ev_in, clock_in), (ev_out, clock_out))) = self.events
            && pt == ev_in
            && payload.len() >= 4
        {
            let start = match self.event_ts {
                Some((theirs, ours)) if theirs == ts => ours,
                _ => {
                    self.event_ts = Some((ts, self.ts));
                    self.ts
                }
            };
            self.payload.clear();
            self.payload.extend_from_slice(payload);
            let d = u16::from_be_bytes([payload[2], payload[3]]);
            let d = (u64::from(d) * u64::from(clock_out) / u64::from(clock_in.max(1))).min(0xffff)
                as u16;
            self.payload[2..4].copy_from_slice(&d.to_be_bytes());
            out.push(self.packet(ev_out, marker, start, ssrc));
        }
    }

    fn packet(&mut self, pt: u8, marker: bool, ts: u32, ssrc: [u8; 4]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut p = Vec::with_capacity(12 + self.payload.len());
        p.push(0x80);
        p.push(pt | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc);
        p.extend_from_slice(&self.payload);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(sdp: &str) -> Format {
        let sd = vaxel_media::sdp::parse(sdp.as_bytes()).unwrap();
        Format::of(&sd.media[0])
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    const OPUS: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n";
    const PCMU: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n";

    #[test]
    fn formats_and_additions() {
        let (o, u) = (format(OPUS), format(PCMU));
        assert_eq!(o.codecs, vec![(111, CodecKind::Opus)]);
        assert_eq!(o.events, Some((101, 48000)));
        assert_eq!(u.codecs, vec![(0, CodecKind::Pcmu)]);
        assert!(!o.shares_with(&u));
        assert_eq!(
            additions(&o, &[111, 101]),
            vec![(0, CodecKind::Pcmu), (8, CodecKind::Pcma)]
        );
        assert_eq!(additions(&u, &[0, 100]), vec![(96, CodecKind::Opus)]);
    }

    /// A 1 kHz tone in G.711 comes out as Opus and back with its pitch; an event
    /// keeps its start and has its duration rescaled to the other clock.
    #[test]
    fn g711_to_opus_and_back_keeps_the_tone_and_events() {
        let (o, u) = (format(OPUS), format(PCMU));
        let mut to_opus = Transcoder::new(&u, &o).unwrap();
        let mut to_pcmu = Transcoder::new(&o, &u).unwrap();
        let mut g711 = CodecKind::Pcmu.build(20).unwrap();
        let mut heard = Vec::new();
        let mut sink = g711.kind().build(20).unwrap();
        for n in 0..50u32 {
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = f64::from(n * 160 + i) / 8000.0;
                    ((t * 1000.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
                })
                .collect();
            let mut payload = Vec::new();
            g711.encode(&pcm, &mut payload).unwrap();
            let mut opus = Vec::new();
            to_opus.convert(&rtp(0, n as u16, n * 160, &payload), &mut opus);
            for p in opus {
                assert_eq!(p[1] & 0x7f, 111);
                let mut back = Vec::new();
                to_pcmu.convert(&p, &mut back);
                for b in back {
                    assert_eq!(b[1] & 0x7f, 0);
                    sink.decode(&b[12..], &mut heard).unwrap();
                }
            }
        }
        let tail = &heard[heard.len() / 2..];
        let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let f = crossings as f64 / 2.0 / (tail.len() as f64 / 8000.0);
        assert!((f - 1000.0).abs() < 50.0, "{f} Hz");
        // An event with duration 800 (100 ms at 8 kHz) becomes 4800 at 48 kHz.
        let mut out = Vec::new();
        to_opus.convert(&rtp(100, 60, 9600, &[5, 10, 0x03, 0x20]), &mut out);
        to_opus.convert(&rtp(100, 61, 9600, &[5, 10, 0x03, 0x20]), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][1] & 0x7f, 101);
        assert_eq!(&out[0][12..], &[5, 10, 0x12, 0xc0]);
        assert_eq!(out[0][4..8], out[1][4..8], "one event, one start");
    }
}
