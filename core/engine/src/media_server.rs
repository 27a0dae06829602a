//! The engine's media server: when the engine answers a caller itself (a main
//! number's prompts and menus, voicemail, feature-code confirmations) one
//! [`MediaSession`] task per call plays prompts and music on hold, collects DTMF
//! and records, over the caller's side of the call's [`crate::relay::Relay`].
//!
//! Prompts, recordings and the DTMF detector work at 8 kHz. On the wire the caller
//! gets G.711 (µ-law or A-law, RFC 3551 §4.5.14) or Opus (RFC 7587, 48 kHz, resampled
//! from and to 8 kHz), in 20 ms packets; the codec can change when a late offer's
//! answer arrives in the ACK ([`MediaCmd::Format`]). A caller using SRTP (SDES,
//! RFC 4568) is keyed by the relay, which decrypts what it sends before it reaches
//! the session and encrypts what the session plays ([`crate::relay::ToCaller`]), so
//! the session itself only sees plain RTP.
//! Digits come from RFC 4733 `telephone-event` packets and, for callers who send
//! tones in the audio, from an in-band Goertzel detector (ITU-T Q.24 checks, in
//! `vaxel-media`); SIP INFO digits are parsed by the engine ([`parse_info_dtmf`]).
//! The in-band detector is switched off once the caller sent an RFC 4733 event, so a
//! phone that sends both does not give every key twice.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vaxel_media::CodecKind;
use vaxel_media::codec::AudioCodec;
use vaxel_media::dtmf::{DtmfDetector, DtmfNotice, DtmfReceiver};
use vaxel_media::resample::Resampler;
use vaxel_media::wav::{Prompt, PromptPlayer, WavRecorder};

use crate::relay::{Tapped, ToCaller};

/// Samples per second of everything the media server plays and records.
pub const RATE: u32 = 8000;
/// Samples per 20 ms packet.
const FRAME: usize = 160;

/// The codec and payload types negotiated with the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFormat {
    /// PCMA, PCMU or Opus (G.722 works too).
    pub codec: CodecKind,
    /// The audio payload type we send.
    pub pt: u8,
    /// The caller's `telephone-event` payload type (RFC 4733 §7.1.1), if offered.
    pub te_pt: Option<u8>,
}

/// What the engine asks a session to do.
#[derive(Debug)]
pub enum MediaCmd {
    /// Play these prompts one after the other (replacing what plays); with `looped`
    /// (music on hold) forever, else [`MediaNote::PromptFinished`] at the end.
    Play {
        /// The prompts.
        prompts: Vec<Arc<Prompt>>,
        /// Repeat forever.
        looped: bool,
    },
    /// Stop playing (silence).
    Stop,
    /// Record what the caller says to `path` (WAV, 8 kHz mono 16-bit) for at most
    /// `max`; [`MediaNote::Recorded`] when it stops.
    Record {
        /// The file.
        path: PathBuf,
        /// Longest message.
        max: Duration,
    },
    /// Stop recording now.
    StopRecording,
    /// The caller's answer to our offer arrived (late offer, RFC 3261 §13.2.1: the
    /// answer in the ACK): send and expect this format, to `remote`.
    Format {
        /// The negotiated format.
        format: MediaFormat,
        /// The caller's media address from its answer.
        remote: Option<SocketAddr>,
    },
    /// Play what the caller says back to them (echo test).
    Echo,
    /// The caller re-offered (RFC 3264 §8.4): whether we may send (not while the
    /// caller holds: sendonly or inactive), and where to, when the address changed.
    Direction {
        /// Send media (else keep time silently: prompts still end on time).
        send: bool,
        /// The caller's new RTP address, if any (latched again from its packets).
        remote: Option<SocketAddr>,
    },
}

/// What a session tells the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaNote {
    /// The prompts of the last [`MediaCmd::Play`] have played to the end.
    PromptFinished,
    /// The caller pressed a key.
    Digit(char),
    /// The called party of an ordinary call pressed a key (RFC 4733, seen by the
    /// relay): for the codes keyed during a call.
    CalleeKey(char),
    /// A recording ended (length in seconds); also sent when the session ends while
    /// recording (the caller hung up).
    Recorded {
        /// The file written.
        path: PathBuf,
        /// Its length.
        secs: f64,
    },
}

