//! Mouth-to-ear latency through the whole call path, on a private PulseAudio daemon:
//!
//! ```text
//!  paplay click ─▶ "mouth" ─┐ (remap of probe's left channel)
//!                   │ monitor = A's microphone
//!                   ▼
//!  A: capture ─▶ encode ─▶ RTP/UDP 127.0.0.1 ─▶ B: jitter ─▶ decode ─▶ playback ─▶ "ear"
//!                                                         (remap of probe's right channel) ─┘
//!  parecord probe.monitor (stereo): left = the click as it entered A's microphone,
//!                                   right = the click as B's speaker played it
//! ```
//!
//! Both channels of one recording come from one sink on one clock, so the offset of the
//! click between them is the mouth-to-ear delay, free of the recorder's own latency.
//! A and B are complete [`CallMedia`] instances on sound devices (`AudioIo::Devices`,
//! paced by vaxel-audio's `run_media_loop`); A's speaker and B's microphone are two more
//! null sinks.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use vaxel_audio::{Audio, AudioConfig, DeviceChoice, DeviceRole, HostChoice, StreamOptions};
use vaxel_media::codec::CodecKind;
use vaxel_media::sdp::{self, MediaPolicy, OfferAnswer, SrtpPolicy};
use vaxel_media::wav::WavRecorder;
use vaxel_phone::media::{
    AudioIo, CallMedia, CallMediaConfig, CallMediaEvent, MediaPorts, MediaStats, MediaTuning,
};

/// The daemon's startup script: the probe sink, its two one-channel halves, and the two
/// devices nobody listens to.
pub const SCRIPT: &str = "\
load-module module-null-sink sink_name=probe rate=48000 channels=2 channel_map=front-left,front-right sink_properties=device.description=Probe
load-module module-remap-sink sink_name=mouth master=probe channels=1 channel_map=mono master_channel_map=front-left remix=no sink_properties=device.description=Mouth
load-module module-remap-sink sink_name=ear master=probe channels=1 channel_map=mono master_channel_map=front-right remix=no sink_properties=device.description=Ear
load-module module-null-sink sink_name=a_speaker rate=48000 channels=1 sink_properties=device.description=A_Speaker
load-module module-null-sink sink_name=b_mic rate=48000 channels=1 sink_properties=device.description=B_Mic
set-default-sink a_speaker
";

const RATE: usize = 48_000;
const CLICKS: usize = 8;
const CLICK_EVERY_MS: usize = 600;

/// What to measure with.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The codec.
    pub codec: CodecKind,
    /// Packet time, ms.
    pub ptime_ms: u32,
    /// The jitter buffer's minimum target (None: vaxel-media's default).
    pub jitter_min_delay_ms: Option<u32>,
    /// Device stream options for all four streams.
    pub stream: StreamOptions,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            codec: CodecKind::Pcmu,
            ptime_ms: 20,
            jitter_min_delay_ms: Some(10),
            // What the phone itself opens its devices with.
            stream: vaxel_phone::media::call_stream_options(),
        }
    }
}

/// The figure and its parts.
#[derive(Debug, Clone)]
pub struct Report {
    /// The setup measured.
    pub setup: Setup,
    /// Mouth-to-ear of each click found, ms.
    pub delays_ms: Vec<f64>,
    /// Clicks sent.
    pub clicks_sent: usize,
    /// The sender's last statistics.
    pub a: MediaStats,
    /// The receiver's last statistics.
    pub b: MediaStats,
}

impl Report {
    /// The median delay.
    pub fn median_ms(&self) -> Option<f64> {
        let mut d = self.delays_ms.clone();
        d.sort_by(f64::total_cmp);
        d.get(d.len() / 2).copied()
    }

