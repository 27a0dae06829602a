//! Call media: one call's audio path between the network and an audio source and sink.
//!
//! # Shape
//!
//! ```text
//!  source ─48 kHz─▶ resample ─▶ encode ─▶ RTP ─▶ SRTP ─▶ ┐
//!  (mic, WAV, tone)                   (or RFC 4733 DTMF)   │ send task ─▶ UDP
//!                                                          │
//!  sink ◀─48 kHz── resample ◀─ decode ◀─ jitter ◀─ RTP ◀─ SRTP ◀─ receive tasks ◀─ UDP
//!  (speaker, WAV)          (in-band DTMF detect)   (RFC 4733 DTMF)
//! ```
//!
//! - **tokio** owns the sockets: a receive task per socket stamps each datagram with
//!   its arrival time and hands it to the media thread through a bounded channel
//!   (`try_send`: nobody waits); a send task writes what the media thread produced.
//! - **The media thread** owns every sans-IO state machine of vaxel-media for the call
//!   ([`vaxel_media::rtp::RtpSession`], [`vaxel_media::srtp::SrtpSession`],
//!   [`vaxel_media::jitter::JitterBuffer`], the codec, DTMF sender/receiver/detector) and
//!   runs once per 10 ms frame. It is paced by the pipeline: by vaxel-audio's
//!   `run_media_loop` (the capture device) with sound devices, by a clocked endpoint if
//!   one is, else by a 10 ms timer. cpal callbacks only copy to and from rings.
//! - **The handle** ([`CallMediaHandle`]) sends controls to the media thread (update
//!   after a re-INVITE, hold/resume through the direction, mute, DTMF, stop); **events**
//!   ([`CallMediaEvent`]) come back on a bounded channel: DTMF received, statistics each
//!   second, audio levels ten times a second, latching, SSRC changes, errors.
//!
//! SRTP packets are authenticated (`unprotect_rtp`) before `RtpSession::handle_rtp` sees
//! them, so only genuine packets can move the symmetric-RTP latch.
//!
//! # Use
//!
//! ```no_run
//! # async fn call(audio: vaxel_media::sdp::NegotiatedAudio) -> Result<(), vaxel_phone::media::MediaError> {
//! use vaxel_phone::media::*;
//! // 1. Ports first: the SDP offer or answer carries them.
//! let ports = MediaPorts::bind("192.0.2.10".parse().unwrap(), 16384..=32767).await?;
//! let _sdp_port = ports.rtp_addr().port();
//! // 2. After offer/answer: start the media with what was negotiated.
//! let io = AudioIo::Endpoints {
//!     source: Box::new(WavFileSource::open("hello.wav", PlayMode::Loop)?),
//!     sink: Box::new(WavFileSink::create("call.wav")?),
//! };
//! let (call, mut events) = CallMedia::start(CallMediaConfig::new(ports, audio, io))?;
//! call.send_dtmf("123#")?;
//! while let Some(e) = events.recv().await {
//!     if let CallMediaEvent::Stats(s) = e { println!("{:?}", s.call); break; }
//! }
//! let summary = call.stop().await?;
//! # let _ = summary; Ok(()) }
//! ```

mod endpoint;
mod net;
mod pipeline;
mod ringback;
mod run;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use vaxel_media::jitter::JitterStats;
use vaxel_media::rtp::CallStats;
use vaxel_media::sdp::NegotiatedAudio;

pub use endpoint::{
    AudioIo, AudioSink, AudioSource, DevicePlaybackSink, DeviceSource, NullSink, PlayMode,
    SilentSource, ToneSource, WavFileSink, WavFileSource,
};
pub use net::MediaPorts;
pub use ringback::{Ringback, Ringtone};

/// How a call opens its sound devices: 5 ms device periods (PulseAudio then
/// holds about 10 ms instead of 20) and one period of prefill, which the
/// mouth-to-ear benchmark measured at 40–50 ms end to end with 20 ms packets.
/// The media loop trims a playback queue that stays deeper than it needs and
/// counts underruns in [`LatencyParts`], so a device that cannot keep up shows
/// in the call statistics.
pub fn call_stream_options() -> vaxel_audio::StreamOptions {
    vaxel_audio::StreamOptions {
        buffer_ms: Some(5),
        prefill_ms: 5,
        ..vaxel_audio::StreamOptions::default()
    }
}

/// Whose fault an error is (ARCHITECTURE.md §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Misuse of this API: a bad argument or a call after stop. Retrying fails the same way.
    Caller,
    /// Bad input from outside: a broken WAV file, SDP we cannot run.
    Input,
    /// The system refused: no free port, a file that cannot be written, no runtime.
    Environment,
}