/// A running session; dropping it ends the task (a recording in progress is
/// finished and reported first).
#[derive(Debug)]
pub struct MediaSession {
    cmd: mpsc::UnboundedSender<MediaCmd>,
}

impl MediaSession {
    /// Starts serving the caller: packets arrive on `tap` (decrypted by the relay
    /// when the caller uses SRTP), go out through `out` (encrypted there when it
    /// does) to the address they come from (or `remote` from the SDP until the
    /// first packet).
    pub fn start(
        call: u64,
        tap: mpsc::UnboundedReceiver<Tapped>,
        out: ToCaller,
        remote: Option<SocketAddr>,
        format: MediaFormat,
        notes: mpsc::UnboundedSender<(u64, MediaNote)>,
    ) -> MediaSession {
        let (cmd, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(call, tap, out, remote, format, rx, notes));
        MediaSession { cmd }
    }

    /// Sends a command (ignored once the session ended).
    pub fn send(&self, c: MediaCmd) {
        let _ = self.cmd.send(c);
    }
}

/// A 1 kHz beep of 400 ms, the "speak after the tone" signal.
pub fn beep() -> Arc<Prompt> {
    let n = RATE as usize * 2 / 5;
    let s = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            ((t * 1000.0 * std::f64::consts::TAU).sin() * 9000.0) as i16
        })
        .collect();
    Arc::new(Prompt::from_samples(s, RATE))
}

struct Rtp {
    ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
}

impl Rtp {
    fn packet(&mut self, pt: u8, payload: &[u8], step: u32) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(pt | if self.first { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(step);
        p
    }
}

/// The caller's codec with resampling to and from the media server's 8 kHz.
struct Coder {
    codec: Box<dyn AudioCodec>,
    /// Wire rate → 8 kHz and back (`None` for an 8 kHz codec).
    down: Option<Resampler>,
    up: Option<Resampler>,
    wide: Vec<i16>,
    /// Upsampled audio waiting for a whole codec frame.
    pending: Vec<i16>,
    /// RTP timestamp units per 20 ms packet.
    step: u32,
}

impl Coder {
    fn new(format: &MediaFormat) -> Option<Coder> {
        let codec = match format.codec.build(20) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "media server: no {} codec: {e}",
                    format.codec.encoding_name()
                );
                return None;
            }
        };
        let rate = codec.sample_rate();
        let (down, up) = if rate == RATE {
            (None, None)
        } else {
            (
                Some(Resampler::new(rate, RATE).ok()?),
                Some(Resampler::new(RATE, rate).ok()?),
            )
        };
        let step = format.codec.rtp_units(codec.frame_samples());
        Some(Coder {
            codec,
            down,
            up,
            wide: Vec::new(),
            pending: Vec::new(),
            step,
        })
    }

    /// One payload from the caller as 8 kHz samples appended to `pcm`.
    fn decode(&mut self, payload: &[u8], pcm: &mut Vec<i16>) {
        self.wide.clear();
        if self.codec.decode(payload, &mut self.wide).is_err() {
            return;
        }
        match self.down.as_mut() {
            Some(r) => r.process(&self.wide, pcm),
            None => pcm.extend_from_slice(&self.wide),
        }
    }

    /// 20 ms at 8 kHz as one payload.
    fn encode(&mut self, frame: &[i16]) -> Option<Vec<u8>> {
        let n = self.codec.frame_samples();
        let mut out = Vec::new();
        match self.up.as_mut() {
            None => self.codec.encode(frame, &mut out).ok()?,
            Some(r) => {
                r.process(frame, &mut self.pending);
                if self.pending.len() < n {
                    // The resampler's start-up delay: pad the first frames.
                    let pad = n - self.pending.len();
                    self.pending.splice(0..0, std::iter::repeat_n(0, pad));
                }
                let chunk: Vec<i16> = self.pending.drain(..n).collect();
                self.codec.encode(&chunk, &mut out).ok()?;
            }
        }
        Some(out)
    }
}

