//! One call's media state, advanced one 10 ms frame at a time by the media thread.
//!
//! Owns vaxel-media's sans-IO pieces and carries out what they ask: datagrams come in
//! from the receive tasks, datagrams go out to the send task, events go to the handle's
//! owner. Nothing here waits: channels are drained with `try_recv` and filled with
//! `try_send`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use vaxel_audio::{FRAME_SAMPLES, Frame, PIPELINE_RATE};
use vaxel_media::codec::{AudioCodec, CodecKind};
use vaxel_media::dtmf::{DtmfDetector, DtmfGenerator, DtmfNotice, DtmfReceiver, DtmfSender};
use vaxel_media::jitter::{JitterBuffer, JitterConfig, JitterPacket, Playout};
use vaxel_media::resample::Resampler;
use vaxel_media::rtp::{RtpConfig, RtpEvent, RtpSession, is_rtcp};
use vaxel_media::sdp::NegotiatedAudio;
use vaxel_media::srtp::SrtpSession;

use super::net::{Inbound, Outbound};
use super::{
    CallMediaEvent, Control, DtmfSource, InbandDtmf, LatencyParts, MediaError, MediaStats,
    MediaTuning,
};

/// Seconds from 1900 (NTP epoch) to 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Frames between level events (100 ms) and between statistics events (1 s).
const LEVEL_EVERY: u64 = 10;
const STATS_EVERY: u64 = 100;
/// Peak amplitude of each of the two tones of in-band DTMF (about −10 dBm0 each).
const INBAND_AMPLITUDE: f64 = 7000.0;

fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The algorithmic delay a codec adds (encoder lookahead plus decoder), ms.
fn codec_delay_ms(kind: CodecKind) -> f64 {
    match kind {
        // libopus in VOIP mode: 2.5 ms lookahead + 4 ms delay compensation (OPUS_GET_LOOKAHEAD).
        CodecKind::Opus => 6.5,
        // G.722: the transmit and receive QMF banks, 24 taps each (≈ 23 samples at 16 kHz).
        CodecKind::G722 => 1.5,
        _ => 0.0,
    }
}

fn dbfs(sum_sq: f64, n: u64) -> f32 {
    if n == 0 || sum_sq <= 0.0 {
        return -100.0;
    }
    (10.0 * (sum_sq / n as f64).log10()).max(-100.0) as f32
}

/// A streaming resampler that also counts what went in and out, so the delay it holds is
/// known (input time not yet delivered as output).
struct Counted {
    inner: Resampler,
    consumed: u64,
    produced: u64,
}

impl Counted {
    fn new(from: u32, to: u32) -> Result<Self, MediaError> {
        let mut inner =
            Resampler::new(from, to).map_err(|e| MediaError::Negotiated(e.to_string()))?;
        // The resampler drops its group delay from the start of its output (to align it
        // with the input). Fed from the first tick, that would leave every packet boundary
        // that many samples off the 10 ms frame boundaries, so each packet would wait for
        // one more tick to fill. Spend the lead-in on silence now instead; the filter's
        // delay itself remains and is reported.
        let lead_in = inner.latency();
        if lead_in > 0 && inner.delay_secs() * (from as f64) <= lead_in as f64 + 0.5 {
            let mut discard = Vec::new();
            inner.process(&vec![0; lead_in], &mut discard);
        }
        Ok(Counted {
            inner,
            consumed: 0,
            produced: 0,
        })
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let before = out.len();
        self.inner.process(input, out);
        self.consumed += input.len() as u64;
        self.produced += (out.len() - before) as u64;
    }

    /// The filter's delay plus input still waiting to be converted.
    fn delay_ms(&self) -> f64 {
        let (from, to) = (self.inner.from_rate() as f64, self.inner.to_rate() as f64);
        let expected = self.consumed as f64 * to / from;
        let waiting = ((expected - self.produced as f64) / to * 1000.0).max(0.0);
        waiting.max(self.inner.delay_secs() * 1000.0)
    }
}