    /// Prints the figure and where it goes.
    pub fn print(&self) {
        let s = &self.setup;
        println!(
            "mouth-to-ear, {} ptime {} ms, jitter minimum {:?} ms, playback prefill {} ms, device buffer {:?} ms",
            s.codec.encoding_name(),
            s.ptime_ms,
            s.jitter_min_delay_ms,
            s.stream.prefill_ms,
            s.stream.buffer_ms
        );
        let mut sorted = self.delays_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let Some(total) = self.median_ms() else {
            println!("  no click came through ({} sent)", self.clicks_sent);
            return;
        };
        println!(
            "  total (median of {} of {} clicks): {total:.1} ms   [min {:.1}, max {:.1}]",
            sorted.len(),
            self.clicks_sent,
            sorted[0],
            sorted[sorted.len() - 1]
        );
        println!(
            "  each click (ms): {}",
            self.delays_ms
                .iter()
                .map(|d| format!("{d:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (a, b) = (&self.a.latency, &self.b.latency);
        let network = b.network_ms.or(a.network_ms);
        let parts = [
            (
                "packetization (ptime: fill a packet, play it out)",
                a.packetization_ms,
            ),
            (
                "A capture device (PulseAudio source + our ring)",
                a.capture_device_ms,
            ),
            (
                "B playback device (our ring + PulseAudio sink)",
                b.playback_device_ms,
            ),
            (
                "B jitter buffer (mean, from socket arrival)",
                b.jitter_buffer_ms,
            ),
            ("codec algorithmic delay", a.codec_ms),
            (
                "resamplers (A send side + B receive side)",
                a.send_resampler_ms + b.receive_resampler_ms,
            ),
            ("network/loopback (RTCP RTT / 2)", network.unwrap_or(0.0)),
        ];
        let mut explained = 0.0;
        for (name, ms) in parts {
            println!("  {name:<52} {ms:6.1} ms");
            explained += ms;
        }
        println!(
            "  {:<52} {:6.1} ms",
            "rest (10 ms frame phase, media-thread ticks)",
            total - explained
        );
        println!(
            "  B jitter buffer: target {:.1} ms, played {}, concealed {}, late {}, stretched {}, dropped {}",
            self.b.jitter.target_delay_ms,
            self.b.jitter.played,
            self.b.jitter.concealed,
            self.b.jitter.late,
            self.b.jitter.stretched,
            self.b.jitter.dropped
        );
        println!(
            "  B playback device: {} underruns, {} frames trimmed",
            b.playback_underruns, b.playback_trimmed_frames
        );
        println!(
            "  RTP: A sent {}, B received {}, lost {}, jitter {:.2} ms, RTT {:?} ms",
            self.a.call.packets_sent,
            self.b.call.packets_received,
            self.b.call.packets_lost,
            self.b.call.jitter_ms,
            self.b.call.rtt_ms.or(self.a.call.rtt_ms)
        );
    }
}

fn audio(input: &str, output: &str) -> Result<Audio, String> {
    Audio::start(AudioConfig {
        host: HostChoice::PulseAudio,
        poll_interval: Duration::from_millis(500),
        input: DeviceChoice::Id(format!("pulseaudio:{input}")),
        output: DeviceChoice::Id(format!("pulseaudio:{output}")),
        ringing: DeviceChoice::SystemDefault,
    })
    .map_err(|e| format!("audio: {e}"))
}

fn click_wav(path: &Path) -> Result<(), String> {
    let mut pcm = vec![0i16; RATE / 2 + CLICKS * CLICK_EVERY_MS * RATE / 1000];
    for k in 0..CLICKS {
        let at = RATE / 2 + k * CLICK_EVERY_MS * RATE / 1000;
        // 2 ms of a 1 kHz burst: survives every codec, unlike a one-sample impulse.
        for i in 0..96 {
            let x = (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / RATE as f64).sin();
            pcm[at + i] = (x * 29000.0) as i16;
        }
    }
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut rec = WavRecorder::new(f, RATE as u32).map_err(|e| e.to_string())?;
    rec.write(&pcm).map_err(|e| e.to_string())?;
    rec.finish().map_err(|e| e.to_string())
}

/// Runs one measurement. Must run in a process whose environment points at a daemon
/// started with [`SCRIPT`] (cpal finds PulseAudio through `PULSE_SERVER`).
pub async fn measure(setup: Setup) -> Result<Report, String> {
    let dir = std::env::temp_dir().join(format!("vaxel-m2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let clicks = dir.join("clicks.wav");
    click_wav(&clicks)?;

    // The two phones' sound devices.
    let audio_a = audio("mouth.monitor", "a_speaker")?;
    let audio_b = audio("b_mic.monitor", "ear")?;
    let open = |a: &Audio| -> Result<AudioIo, String> {
        Ok(AudioIo::Devices {
            capture: a.open_capture(setup.stream).map_err(|e| e.to_string())?,
            playback: a
                .open_playback(DeviceRole::Output, setup.stream)
                .map_err(|e| e.to_string())?,
        })
    };

    // Offer/answer as in a real call.
    let ip = "127.0.0.1".parse().unwrap();
    let pa = MediaPorts::bind(ip, 40000..=49999)
        .await
        .map_err(|e| e.to_string())?;
    let pb = MediaPorts::bind(ip, 40000..=49999)
        .await
        .map_err(|e| e.to_string())?;
    let policy = MediaPolicy {
        codecs: vec![setup.codec],
        ptime_ms: setup.ptime_ms,
        srtp: SrtpPolicy::Required,
        ..MediaPolicy::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut oa_a = OfferAnswer::new(policy.clone(), pa.rtp_addr(), &mut rng);
    let mut oa_b = OfferAnswer::new(policy, pb.rtp_addr(), &mut rng);
    let offer =
        sdp::parse(oa_a.create_offer().to_string().as_bytes()).map_err(|e| e.to_string())?;
    let (answer, audio_b_neg) = oa_b.handle_offer(&offer).map_err(|e| e.to_string())?;
    let audio_a_neg = oa_a
        .handle_answer(&sdp::parse(answer.to_string().as_bytes()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let tuning = MediaTuning {
        jitter_min_delay_ms: setup.jitter_min_delay_ms,
        ..MediaTuning::default()
    };

    // The recorder of both ends, started first.
    let raw = dir.join("probe.raw");
    let mut recorder = Command::new("parecord")
        .args([
            "--raw",
            "--device=probe.monitor",
            "--format=s16le",
            "--rate=48000",
            "--channels=2",
            "--latency-msec=20",
        ])
        .stdout(std::fs::File::create(&raw).map_err(|e| e.to_string())?)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("parecord: {e}"))?;

    // Open all four device streams before either phone starts (opening a capture stream
    // on a PulseAudio monitor takes a while), then start the receiver first: otherwise A
    // sends for as long as B's devices take to open and B finds that backlog queued.
    let io_a = open(&audio_a)?;
    let io_b = open(&audio_b)?;
    let (b, b_events) = CallMedia::start(CallMediaConfig {
        tuning: tuning.clone(),
        ..CallMediaConfig::new(pb, audio_b_neg, io_b)
    })
    .map_err(|e| e.to_string())?;
    let (a, a_events) = CallMedia::start(CallMediaConfig {
        tuning,
        ..CallMediaConfig::new(pa, audio_a_neg, io_a)
    })
    .map_err(|e| e.to_string())?;
    let drain = |mut rx: tokio::sync::mpsc::Receiver<CallMediaEvent>| {
        tokio::spawn(async move {
            let mut last = None;
            while let Some(e) = rx.recv().await {
                if let CallMediaEvent::Stats(s) = e {
                    last = Some(*s);
                }
            }
            last
        })
    };
    let a_last = drain(a_events);
    let b_last = drain(b_events);

    // Let the call settle (the first RTCP report goes out after 2.5 s), then click.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let played = tokio::task::spawn_blocking(move || {
        Command::new("paplay")
            .args(["--device=mouth", "--latency-msec=20"])
            .arg(&clicks)
            .status()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("paplay: {e}"))?;
    if !played.success() {
        return Err(format!("paplay failed: {played}"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let a_final = a.stop().await.map_err(|e| e.to_string())?.stats;
    let b_final = b.stop().await.map_err(|e| e.to_string())?.stats;
    let a_stats = a_last.await.ok().flatten().unwrap_or(a_final);
    let b_stats = b_last.await.ok().flatten().unwrap_or(b_final);
    // Our own child, by pid.
    let _ = recorder.kill();
    let _ = recorder.wait();
    drop((audio_a, audio_b));

    let mut bytes = Vec::new();
    std::fs::File::open(&raw)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let (left, right): (Vec<f32>, Vec<f32>) = bytes
        .chunks_exact(4)
        .map(|c| {
            (
                i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0,
                i16::from_le_bytes([c[2], c[3]]) as f32 / 32768.0,
            )
        })
        .unzip();
    Ok(Report {
        setup,
        delays_ms: find_delays(&left, &right),
        clicks_sent: CLICKS,
        a: a_stats,
        b: b_stats,
    })
}

/// For every click on the left (mouth) channel, the first sample loud enough on the right
/// (ear) channel within 400 ms.
fn find_delays(left: &[f32], right: &[f32]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < left.len() {
        if left[i].abs() < 0.3 {
            i += 1;
            continue;
        }
        let end = (i + RATE * 400 / 1000).min(right.len());
        if let Some(j) = right[i.min(end)..end].iter().position(|x| x.abs() > 0.15) {
            out.push(j as f64 * 1000.0 / RATE as f64);
        }
        i += RATE * CLICK_EVERY_MS / 1000 / 2;
    }
    out
}
