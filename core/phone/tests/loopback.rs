//! Two call-media instances talking RTP over 127.0.0.1, no sound card: A plays a 1 kHz
//! WAV, B records to WAV; DTMF, hold/resume and a codec change mid-call. The SDP for
//! each call comes from vaxel-media's offer/answer, as in a real call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use vaxel_media::codec::CodecKind;
use vaxel_media::dsp::{goertzel_power, sine};
use vaxel_media::sdp::{self, Direction, MediaPolicy, NegotiatedAudio, OfferAnswer, SrtpPolicy};
use vaxel_media::wav::{Prompt, WavRecorder};
use vaxel_phone::media::{
    AudioIo, CallMedia, CallMediaConfig, CallMediaEvent, CallMediaHandle, DtmfSource, MediaPorts,
    MediaStats, NullSink, PlayMode, SilentSource, WavFileSink, WavFileSource,
};

const RATE: u32 = 48_000;
const TONE_DBFS: f64 = -12.0;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vaxel-phone-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 1 kHz tone WAV at 16 kHz (so opening it exercises the resampler too).
fn tone_wav(dir: &Path) -> PathBuf {
    let path = dir.join("tone.wav");
    let mut rec = WavRecorder::new(std::fs::File::create(&path).unwrap(), 16_000).unwrap();
    let amp = 32767.0 * 10f64.powf(TONE_DBFS / 20.0);
    rec.write(&sine(16_000, 1000.0, amp, 16_000)).unwrap();
    rec.finish().unwrap();
    path
}

/// Offer/answer between two freshly bound port pairs (or the given ones).
fn negotiate(
    a: &MediaPorts,
    b: &MediaPorts,
    codec: CodecKind,
    srtp: SrtpPolicy,
    telephone_event: bool,
    seed: u64,
) -> (NegotiatedAudio, NegotiatedAudio) {
    let policy = MediaPolicy {
        codecs: vec![codec],
        srtp,
        telephone_event,
        ..MediaPolicy::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut oa_a = OfferAnswer::new(policy.clone(), a.rtp_addr(), &mut rng);
    let mut oa_b = OfferAnswer::new(policy, b.rtp_addr(), &mut rng);
    let offer = sdp::parse(oa_a.create_offer().to_string().as_bytes()).unwrap();
    let (answer, audio_b) = oa_b.handle_offer(&offer).unwrap();
    let audio_a = oa_a
        .handle_answer(&sdp::parse(answer.to_string().as_bytes()).unwrap())
        .unwrap();
    assert_eq!(audio_a.codec, codec);
    assert_eq!(audio_a.srtp.is_some(), srtp == SrtpPolicy::Required);
    (audio_a, audio_b)
}

async fn ports() -> MediaPorts {
    MediaPorts::bind("127.0.0.1".parse().unwrap(), 20000..=39999)
        .await
        .unwrap()
}

struct Call {
    a: CallMediaHandle,
    b: CallMediaHandle,
    b_events: tokio::task::JoinHandle<Vec<CallMediaEvent>>,
    recording: PathBuf,
    dir: PathBuf,
    a_rtp: std::net::SocketAddr,
    b_rtp: std::net::SocketAddr,
    audio_a: NegotiatedAudio,
    audio_b: NegotiatedAudio,
}

async fn start_call(name: &str, codec: CodecKind, srtp: SrtpPolicy, telephone_event: bool) -> Call {
    let dir = temp_dir(name);
    let wav = tone_wav(&dir);
    let recording = dir.join("b.wav");
    let (pa, pb) = (ports().await, ports().await);
    let (a_rtp, b_rtp) = (pa.rtp_addr(), pb.rtp_addr());
    let (audio_a, audio_b) = negotiate(&pa, &pb, codec, srtp, telephone_event, 7);
    let (a, mut a_events) = CallMedia::start(CallMediaConfig::new(
        pa,
        audio_a.clone(),
        AudioIo::Endpoints {
            source: Box::new(WavFileSource::open(&wav, PlayMode::Loop).unwrap()),
            sink: Box::new(NullSink),
        },
    ))
    .unwrap();
    // Drain A's events so nothing backs up (the pipeline would drop them anyway).
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });
    let (b, mut b_events) = CallMedia::start(CallMediaConfig::new(
        pb,
        audio_b.clone(),
        AudioIo::Endpoints {
            source: Box::new(SilentSource),
            sink: Box::new(WavFileSink::create(&recording).unwrap()),
        },
    ))
    .unwrap();
    let b_events = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = b_events.recv().await {
            all.push(e);
        }
        all
    });
    Call {
        a,
        b,
        b_events,
        recording,
        dir,
        a_rtp,
        b_rtp,
        audio_a,
        audio_b,
    }
}

