//! Prints the echo canceller's ERLE on a simulated room, for several echo
//! delays and settings.
//!
//! ```sh
//! cargo run -p vaxel-audio --features aec --example erle
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use vaxel_audio::PIPELINE_RATE;
use vaxel_audio::aec::{AecOptions, EchoScenario, NoiseLevel, measure_erle};
use vaxel_audio::signal::{RoomEcho, speech_like};

fn main() {
    let (far, source) = support::speech::speech(
        "Good morning, you have reached the front desk. Please hold while we connect your call.",
        "en-us",
        14.0,
        1,
        110.0,
    );
    let rate = PIPELINE_RATE as usize;
    let near: Vec<f32> = speech_like(2, 14.0, 210.0, PIPELINE_RATE)
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
    println!("far end: {source:?} speech, 14 s; near end joins at 8-10 s and 12-13 s");
    println!(
        "{:>8} {:>8} {:>22} {:>10} {:>14} {:>12}",
        "delay", "ERL", "settings", "ERLE", "double-talk", "AEC delay"
    );
    for delay in [40.0, 60.0, 80.0] {
        let scenario = EchoScenario {
            far: far.clone(),
            near: near.clone(),
            room: RoomEcho {
                delay_ms: delay,
                rt60_ms: 200.0,
                gain: 0.4,
                seed: 5,
            },
            noise_dbfs: -70.0,
            converge_s: 3.0,
        };
        let settings = [
            (
                "AEC, delay-agnostic",
                AecOptions {
                    noise_suppression: None,
                    ..AecOptions::default()
                },
            ),
            (
                "AEC, delay given",
                AecOptions {
                    noise_suppression: None,
                    delay_agnostic: false,
                    stream_delay_ms: Some(delay as u32),
                    ..AecOptions::default()
                },
            ),
            (
                "AEC + NS moderate",
                AecOptions {
                    noise_suppression: Some(NoiseLevel::Moderate),
                    ..AecOptions::default()
                },
            ),
        ];
        for (name, options) in settings {
            match measure_erle(&scenario, options) {
                Ok(r) => println!(
                    "{:>6} ms {:>5.1} dB {:>22} {:>7.1} dB {:>+11.1} dB {:>9} ms",
                    delay,
                    r.room_erl_db,
                    name,
                    r.erle_far_only_db,
                    r.double_talk_near_db.unwrap_or(f64::NAN),
                    r.reported.delay_ms.map_or("?".into(), |d| d.to_string()),
                ),
                Err(e) => println!("{delay:>6} ms {name:>22} failed: {e}"),
            }
        }
    }
}