/// One digit (or the pause after it) of in-band DTMF still to send.
struct InbandTone {
    generator: Option<DtmfGenerator>,
    left: usize,
    pos: u64,
}

/// The codec-dependent part, rebuilt when a renegotiation changes codec or ptime.
struct CodecPath {
    codec: Box<dyn AudioCodec>,
    frame: usize,
    enc_rs: Counted,
    dec_rs: Counted,
    jitter: JitterBuffer,
    detector: Option<DtmfDetector>,
}

impl CodecPath {
    fn new(audio: &NegotiatedAudio, tuning: &MediaTuning) -> Result<Self, MediaError> {
        let codec = audio
            .codec
            .build(audio.ptime_ms)
            .map_err(|e| MediaError::Negotiated(e.to_string()))?;
        let rate = codec.sample_rate();
        let mut jc = JitterConfig::new(audio.codec.rtp_clock_rate(), audio.ptime_ms);
        if let Some(min) = tuning.jitter_min_delay_ms {
            jc.min_delay_ms = min;
        }
        jc.max_delay_ms = tuning.jitter_max_delay_ms.max(jc.min_delay_ms);
        let detect = match tuning.inband_dtmf {
            InbandDtmf::Always => true,
            InbandDtmf::Auto => audio.telephone_event.is_none(),
            InbandDtmf::Off => false,
        };
        Ok(CodecPath {
            frame: codec.frame_samples(),
            codec,
            enc_rs: Counted::new(PIPELINE_RATE, rate)?,
            dec_rs: Counted::new(rate, PIPELINE_RATE)?,
            jitter: JitterBuffer::new(jc),
            detector: detect.then(|| DtmfDetector::new(rate)),
        })
    }
}

pub(crate) struct Pipeline {
    audio: NegotiatedAudio,
    tuning: MediaTuning,
    path: CodecPath,
    rtp: RtpSession,
    srtp: Option<SrtpSession>,
    dtmf_tx: Option<DtmfSender>,
    dtmf_rx: Option<DtmfReceiver>,
    inband: VecDeque<InbandTone>,
    ssrc: u32,
    initial_seq: u16,
    sent_before: u64,
    media_ts: u32,
    marker_next: bool,
    muted: bool,
    // Buffers, reused every frame.
    pcm48: Vec<i16>,
    capture: Vec<i16>,
    playout: VecDeque<i16>,
    decoded: Vec<i16>,
    resampled: Vec<i16>,
    payload: Vec<u8>,
    // Channels.
    inbound: mpsc::Receiver<Inbound>,
    outbound: mpsc::Sender<Outbound>,
    events: mpsc::Sender<CallMediaEvent>,
    controls: std_mpsc::Receiver<Control>,
    // Accounting.
    frames: u64,
    dropped: u64,
    dtmf_sent: u64,
    level_in: (f64, u64),
    level_out: (f64, u64),
    capture_device_ms: f64,
    playback_device_ms: f64,
    device_resampler_ms: (f64, f64),
    playback_glitches: (u64, u64),
    last_stats: MediaStats,
    /// Arrival times of recent audio packets by RTP timestamp, and the time played
    /// packets waited since the last statistics (the jitter buffer's own figure is a
    /// mean over the whole call, start-up included).
    arrivals: VecDeque<(u32, Instant)>,
    waited: (f64, u64),
    waited_ms: f64,
    /// Shortest wait of a played packet in the current window, pops in it, and how long a
    /// decided 10 ms shift has been waiting for a quiet moment (see [`Pipeline::play`]).
    min_wait: (f64, u32),
    shift_pending: Option<u32>,
    shifts: u64,
    /// The local conference this call is in, if any, and what the other members' far
    /// ends said this frame (added to what we send).
    conference: Option<vaxel_audio::mix::BusMember>,
    others: Frame,
}