/// Everything that can go wrong with call media. Broken packets from the network are not
/// errors: they are counted ([`MediaStats::dropped_datagrams`]) and dropped.
#[derive(Debug, Error)]
pub enum MediaError {
    /// A configuration that cannot work (caller's fault).
    #[error("bad media configuration: {0}")]
    BadConfig(String),
    /// No RTP/RTCP port pair could be bound in the range.
    #[error("no free RTP/RTCP port pair on {ip} in {range}: {reason}")]
    NoPort {
        /// The address we tried.
        ip: IpAddr,
        /// The port range.
        range: String,
        /// The last bind error.
        reason: String,
    },
    /// The negotiated codec or SRTP keys cannot be set up.
    #[error("cannot run the negotiated media: {0}")]
    Negotiated(String),
    /// A file could not be opened, created or written.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A WAV file that cannot be played.
    #[error("{}: {reason}", path.display())]
    Wav {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a DTMF digit (`0-9 * # A-D`).
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    /// The call's media has stopped; the handle can do nothing more.
    #[error("call media has stopped")]
    Stopped,
    /// No tokio runtime to run the sockets on, or the media thread could not start.
    #[error("cannot start call media: {0}")]
    Runtime(String),
}

impl MediaError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            MediaError::BadConfig(_) | MediaError::BadDigit(_) | MediaError::Stopped => {
                Fault::Caller
            }
            MediaError::Negotiated(_) | MediaError::Wav { .. } => Fault::Input,
            MediaError::NoPort { .. } | MediaError::File { .. } | MediaError::Runtime(_) => {
                Fault::Environment
            }
        }
    }
}

/// How in-band (audio) DTMF is detected in what we receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InbandDtmf {
    /// Only when no `telephone-event` was negotiated (a peer that can send RFC 4733 does,
    /// and a peer that sends both would otherwise be heard twice).
    #[default]
    Auto,
    /// Always, in addition to RFC 4733.
    Always,
    /// Never.
    Off,
}

/// Knobs with sensible defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaTuning {
    /// Smallest jitter-buffer target delay, ms. The adaptive target never goes below it.
    /// `None` keeps vaxel-media's default (one packet time, at least 20 ms); a clean LAN
    /// can go lower (see the mouth-to-ear example).
    pub jitter_min_delay_ms: Option<u32>,
    /// Largest jitter-buffer target delay, ms.
    pub jitter_max_delay_ms: u32,
    /// How long each DTMF digit we send lasts.
    pub dtmf_duration: Duration,
    /// In-band DTMF detection.
    pub inband_dtmf: InbandDtmf,
    /// RTCP CNAME (RFC 3550 §6.5.1).
    pub cname: String,
    /// Cancel the speaker's echo in the microphone (sound devices only; needs a build
    /// with vaxel-audio's `aec` feature, see [`vaxel_audio::CallEcho`]).
    pub echo_cancellation: bool,
}

impl Default for MediaTuning {
    fn default() -> Self {
        MediaTuning {
            jitter_min_delay_ms: None,
            jitter_max_delay_ms: 400,
            dtmf_duration: Duration::from_millis(100),
            inband_dtmf: InbandDtmf::Auto,
            cname: "vaxel".into(),
            echo_cancellation: false,
        }
    }
}

/// Everything a call's media needs to start.
#[derive(Debug)]
pub struct CallMediaConfig {
    /// The bound local ports (the ones in our SDP).
    pub ports: MediaPorts,
    /// The outcome of offer/answer.
    pub audio: NegotiatedAudio,
    /// Where audio comes from and goes to.
    pub io: AudioIo,
    /// Tuning.
    pub tuning: MediaTuning,
}

impl CallMediaConfig {
    /// A configuration with default tuning.
    pub fn new(ports: MediaPorts, audio: NegotiatedAudio, io: AudioIo) -> Self {
        CallMediaConfig {
            ports,
            audio,
            io,
            tuning: MediaTuning::default(),
        }
    }
}

/// How a received digit was signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    /// RFC 4733 telephone-event packets.
    Rfc4733,
    /// Tones in the audio (Goertzel detection).
    InBand,
}

