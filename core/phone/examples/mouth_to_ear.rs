//! Mouth-to-ear latency of a call, through real (virtual) sound devices: a click enters
//! phone A's microphone, crosses the call (encode, SRTP over loopback, jitter buffer,
//! decode) and comes out of phone B's speaker. Starts its own PulseAudio daemon.
//!
//! ```sh
//! cargo run --release -p vaxel-phone --example mouth-to-ear
//! cargo run --release -p vaxel-phone --example mouth-to-ear -- opus 20 default
//! #                                                 codec ptime jitter-minimum(ms|default)
//! cargo run --release -p vaxel-phone --example mouth-to-ear -- opus 20 10 5 5
//! #                                 ... device-buffer(ms|default) playback-prefill(ms)
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use support::mouth_to_ear::{Setup, measure};
use vaxel_media::codec::CodecKind;
use vaxel_testkit::pulse::{PulseDaemon, in_child, pulseaudio_installed};

fn setup_from_args() -> Setup {
    let mut s = Setup::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(c) = args.first() {
        s.codec = match c.to_ascii_lowercase().as_str() {
            "pcma" => CodecKind::Pcma,
            "g722" => CodecKind::G722,
            "opus" => CodecKind::Opus,
            _ => CodecKind::Pcmu,
        };
    }
    if let Some(p) = args.get(1).and_then(|p| p.parse().ok()) {
        s.ptime_ms = p;
    }
    if let Some(j) = args.get(2) {
        s.jitter_min_delay_ms = j.parse().ok();
    }
    if let Some(b) = args.get(3) {
        s.stream.buffer_ms = b.parse().ok();
    }
    if let Some(p) = args.get(4).and_then(|p| p.parse().ok()) {
        s.stream.prefill_ms = p;
    }
    s
}

fn main() {
    if in_child() {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        match rt.block_on(measure(setup_from_args())) {
            Ok(report) => report.print(),
            Err(e) => {
                eprintln!("measurement failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if !pulseaudio_installed() {
        eprintln!("pulseaudio is not installed (Debian: pulseaudio pulseaudio-utils)");
        std::process::exit(2);
    }
    let daemon = match PulseDaemon::start(support::mouth_to_ear::SCRIPT) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // cpal finds PulseAudio through the environment: measure in a child process pointed
    // at our daemon.
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(std::env::args().skip(1))
        .envs(daemon.env())
        .env("VAXEL_PULSE_CHILD", "1")
        .status()
        .expect("run the measurement");
    if !status.success() {
        eprintln!("PulseAudio log:\n{}", daemon.log());
        std::process::exit(1);
    }
}