struct Ended {
    recording: Vec<i16>,
    a: MediaStats,
    b: MediaStats,
    b_events: Vec<CallMediaEvent>,
}

async fn end_call(c: Call) -> Ended {
    let a = c.a.stop().await.unwrap().stats;
    let b = c.b.stop().await.unwrap().stats;
    let b_events = c.b_events.await.unwrap();
    let prompt = Prompt::from_wav(std::fs::File::open(&c.recording).unwrap(), RATE).unwrap();
    let _ = std::fs::remove_dir_all(&c.dir);
    Ended {
        recording: prompt.samples().to_vec(),
        a,
        b,
        b_events,
    }
}

fn window(x: &[i16], from_s: f64, to_s: f64) -> &[i16] {
    let (a, b) = (
        (from_s * RATE as f64) as usize,
        (to_s * RATE as f64) as usize,
    );
    assert!(
        x.len() >= b,
        "recording is {} s long",
        x.len() as f64 / RATE as f64
    );
    &x[a..b]
}

fn rms_dbfs(x: &[i16]) -> f64 {
    let ms = x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * (ms / 32768f64.powi(2)).max(1e-12).log10()
}

/// Asserts 1 kHz is there at about the level sent (RMS of a sine is 3 dB under its peak),
/// and carries most of the energy.
fn assert_tone(x: &[i16], what: &str) {
    let level = rms_dbfs(x);
    let energy = x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let share = 2.0 * goertzel_power(x, RATE, 1000.0) / energy.max(1e-9);
    println!(
        "{what}: {level:.1} dBFS, 1 kHz carries {:.0} % of the energy",
        share * 100.0
    );
    assert!(
        (level - (TONE_DBFS - 3.0)).abs() < 4.0,
        "{what}: tone at {level:.1} dBFS"
    );
    assert!(share > 0.8, "{what}: 1 kHz is only {:.0} %", share * 100.0);
}

fn assert_silent(x: &[i16], what: &str) {
    let level = rms_dbfs(x);
    println!("{what}: {level:.1} dBFS");
    assert!(
        level < -60.0,
        "{what}: expected silence, got {level:.1} dBFS"
    );
}

fn dtmf(events: &[CallMediaEvent]) -> Vec<(char, DtmfSource)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallMediaEvent::Dtmf { digit, source } => Some((*digit, *source)),
            _ => None,
        })
        .collect()
}

async fn tone_and_dtmf(name: &str, codec: CodecKind, srtp: SrtpPolicy) {
    let c = start_call(name, codec, srtp, true).await;
    let (a_rtp, b_rtp) = (c.a_rtp, c.b_rtp);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.a.send_dtmf("123#").unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let e = end_call(c).await;
    assert_tone(
        window(&e.recording, 0.4, 0.95),
        &format!("{name} before DTMF"),
    );
    assert_tone(
        window(&e.recording, 2.25, 2.55),
        &format!("{name} after DTMF"),
    );
    let digits = dtmf(&e.b_events);
    assert_eq!(
        digits,
        "123#"
            .chars()
            .map(|d| (d, DtmfSource::Rfc4733))
            .collect::<Vec<_>>(),
        "{name}: each digit exactly once"
    );
    assert_eq!(e.b.call.codec, codec.encoding_name(), "{name}");
    assert!(e.b.call.packets_received > 100, "{name}: {:?}", e.b.call);
    assert_eq!(e.b.dropped_datagrams, 0, "{name}");
    assert_eq!(e.a.dtmf_sent, 4);
    // B sends to where A's packets come from (here the SDP address already, so no
    // latching event is due).
    assert_eq!(e.b.call.remote_addr, Some(a_rtp), "{name}");
    assert!(
        !e.b_events
            .iter()
            .any(|ev| matches!(ev, CallMediaEvent::RemoteAddressLatched(_)))
    );
    assert!(e.b_events.iter().any(
        |ev| matches!(ev, CallMediaEvent::Levels { output_dbfs, .. } if *output_dbfs > -20.0)
    ));
    let stats = e
        .b_events
        .iter()
        .filter(|ev| matches!(ev, CallMediaEvent::Stats(_)))
        .count();
    assert!(stats >= 2, "{name}: {stats} stats events");
    let _ = b_rtp;
}

#[tokio::test]
async fn pcmu_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("pcmu", CodecKind::Pcmu, SrtpPolicy::Disabled).await;
}

#[tokio::test]
async fn pcma_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("pcma", CodecKind::Pcma, SrtpPolicy::Disabled).await;
}

#[tokio::test]
async fn g722_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("g722", CodecKind::G722, SrtpPolicy::Disabled).await;
}