/// Where the mouth-to-ear delay of the *receiving* side goes, plus this side's capture
/// buffering, in ms. Sum the sender's capture part and the receiver's other parts for
/// one direction's total (see the mouth-to-ear example).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyParts {
    /// Packet time: a sample waits for its packet to fill, then plays at the same
    /// offset in the decoded frame.
    pub packetization_ms: f64,
    /// Audio waiting in the capture device path (host buffer plus our ring), ms.
    pub capture_device_ms: f64,
    /// Audio queued for the playback device (our ring plus the host buffer), ms.
    pub playback_device_ms: f64,
    /// Mean time the packets played in the last second waited in the jitter buffer (from
    /// socket arrival to playout), ms.
    pub jitter_buffer_ms: f64,
    /// Half the RTCP round-trip time (includes the peer's report processing), if known.
    pub network_ms: Option<f64>,
    /// The codec's algorithmic delay (encoder lookahead plus decoder), ms.
    pub codec_ms: f64,
    /// Resampling on the way out: the device's rate to 48 kHz (vaxel-audio) and 48 kHz to
    /// the codec rate (ours), ms.
    pub send_resampler_ms: f64,
    /// Resampling on the way in: the codec rate to 48 kHz and 48 kHz to the device's
    /// rate, ms.
    pub receive_resampler_ms: f64,
    /// Times the playback device found our ring empty and played silence (sound devices
    /// only; a small device buffer trades these for delay).
    pub playback_underruns: u64,
    /// 10 ms frames not queued for playback to keep its buffer short (start-up depth,
    /// clock drift between the devices).
    pub playback_trimmed_frames: u64,
}

/// A statistics snapshot, sent once a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    /// RTP/RTCP statistics: codec, packets, loss, jitter, RTT.
    pub call: CallStats,
    /// Jitter buffer counters and delays.
    pub jitter: JitterStats,
    /// Where the delay goes.
    pub latency: LatencyParts,
    /// Datagrams dropped: malformed, failed SRTP authentication or replay, unknown
    /// payload type, or arriving faster than the media thread could take them.
    pub dropped_datagrams: u64,
    /// DTMF digits sent (either way).
    pub dtmf_sent: u64,
    /// Whether we are sending silence because of mute.
    pub muted: bool,
}

/// What happens in a call's media.
#[derive(Debug)]
pub enum CallMediaEvent {
    /// The peer pressed a key.
    Dtmf {
        /// The digit (`0-9 * # A-D`).
        digit: char,
        /// How it came.
        source: DtmfSource,
    },
    /// Statistics, once a second.
    Stats(Box<MediaStats>),
    /// Audio levels for meters, about ten times a second: RMS in dBFS over the last 100 ms
    /// (−100 for digital silence).
    Levels {
        /// What the source gave (before mute, so the meter shows you are heard nowhere).
        input_dbfs: f32,
        /// What went to the sink.
        output_dbfs: f32,
    },
    /// Symmetric RTP latched to a new peer address (RFC 4961); we send there now.
    RemoteAddressLatched(SocketAddr),
    /// The peer's SSRC changed (e.g. after a transfer); playout restarted.
    SsrcChanged {
        /// The previous SSRC.
        old: u32,
        /// The new one.
        new: u32,
    },
    /// The peer sent RTCP BYE.
    RemoteBye,
    /// Something failed but the call's media carries on (e.g. a renegotiation that
    /// cannot be applied, a recording that stopped).
    Error(MediaError),
}

/// The receiving end of a call's events. Bounded: when nobody reads, events are dropped
/// rather than the media thread waiting.
pub type CallMediaEvents = mpsc::Receiver<CallMediaEvent>;

/// What the media thread reports when it ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaSummary {
    /// The last statistics.
    pub stats: MediaStats,
}

pub(crate) enum Control {
    Update(Box<NegotiatedAudio>),
    Mute(bool),
    Dtmf(String),
    Conference(Option<vaxel_audio::mix::BusMember>),
    Stop,
}

/// Controls one call's media. Dropping it stops the media (without waiting).
#[derive(Debug)]
pub struct CallMediaHandle {
    controls: std_mpsc::Sender<Control>,
    done: Option<oneshot::Receiver<Result<MediaSummary, MediaError>>>,
    tasks: Vec<JoinHandle<()>>,
    rtp_addr: SocketAddr,
    rtcp_addr: SocketAddr,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Update(_) => f.write_str("Update"),
            Control::Mute(m) => write!(f, "Mute({m})"),
            Control::Dtmf(d) => write!(f, "Dtmf({d:?})"),
            Control::Conference(m) => write!(f, "Conference({:?})", m.as_ref().map(|m| m.id())),
            Control::Stop => f.write_str("Stop"),
        }
    }
}

/// Starts call media. See the [module documentation](self).
#[derive(Debug)]
pub struct CallMedia;