impl Pipeline {
    pub(crate) fn new(
        audio: NegotiatedAudio,
        tuning: MediaTuning,
        inbound: mpsc::Receiver<Inbound>,
        outbound: mpsc::Sender<Outbound>,
        events: mpsc::Sender<CallMediaEvent>,
        controls: std_mpsc::Receiver<Control>,
    ) -> Result<Self, MediaError> {
        let path = CodecPath::new(&audio, &tuning)?;
        let srtp = Self::srtp_for(&audio)?;
        let ssrc = rand::random::<u32>();
        let initial_seq = rand::random::<u16>();
        let rtp = Self::rtp_for(&audio, &tuning, ssrc, initial_seq, Instant::now());
        let (dtmf_tx, dtmf_rx) = Self::dtmf_for(&audio);
        Ok(Pipeline {
            path,
            rtp,
            srtp,
            dtmf_tx,
            dtmf_rx,
            inband: VecDeque::new(),
            ssrc,
            initial_seq,
            sent_before: 0,
            media_ts: rand::random::<u32>(),
            marker_next: true,
            muted: false,
            pcm48: vec![0; FRAME_SAMPLES],
            capture: Vec::with_capacity(4 * FRAME_SAMPLES),
            playout: VecDeque::with_capacity(4 * FRAME_SAMPLES),
            decoded: Vec::with_capacity(2 * FRAME_SAMPLES),
            resampled: Vec::with_capacity(4 * FRAME_SAMPLES),
            payload: Vec::with_capacity(1500),
            inbound,
            outbound,
            events,
            controls,
            frames: 0,
            dropped: 0,
            dtmf_sent: 0,
            level_in: (0.0, 0),
            level_out: (0.0, 0),
            capture_device_ms: 0.0,
            playback_device_ms: 0.0,
            device_resampler_ms: (0.0, 0.0),
            playback_glitches: (0, 0),
            last_stats: MediaStats::default(),
            arrivals: VecDeque::with_capacity(64),
            waited: (0.0, 0),
            waited_ms: 0.0,
            min_wait: (f64::MAX, 0),
            shift_pending: None,
            shifts: 0,
            conference: None,
            others: [0.0; FRAME_SAMPLES],
            audio,
            tuning,
        })
    }

    fn payload_types(audio: &NegotiatedAudio) -> Vec<u8> {
        let mut pts = vec![audio.recv_pt, audio.send_pt];
        if let Some(te) = audio.telephone_event {
            pts.extend([te.recv_pt, te.send_pt]);
        }
        pts.sort_unstable();
        pts.dedup();
        pts
    }

    fn rtp_for(
        audio: &NegotiatedAudio,
        tuning: &MediaTuning,
        ssrc: u32,
        seq: u16,
        now: Instant,
    ) -> RtpSession {
        RtpSession::new(
            RtpConfig {
                local_ssrc: ssrc,
                initial_seq: seq,
                cname: tuning.cname.clone(),
                clock_rate: audio.codec.rtp_clock_rate(),
                payload_types: Self::payload_types(audio),
                remote_rtp: audio.remote_rtp,
                remote_rtcp: audio.remote_rtcp,
                rtcp_mux: audio.rtcp_mux,
            },
            now,
            ntp_now(),
        )
    }

    fn srtp_for(audio: &NegotiatedAudio) -> Result<Option<SrtpSession>, MediaError> {
        audio
            .srtp
            .as_ref()
            .map(|p| SrtpSession::new(p.suite, &p.local_key, &p.remote_key))
            .transpose()
            .map_err(|e| MediaError::Negotiated(e.to_string()))
    }

    fn dtmf_for(audio: &NegotiatedAudio) -> (Option<DtmfSender>, Option<DtmfReceiver>) {
        match audio.telephone_event {
            Some(te) => (
                Some(DtmfSender::new(te.send_pt, te.clock_rate, audio.ptime_ms)),
                Some(DtmfReceiver::new(te.clock_rate)),
            ),
            None => (None, None),
        }
    }

