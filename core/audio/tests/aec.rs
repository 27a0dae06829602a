//! Echo cancellation measured on a simulated room (feature `aec`).
#![cfg(feature = "aec")]

mod support;

use vaxel_audio::PIPELINE_RATE;
use vaxel_audio::aec::{AecOptions, EchoScenario, NoiseLevel, measure_erle};
use vaxel_audio::signal::{RoomEcho, speech_like};

/// Far end talks for 14 s; the near end joins in at 8–10 s and 12–13 s
/// (double-talk). Echo path: 60 ms delay, 200 ms reverberation, −8 dB.
fn scenario() -> (EchoScenario, support::speech::Source) {
    let (far, source) = support::speech::speech(
        "Good morning, you have reached the front desk. Please hold while we connect your call.",
        "en-us",
        14.0,
        1,
        110.0,
    );
    let talker = speech_like(2, 14.0, 210.0, PIPELINE_RATE);
    let rate = PIPELINE_RATE as usize;
    let near: Vec<f32> = talker
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let t = i / rate;
            if (8..10).contains(&t) || t == 12 {
                v * 0.5
            } else {
                0.0
            }
        })
        .collect();
    (
        EchoScenario {
            far,
            near,
            room: RoomEcho {
                delay_ms: 60.0,
                rt60_ms: 200.0,
                gain: 0.4,
                seed: 5,
            },
            noise_dbfs: -70.0,
            converge_s: 3.0,
        },
        source,
    )
}

#[test]
fn echo_canceller_removes_room_echo() {
    let (scenario, source) = scenario();
    let aec_only = AecOptions {
        noise_suppression: None,
        ..AecOptions::default()
    };
    let r = measure_erle(&scenario, aec_only).unwrap();
    println!(
        "far end: {source:?}; room ERL {:.1} dB; ERLE (far-end only, {:.1} s, AEC alone) {:.1} dB; \
         double-talk ({:.1} s) near-end level {:+.1} dB; AEC reports ERLE {:?} dB, delay {:?} ms",
        r.room_erl_db,
        r.far_only_s,
        r.erle_far_only_db,
        r.double_talk_s,
        r.double_talk_near_db.unwrap_or(f64::NAN),
        r.reported.erle_db,
        r.reported.delay_ms,
    );
    assert!(
        r.far_only_s > 3.0,
        "too little far-end-only speech to judge"
    );
    assert!(
        r.erle_far_only_db > 10.0,
        "ERLE {:.1} dB is below the 10 dB floor",
        r.erle_far_only_db
    );

    let with_ns = AecOptions {
        noise_suppression: Some(NoiseLevel::Moderate),
        ..AecOptions::default()
    };
    let r2 = measure_erle(&scenario, with_ns).unwrap();
    println!("with noise suppression: ERLE {:.1} dB", r2.erle_far_only_db);
    assert!(r2.erle_far_only_db > 10.0);
}

#[test]
fn near_end_alone_passes_through() {
    // No far end: the canceller must not eat the local talker.
    let near = speech_like(3, 6.0, 180.0, PIPELINE_RATE);
    let far = vec![0.0f32; near.len()];
    let mut aec = vaxel_audio::aec::EchoCanceller::new(AecOptions {
        noise_suppression: None,
        ..AecOptions::default()
    })
    .unwrap();
    let mut out = Vec::new();
    for (f, n) in far.chunks_exact(480).zip(near.chunks_exact(480)) {
        aec.far_end(f.try_into().unwrap()).unwrap();
        let mut frame: [f32; 480] = n.try_into().unwrap();
        aec.near_end(&mut frame).unwrap();
        out.extend_from_slice(&frame);
    }
    let skip = 48_000;
    let change = 10.0
        * (vaxel_audio::signal::power(&out[skip..]) / vaxel_audio::signal::power(&near[skip..]))
            .log10();
    println!("near end alone: level change {change:+.1} dB");
    assert!(change > -3.0, "near-end speech lost {change:.1} dB");
}