impl CallMedia {
    /// Starts the media of a call: spawns the socket tasks on the current tokio runtime and
    /// the media thread. Must be called from within a tokio runtime.
    pub fn start(
        config: CallMediaConfig,
    ) -> Result<(CallMediaHandle, CallMediaEvents), MediaError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| MediaError::Runtime(format!("no tokio runtime: {e}")))?;
        let rtp_addr = config.ports.rtp_addr();
        let rtcp_addr = config.ports.rtcp_addr();
        let (in_tx, in_rx) = mpsc::channel(512);
        let (out_tx, out_rx) = mpsc::channel(512);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let (ctl_tx, ctl_rx) = std_mpsc::channel();
        let pipeline =
            pipeline::Pipeline::new(config.audio, config.tuning, in_rx, out_tx, ev_tx, ctl_rx)?;
        let tasks = net::spawn(&rt, config.ports, in_tx, out_rx);
        let (done_tx, done_rx) = oneshot::channel();
        let io = config.io;
        let spawned = std::thread::Builder::new()
            .name("vaxel-call-media".into())
            .spawn(move || {
                let result = run::run(pipeline, io);
                let _ = done_tx.send(result);
            });
        if let Err(e) = spawned {
            for t in &tasks {
                t.abort();
            }
            return Err(MediaError::Runtime(format!("media thread: {e}")));
        }
        Ok((
            CallMediaHandle {
                controls: ctl_tx,
                done: Some(done_rx),
                tasks,
                rtp_addr,
                rtcp_addr,
            },
            ev_rx,
        ))
    }
}

impl CallMediaHandle {
    /// Our RTP address.
    pub fn local_rtp(&self) -> SocketAddr {
        self.rtp_addr
    }

    /// Our RTCP address.
    pub fn local_rtcp(&self) -> SocketAddr {
        self.rtcp_addr
    }

    fn send(&self, c: Control) -> Result<(), MediaError> {
        self.controls.send(c).map_err(|_| MediaError::Stopped)
    }

    /// Applies a renegotiation (re-INVITE or UPDATE): codec, payload types, address,
    /// direction and SRTP keys. Hold is a direction: `sendonly`/`inactive` from the
    /// peer's answer means we stop sending (RecvOnly/Inactive here), and resume is
    /// `sendrecv` again. A renegotiation that cannot be applied is reported as an
    /// [`CallMediaEvent::Error`] and the old media carries on.
    pub fn update(&self, audio: NegotiatedAudio) -> Result<(), MediaError> {
        self.send(Control::Update(Box::new(audio)))
    }

    /// Mutes or unmutes: while muted, digital silence is encoded and sent, so RTP keeps
    /// flowing (NAT bindings and the peer's jitter buffer stay warm).
    pub fn set_mute(&self, muted: bool) -> Result<(), MediaError> {
        self.send(Control::Mute(muted))
    }

    /// Sends digits: as RFC 4733 events with the negotiated payload type, or as in-band
    /// tones when no `telephone-event` was negotiated. Checks every digit first.
    pub fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        for d in digits.chars() {
            vaxel_media::dtmf::event_code(d).map_err(|_| MediaError::BadDigit(d))?;
        }
        self.send(Control::Dtmf(digits.to_owned()))
    }

    /// Joins a local conference (or leaves it with `None`): from then on what the
    /// other members' far ends say is added to what this call sends, and what this
    /// call's far end says goes to them (see [`vaxel_audio::mix`]). Mute still silences
    /// only the microphone.
    pub fn set_conference(
        &self,
        member: Option<vaxel_audio::mix::BusMember>,
    ) -> Result<(), MediaError> {
        self.send(Control::Conference(member))
    }

    /// Stops the media: sends RTCP BYE, finishes the sink (a recording's header), ends the
    /// media thread and the socket tasks. Returns the final statistics, or the sink's
    /// error.
    pub async fn stop(mut self) -> Result<MediaSummary, MediaError> {
        let _ = self.controls.send(Control::Stop);
        let result = match self.done.take() {
            Some(rx) => rx.await.unwrap_or(Err(MediaError::Stopped)),
            None => Err(MediaError::Stopped),
        };
        for t in self.tasks.drain(..2.min(self.tasks.len())) {
            t.abort();
        }
        result
    }
}

impl Drop for CallMediaHandle {
    fn drop(&mut self) {
        let _ = self.controls.send(Control::Stop);
        // The receive tasks would otherwise run forever; the send task ends on its own
        // once the media thread is gone.
        for t in self.tasks.iter().take(2) {
            t.abort();
        }
    }
}