    fn emit(&mut self, e: CallMediaEvent) {
        // A reader that does not keep up loses events; the media thread never waits.
        let _ = self.events.try_send(e);
    }

    fn transmit(&mut self, to: SocketAddr, data: Bytes, rtcp_port: bool) {
        if self
            .outbound
            .try_send(Outbound {
                to,
                data,
                rtcp_port,
            })
            .is_err()
        {
            tracing::debug!("send queue full: datagram dropped");
        }
    }

    /// The sending side's own buffering, refreshed by the loop (device endpoints only).
    pub(crate) fn set_device_latency(
        &mut self,
        capture_ms: f64,
        playback_ms: f64,
        resampler_ms: (f64, f64),
    ) {
        self.capture_device_ms = capture_ms;
        self.playback_device_ms = playback_ms;
        self.device_resampler_ms = resampler_ms;
    }

    /// The playback device's underruns and trimmed frames so far (device endpoints only).
    pub(crate) fn set_playback_glitches(&mut self, underruns: u64, trimmed: u64) {
        self.playback_glitches = (underruns, trimmed);
    }

    /// The latest statistics.
    /// Whether the device loop should cancel echo.
    pub(crate) fn echo_cancellation(&self) -> bool {
        self.tuning.echo_cancellation
    }

    pub(crate) fn stats(&self) -> MediaStats {
        self.last_stats.clone()
    }