#[tokio::test]
async fn opus_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("opus", CodecKind::Opus, SrtpPolicy::Disabled).await;
}

#[tokio::test]
async fn srtp_pcma_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("srtp-pcma", CodecKind::Pcma, SrtpPolicy::Required).await;
}

#[tokio::test]
async fn srtp_opus_tone_and_rfc4733_dtmf() {
    tone_and_dtmf("srtp-opus", CodecKind::Opus, SrtpPolicy::Required).await;
}

#[tokio::test]
async fn inband_dtmf_without_telephone_event() {
    let c = start_call("inband", CodecKind::Pcma, SrtpPolicy::Disabled, false).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.a.send_dtmf("123#").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = end_call(c).await;
    assert_eq!(
        dtmf(&e.b_events),
        "123#"
            .chars()
            .map(|d| (d, DtmfSource::InBand))
            .collect::<Vec<_>>()
    );
    assert_tone(window(&e.recording, 0.3, 0.55), "inband before DTMF");
}

#[tokio::test]
async fn hold_stops_audio_and_resume_restores_it() {
    let c = start_call("hold", CodecKind::Pcmu, SrtpPolicy::Required, true).await;
    // Negotiated audio as the two sides would see it after a hold re-INVITE (inactive)
    // and after the resume (sendrecv again).
    let (a_now, b_now) = (c.audio_a.clone(), c.audio_b.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.a.update(NegotiatedAudio {
        direction: Direction::Inactive,
        ..a_now.clone()
    })
    .unwrap();
    c.b.update(NegotiatedAudio {
        direction: Direction::Inactive,
        ..b_now.clone()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.a.update(a_now).unwrap();
    c.b.update(b_now).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let e = end_call(c).await;
    assert_tone(window(&e.recording, 0.35, 0.75), "before hold");
    assert_silent(window(&e.recording, 1.0, 1.55), "on hold");
    assert_tone(window(&e.recording, 1.95, 2.35), "after resume");
    // 2.4 s of call, 0.8 s of it on hold: about 80 packets of 20 ms, not 120.
    let sent = e.a.call.packets_sent;
    assert!((60..=100).contains(&sent), "A sent {sent} packets");
}

#[tokio::test]
async fn codec_change_mid_call() {
    let c = start_call("recodec", CodecKind::Pcmu, SrtpPolicy::Disabled, true).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    // A re-INVITE offering only Opus, with fresh SRTP keys.
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let policy = MediaPolicy {
        codecs: vec![CodecKind::Opus],
        srtp: SrtpPolicy::Required,
        ..MediaPolicy::default()
    };
    let mut oa_a = OfferAnswer::new(policy.clone(), c.a_rtp, &mut rng);
    let mut oa_b = OfferAnswer::new(policy, c.b_rtp, &mut rng);
    let offer = sdp::parse(oa_a.create_offer().to_string().as_bytes()).unwrap();
    let (answer, audio_b) = oa_b.handle_offer(&offer).unwrap();
    let audio_a = oa_a
        .handle_answer(&sdp::parse(answer.to_string().as_bytes()).unwrap())
        .unwrap();
    c.b.update(audio_b).unwrap();
    c.a.update(audio_a).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.a.send_dtmf("9").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = end_call(c).await;
    assert_tone(window(&e.recording, 0.35, 0.85), "PCMU before the change");
    assert_tone(window(&e.recording, 1.5, 1.95), "Opus after the change");
    assert_eq!(e.b.call.codec, "opus");
    assert_eq!(dtmf(&e.b_events), vec![('9', DtmfSource::Rfc4733)]);
    assert!(
        !e.b_events
            .iter()
            .any(|ev| matches!(ev, CallMediaEvent::Error(_))),
        "no errors"
    );
}

#[tokio::test]
async fn mute_keeps_rtp_flowing_with_silence() {
    let c = start_call("mute", CodecKind::Pcma, SrtpPolicy::Disabled, true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.a.set_mute(true).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let e = end_call(c).await;
    assert_tone(window(&e.recording, 0.3, 0.55), "before mute");
    assert_silent(window(&e.recording, 0.9, 1.3), "muted");
    assert!(e.a.muted);
    // Still about 50 packets a second for the whole 1.4 s.
    assert!(e.a.call.packets_sent >= 60, "{:?}", e.a.call);
}

#[tokio::test]
async fn bad_digits_and_controls_after_stop_are_caller_errors() {
    let c = start_call("misuse", CodecKind::Pcmu, SrtpPolicy::Disabled, true).await;
    let err = c.a.send_dtmf("12x").unwrap_err();
    assert_eq!(err.fault(), vaxel_phone::media::Fault::Caller);
    let _ = end_call(c).await;
}