/// An RTP packet's payload type, timestamp and payload (RFC 3550 §5.1), or `None`
/// for RTCP and anything malformed.
pub fn parse_rtp(b: &[u8]) -> Option<(u8, u32, &[u8])> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let pt = b[1] & 0x7f;
    if (72..=79).contains(&pt) {
        return None; // RTCP multiplexed on the RTP port (RFC 5761 §4)
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let h = b.get(off..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([h[2], h[3]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    Some((pt, ts, b.get(off..end)?))
}

/// The key of a SIP INFO DTMF body: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (just the key), as phones send them.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let ct = content_type.to_ascii_lowercase();
    let raw = if ct.contains("dtmf-relay") {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
            })?
            .to_owned()
    } else if ct.contains("application/dtmf") {
        text.trim().to_owned()
    } else {
        return None;
    };
    let key = match raw.as_str() {
        "10" => '*',
        "11" => '#',
        s => s.chars().next()?,
    };
    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D').then_some(key)
}

struct Recording {
    rec: WavRecorder<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
    samples: u64,
    max: u64,
}

async fn run(
    call: u64,
    mut tap: mpsc::UnboundedReceiver<Tapped>,
    out: ToCaller,
    mut remote: Option<SocketAddr>,
    mut format: MediaFormat,
    mut cmds: mpsc::UnboundedReceiver<MediaCmd>,
    notes: mpsc::UnboundedSender<(u64, MediaNote)>,
) {
    let note = |n: MediaNote| {
        let _ = notes.send((call, n));
    };
    let mut rtp = Rtp {
        ssrc: rand::random(),
        seq: rand::random(),
        ts: rand::random(),
        first: true,
    };
    let mut latched = false;
    let mut sending = true;
    let mut queue: Vec<Arc<Prompt>> = Vec::new();
    let mut player: Option<PromptPlayer> = None;
    let mut looped = false;
    let mut recording: Option<Recording> = None;
    let mut echo: std::collections::VecDeque<i16> = Default::default();
    let mut echoing = false;
    let mut coder = Coder::new(&format);
    let mut rfc4733 = DtmfReceiver::new(format.codec.rtp_clock_rate());
    let mut inband = DtmfDetector::new(RATE);
    let mut saw_events = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut frame = [0i16; FRAME];
    let mut pcm = Vec::with_capacity(FRAME);
    let finish = |r: Recording| {
        let secs = r.samples as f64 / f64::from(RATE);
        let path = r.path.clone();
        if let Err(e) = r.rec.finish() {
            tracing::warn!("recording {}: {e}", path.display());
        }
        MediaNote::Recorded { path, secs }
    };
    loop {
        tokio::select! {
            c = cmds.recv() => match c {
                None => break,
                Some(MediaCmd::Play { prompts, looped: l }) => {
                    echoing = false;
                    looped = l;
                    queue = prompts;
                    queue.reverse();
                    player = queue.pop().map(|p| PromptPlayer::new(p, l));
                    if l {
                        queue.clear();
                    } else if player.is_none() {
                        note(MediaNote::PromptFinished);
                    }
                }
                Some(MediaCmd::Stop) => {
                    player = None;
                    queue.clear();
                    echoing = false;
                }
                Some(MediaCmd::Echo) => {
                    player = None;
                    queue.clear();
                    echoing = true;
                }
                Some(MediaCmd::Record { path, max }) => {
                    if let Some(r) = recording.take() {
                        note(finish(r));
                    }
                    match std::fs::File::create(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|f| WavRecorder::new(std::io::BufWriter::new(f), RATE).map_err(|e| e.to_string()))
                    {
                        Ok(rec) => recording = Some(Recording {
                            rec,
                            path,
                            samples: 0,
                            max: max.as_secs() * u64::from(RATE),
                        }),
                        Err(e) => {
                            tracing::warn!("cannot record to {}: {e}", path.display());
                            note(MediaNote::Recorded { path, secs: 0.0 });
                        }
                    }
                }
                Some(MediaCmd::Direction { send, remote: to }) => {
                    sending = send;
                    if to.is_some() && to != remote {
                        remote = to;
                        latched = false;
                    }
                }
                Some(MediaCmd::Format { format: f, remote: to }) => {
                    if f != format {
                        format = f;
                        coder = Coder::new(&format);
                        rfc4733 = DtmfReceiver::new(format.codec.rtp_clock_rate());
                    }
                    if to.is_some() && to != remote {
                        remote = to;
                        latched = false;
                    }
                }
                Some(MediaCmd::StopRecording) => {
                    if let Some(r) = recording.take() {
                        note(finish(r));
                    }
                }
            },
            p = tap.recv() => {
                let Some((bytes, from)) = p else { break };
                if !latched {
                    remote = Some(from);
                    latched = true;
                }
                let Some((pt, ts, payload)) = parse_rtp(&bytes) else { continue };
                if Some(pt) == format.te_pt {
                    saw_events = true;
                    let now = Instant::now();
                    let _ = rfc4733.handle(now, ts, payload);
                    while let Some(n) = rfc4733.poll(now) {
                        if let DtmfNotice::Started(d) = n {
                            note(MediaNote::Digit(d));
                        }
                    }
                } else if pt == format.pt {
                    pcm.clear();
                    if let Some(c) = coder.as_mut() {
                        c.decode(payload, &mut pcm);
                    }
                    if !saw_events {
                        inband.process(&pcm);
                        while let Some(d) = inband.poll() {
                            note(MediaNote::Digit(d));
                        }
                    }
                    if echoing {
                        echo.extend(pcm.iter().copied());
                    }
                    if let Some(r) = recording.as_mut() {
                        let _ = r.rec.write(&pcm);
                        r.samples += pcm.len() as u64;
                        if r.samples >= r.max
                            && let Some(r) = recording.take()
                        {
                            note(finish(r));
                        }
                    }
                }
            },
            _ = tick.tick() => {
                frame.fill(0);
                if echoing {
                    for s in frame.iter_mut() {
                        *s = echo.pop_front().unwrap_or(0);
                    }
                    // Keep the echo delay bounded (a burst of packets).
                    while echo.len() > RATE as usize / 2 {
                        echo.pop_front();
                    }
                }
                let mut filled = 0;
                while filled < FRAME {
                    let Some(p) = player.as_mut() else { break };
                    filled += p.read(&mut frame[filled..]);
                    if p.is_finished() || filled < FRAME {
                        player = queue.pop().map(|p| PromptPlayer::new(p, false));
                        if player.is_none() {
                            if !looped {
                                note(MediaNote::PromptFinished);
                            }
                            break;
                        }
                    }
                }
                let Some(c) = coder.as_mut() else { continue };
                let Some(payload) = c.encode(&frame) else { continue };
                if let Some(to) = remote.filter(|_| sending) {
                    out.send(rtp.packet(format.pt, &payload, c.step), to);
                }
            }
        }
    }
    if let Some(r) = recording.take() {
        note(finish(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal= 11\r\n"),
            Some('#')
        );
        assert_eq!(parse_info_dtmf("application/dtmf", b"*"), Some('*'));
        assert_eq!(parse_info_dtmf("text/plain", b"5"), None);
        assert_eq!(parse_info_dtmf("application/dtmf", b"x"), None);
    }

    #[test]
    fn rtp_header_with_csrc_extension_and_padding() {
        let mut p = vec![0xb1, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]); // one-word extension
        p.extend_from_slice(&[0xd5, 0xd5, 0, 2]); // payload + 2 bytes padding
        let (pt, ts, payload) = parse_rtp(&p).unwrap();
        assert_eq!((pt, ts, payload), (8, 160, &[0xd5, 0xd5][..]));
        assert_eq!(parse_rtp(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_rtp(&[0x80]), None);
    }
}