    /// One 10 ms frame: apply controls, take in datagrams, produce the frame to play into
    /// `output`, send what `input` completes, RTCP, and the periodic events.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        input: &Frame,
        output: &mut Frame,
    ) -> ControlFlow<()> {
        if self.controls_stop(now) {
            return ControlFlow::Break(());
        }
        self.receive(now);
        self.play(now, output);
        self.others.fill(0.0);
        if let Some(member) = &self.conference {
            member.exchange(output, &mut self.others);
        }
        self.send(now, input);
        self.rtcp(now);
        self.frames += 1;
        if self.frames.is_multiple_of(LEVEL_EVERY) {
            let e = CallMediaEvent::Levels {
                input_dbfs: dbfs(self.level_in.0, self.level_in.1),
                output_dbfs: dbfs(self.level_out.0, self.level_out.1),
            };
            self.level_in = (0.0, 0);
            self.level_out = (0.0, 0);
            self.emit(e);
        }
        if self.frames.is_multiple_of(STATS_EVERY) {
            if self.waited.1 > 0 {
                self.waited_ms = self.waited.0 / self.waited.1 as f64;
            }
            self.waited = (0.0, 0);
            self.last_stats = self.snapshot();
            let e = CallMediaEvent::Stats(Box::new(self.last_stats.clone()));
            self.emit(e);
        }
        ControlFlow::Continue(())
    }

    /// Ends the stream: RTCP BYE to the peer.
    pub(crate) fn finish(&mut self, now: Instant) {
        self.last_stats = self.snapshot();
        if let Some(to) = self.rtp.remote_rtcp() {
            let bye = self.rtp.build_bye(now);
            if let Some(b) = self.protect_rtcp(&bye) {
                let mux = self.audio.rtcp_mux;
                self.transmit(to, b, !mux);
            }
        }
    }

    fn snapshot(&self) -> MediaStats {
        let call = self.rtp.stats(self.path.codec.name());
        let jitter = self.path.jitter.stats();
        let latency = LatencyParts {
            packetization_ms: self.audio.ptime_ms as f64,
            capture_device_ms: self.capture_device_ms,
            playback_device_ms: self.playback_device_ms,
            jitter_buffer_ms: self.waited_ms,
            network_ms: call.rtt_ms.map(|r| r as f64 / 2.0),
            codec_ms: codec_delay_ms(self.audio.codec),
            send_resampler_ms: self.path.enc_rs.delay_ms() + self.device_resampler_ms.0,
            receive_resampler_ms: self.path.dec_rs.delay_ms() + self.device_resampler_ms.1,
            playback_underruns: self.playback_glitches.0,
            playback_trimmed_frames: self.playback_glitches.1,
        };
        MediaStats {
            call,
            jitter,
            latency,
            dropped_datagrams: self.dropped,
            dtmf_sent: self.dtmf_sent,
            muted: self.muted,
        }
    }

    /// Applies pending controls; true on stop.
    fn controls_stop(&mut self, now: Instant) -> bool {
        loop {
            match self.controls.try_recv() {
                Ok(Control::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return true,
                Err(std_mpsc::TryRecvError::Empty) => return false,
                Ok(Control::Mute(m)) => self.muted = m,
                Ok(Control::Dtmf(digits)) => self.queue_dtmf(&digits),
                Ok(Control::Conference(member)) => self.conference = member,
                Ok(Control::Update(audio)) => {
                    if let Err(e) = self.update(*audio, now) {
                        self.emit(CallMediaEvent::Error(e));
                    }
                }
            }
        }
    }

    fn queue_dtmf(&mut self, digits: &str) {
        let rate = self.path.codec.sample_rate();
        let duration = self.tuning.dtmf_duration;
        for d in digits.chars() {
            match &mut self.dtmf_tx {
                Some(tx) => {
                    if tx.send(d, duration).is_ok() {
                        self.dtmf_sent += 1;
                    }
                }
                None => {
                    let Ok(g) = DtmfGenerator::new(d, rate, INBAND_AMPLITUDE) else {
                        continue;
                    };
                    let ms = duration.as_millis().clamp(40, 5000) as usize;
                    self.inband.push_back(InbandTone {
                        generator: Some(g),
                        left: rate as usize * ms / 1000,
                        pos: 0,
                    });
                    self.inband.push_back(InbandTone {
                        generator: None,
                        left: rate as usize * DtmfSender::GAP.as_millis() as usize / 1000,
                        pos: 0,
                    });
                    self.dtmf_sent += 1;
                }
            }
        }
    }

    /// A renegotiation. Everything is built before anything is replaced, so a failure
    /// leaves the running media untouched.
    fn update(&mut self, new: NegotiatedAudio, now: Instant) -> Result<(), MediaError> {
        let old = &self.audio;
        let codec_changed = new.codec != old.codec || new.ptime_ms != old.ptime_ms;
        let path = if codec_changed {
            Some(CodecPath::new(&new, &self.tuning)?)
        } else {
            None
        };
        let srtp = if new.srtp != old.srtp {
            Some(Self::srtp_for(&new)?)
        } else {
            None
        };
        let clock_changed = new.codec.rtp_clock_rate() != old.codec.rtp_clock_rate();
        let te_changed = new.telephone_event != old.telephone_event || new.ptime_ms != old.ptime_ms;
        let resumed_sending = !old.direction.sends() && new.direction.sends();
        let stopped_receiving = old.direction.receives() && !new.direction.receives();
        if let Some(p) = path {
            self.path = p;
            self.capture.clear();
            self.playout.clear();
            self.inband.clear();
        }
        if let Some(s) = srtp {
            self.srtp = s;
        }
        if clock_changed {
            // RtpSession's reception statistics run on the codec clock: start a new one,
            // keeping our SSRC and continuing our sequence numbers (RFC 3550 §5.1), and
            // carry our timestamp over to the new clock.
            let sent = self.rtp.stats("").packets_sent;
            self.sent_before += sent;
            let seq = self.initial_seq.wrapping_add(self.sent_before as u16);
            self.media_ts = (self.media_ts as u64 * new.codec.rtp_clock_rate() as u64
                / old.codec.rtp_clock_rate().max(1) as u64) as u32;
            self.rtp = Self::rtp_for(&new, &self.tuning, self.ssrc, seq, now);
        } else {
            self.rtp
                .update_remote(new.remote_rtp, new.remote_rtcp, Self::payload_types(&new));
        }
        if te_changed {
            let (tx, rx) = Self::dtmf_for(&new);
            self.dtmf_tx = tx;
            self.dtmf_rx = rx;
        }
        if resumed_sending || codec_changed {
            self.marker_next = true;
        }
        if stopped_receiving {
            self.path.jitter.reset();
            self.playout.clear();
        }
        self.audio = new;
        Ok(())
    }

    fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Bytes> {
        match &mut self.srtp {
            Some(s) => match s.protect_rtcp(packet) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!("SRTCP protect: {e}");
                    None
                }
            },
            None => Some(Bytes::copy_from_slice(packet)),
        }
    }

    fn receive(&mut self, now: Instant) {
        while let Ok(d) = self.inbound.try_recv() {
            if d.rtcp_port || (self.audio.rtcp_mux && is_rtcp(&d.data)) {
                self.receive_rtcp(d);
            } else {
                self.receive_rtp(d);
            }
        }
        while let Some(e) = self.rtp.poll_event() {
            let e = match e {
                RtpEvent::RemoteAddressChanged(a) => CallMediaEvent::RemoteAddressLatched(a),
                RtpEvent::SsrcChanged { old, new } => CallMediaEvent::SsrcChanged { old, new },
                RtpEvent::Bye => CallMediaEvent::RemoteBye,
            };
            self.emit(e);
        }
        if let Some(rx) = &mut self.dtmf_rx {
            let mut digits = Vec::new();
            while let Some(n) = rx.poll(now) {
                if let DtmfNotice::Started(d) = n {
                    digits.push(d);
                }
            }
            for digit in digits {
                self.emit(CallMediaEvent::Dtmf {
                    digit,
                    source: DtmfSource::Rfc4733,
                });
            }
        }
    }

    fn receive_rtcp(&mut self, d: Inbound) {
        let plain = match &mut self.srtp {
            Some(s) => match s.unprotect_rtcp(&d.data) {
                Ok(b) => b,
                Err(e) => {
                    self.dropped += 1;
                    tracing::debug!(from = %d.from, "SRTCP dropped: {e}");
                    return;
                }
            },
            None => d.data,
        };
        if let Err(e) = self.rtp.handle_rtcp(d.at, &plain) {
            self.dropped += 1;
            tracing::debug!(from = %d.from, "RTCP dropped: {e}");
        }
    }

    fn receive_rtp(&mut self, d: Inbound) {
        // Authenticate first: only genuine packets may move the latch (RFC 3711 §3.3).
        let plain = match &mut self.srtp {
            Some(s) => match s.unprotect_rtp(&d.data) {
                Ok(b) => b,
                Err(e) => {
                    self.dropped += 1;
                    tracing::debug!(from = %d.from, "SRTP dropped: {e}");
                    return;
                }
            },
            None => d.data,
        };
        let r = match self.rtp.handle_rtp(d.at, d.from, &plain) {
            Ok(r) => r,
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(from = %d.from, "RTP dropped: {e}");
                return;
            }
        };
        if let Some(te) = self.audio.telephone_event
            && (r.payload_type == te.recv_pt || r.payload_type == te.send_pt)
        {
            if let Some(rx) = &mut self.dtmf_rx
                && rx.handle(d.at, r.timestamp, &r.payload).is_err()
            {
                self.dropped += 1;
            }
            return;
        }
        if r.duplicate || !self.audio.direction.receives() {
            return;
        }
        if self.arrivals.len() == 64 {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((r.timestamp, d.at));
        self.path.jitter.push(
            d.at,
            JitterPacket {
                ssrc: r.ssrc,
                timestamp: r.timestamp,
                marker: r.marker,
                payload: r.payload,
            },
        );
    }

    fn play(&mut self, now: Instant, output: &mut Frame) {
        // Pop one packet time whenever the 48 kHz queue cannot fill this frame: on average
        // once per ptime, as the jitter buffer expects.
        let mut guard = 0;
        while self.playout.len() < FRAME_SAMPLES && guard < 8 {
            guard += 1;
            let frame = self.path.frame;
            self.decoded.clear();
            if self.audio.direction.receives() {
                let codec = &mut self.path.codec;
                let r = match self.path.jitter.pop(now) {
                    Playout::Frame(p) => {
                        if let Some(&(_, at)) =
                            self.arrivals.iter().find(|(ts, _)| *ts == p.timestamp)
                        {
                            let w = now.saturating_duration_since(at).as_secs_f64() * 1000.0;
                            self.waited.0 += w;
                            self.waited.1 += 1;
                            self.min_wait.0 = self.min_wait.0.min(w);
                        }
                        codec
                            .decode(&p.payload, &mut self.decoded)
                            .or_else(|_| codec.conceal(None, &mut self.decoded))
                    }
                    Playout::Conceal { next } => codec.conceal(next.as_deref(), &mut self.decoded),
                    Playout::Stretch => codec.conceal(None, &mut self.decoded),
                    Playout::Silence => Ok(()),
                };
                if r.is_err() {
                    self.decoded.clear();
                }
            }
            if self.decoded.is_empty() {
                self.decoded.resize(frame, 0);
            }
            if let Some(det) = &mut self.path.detector {
                det.process(&self.decoded);
                let mut digits = Vec::new();
                while let Some(d) = det.poll() {
                    digits.push(d);
                }
                for digit in digits {
                    self.emit(CallMediaEvent::Dtmf {
                        digit,
                        source: DtmfSource::InBand,
                    });
                }
            }
            self.resampled.clear();
            self.path.dec_rs.process(&self.decoded, &mut self.resampled);
            self.playout.extend(self.resampled.iter().copied());
            self.maybe_shift();
        }
        let mut sum = 0.0;
        for o in output.iter_mut() {
            let s = self.playout.pop_front().unwrap_or(0);
            *o = s as f32 / 32768.0;
            sum += (*o as f64) * (*o as f64);
        }
        self.level_out.0 += sum;
        self.level_out.1 += FRAME_SAMPLES as u64;
    }

    /// The jitter buffer steers in whole packets, but we pop on 10 ms frames: with packets
    /// longer than a frame, every packet may wait up to a frame more than the jitter
    /// buffer's target, for the whole call. When every packet played over the last
    /// half second waited at least the target plus a frame, play the next one a frame
    /// earlier: drop the first 10 ms of what was just decoded (in a quiet moment if one
    /// comes soon; at start-up it is silence anyway).
    fn maybe_shift(&mut self) {
        const WINDOW: u32 = 25;
        const PATIENCE: u32 = 50;
        const QUIET: i16 = 100;
        const SLACK_MS: f64 = 1.0;
        if self.path.frame * PIPELINE_RATE as usize
            <= FRAME_SAMPLES * self.path.codec.sample_rate() as usize
        {
            return; // packets of one frame: the jitter buffer's own steps are fine enough
        }
        self.min_wait.1 += 1;
        if self.min_wait.1 >= WINDOW {
            let frame_ms = FRAME_SAMPLES as f64 * 1000.0 / PIPELINE_RATE as f64;
            let target = self.path.jitter.target_delay().as_secs_f64() * 1000.0;
            if self.min_wait.0 >= target + frame_ms + SLACK_MS && self.shift_pending.is_none() {
                self.shift_pending = Some(0);
            }
            self.min_wait = (f64::MAX, 0);
        }
        let Some(waited) = self.shift_pending.as_mut() else {
            return;
        };
        *waited += 1;
        let n = self.playout.len();
        if self.resampled.len() < 2 * FRAME_SAMPLES {
            return;
        }
        let quiet = self
            .playout
            .range(n - self.resampled.len()..)
            .take(FRAME_SAMPLES)
            .all(|s| s.unsigned_abs() < QUIET as u16);
        if quiet || *waited > PATIENCE {
            let start = n - self.resampled.len();
            self.playout.drain(start..start + FRAME_SAMPLES);
            self.shift_pending = None;
            self.shifts += 1;
            self.min_wait = (f64::MAX, 0);
        }
    }

    fn send(&mut self, now: Instant, input: &Frame) {
        let mut sum = 0.0;
        for ((o, &x), &other) in self.pcm48.iter_mut().zip(input.iter()).zip(&self.others) {
            sum += (x as f64) * (x as f64);
            // Mute silences the microphone, not the conference's other far ends.
            let mic = if self.muted { 0.0 } else { x };
            *o = vaxel_media::dsp::to_i16((mic + other).clamp(-1.0, 1.0) * 32768.0);
        }
        self.level_in.0 += sum;
        self.level_in.1 += FRAME_SAMPLES as u64;
        self.path.enc_rs.process(&self.pcm48, &mut self.capture);
        let frame = self.path.frame;
        while self.capture.len() >= frame {
            let mut pcm: Vec<i16> = self.capture.drain(..frame).collect();
            self.send_packet(now, &mut pcm);
        }
    }

    fn send_packet(&mut self, now: Instant, pcm: &mut [i16]) {
        let ts = self.media_ts;
        self.media_ts = ts.wrapping_add(self.audio.codec.rtp_units(self.path.frame));
        let Some(to) = self.rtp.remote_rtp() else {
            self.marker_next = true;
            return;
        };
        if !self.audio.direction.sends() {
            self.marker_next = true;
            return;
        }
        let packet = if let Some(p) = self.dtmf_tx.as_mut().and_then(|tx| tx.next_packet(ts)) {
            self.rtp
                .build_rtp(now, p.payload_type, p.marker, p.timestamp, &p.payload)
        } else {
            self.mix_inband(pcm);
            self.payload.clear();
            if let Err(e) = self.path.codec.encode(pcm, &mut self.payload) {
                tracing::warn!("encode: {e}");
                return;
            }
            let marker = std::mem::take(&mut self.marker_next);
            self.rtp
                .build_rtp(now, self.audio.send_pt, marker, ts, &self.payload)
        };
        let data = match &mut self.srtp {
            Some(s) => match s.protect_rtp(&packet) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("SRTP protect: {e}");
                    return;
                }
            },
            None => packet,
        };
        self.transmit(to, data, false);
    }

    /// Replaces the audio with in-band DTMF while digits are queued (no telephone-event).
    fn mix_inband(&mut self, pcm: &mut [i16]) {
        let mut done = 0;
        while done < pcm.len() {
            let Some(t) = self.inband.front_mut() else {
                return;
            };
            let n = t.left.min(pcm.len() - done);
            match &t.generator {
                Some(g) => g.fill(t.pos, &mut pcm[done..done + n]),
                None => pcm[done..done + n].fill(0),
            }
            t.pos += n as u64;
            t.left -= n;
            done += n;
            if t.left == 0 {
                self.inband.pop_front();
            }
        }
    }

    fn rtcp(&mut self, now: Instant) {
        if now < self.rtp.poll_timeout() {
            return;
        }
        let Some(report) = self.rtp.poll_rtcp(now) else {
            return;
        };
        let Some(to) = self.rtp.remote_rtcp() else {
            return;
        };
        if let Some(b) = self.protect_rtcp(&report) {
            let mux = self.audio.rtcp_mux;
            self.transmit(to, b, !mux);
        }
    }
}

/// How long the loops may go without a frame from a clocked source before carrying on
/// with silence (device switched or gone), as vaxel-audio's media loop does.
pub(crate) const CAPTURE_STALL: Duration = Duration::from_millis(60);
