//! The mouth-to-ear benchmark run once as a test: the click must come through the whole
//! call path (capture, encode, SRTP over loopback, jitter buffer, decode, playback). The
//! figure is printed, never asserted (ARCHITECTURE.md §6); see
//! `cargo run --release -p vaxel-phone --example mouth-to-ear` for the benchmark.

mod support;

use support::pulse::{PulseDaemon, in_child, pulseaudio_installed};

#[test]
fn mouth_to_ear_click_is_found() {
    if !pulseaudio_installed() {
        support::skip_or_fail("mouth_to_ear_click_is_found", "pulseaudio");
        return;
    }
    let daemon = PulseDaemon::start(support::mouth_to_ear::SCRIPT).expect("start pulseaudio");
    daemon.run_child_test("child_mouth_to_ear");
}

#[test]
#[ignore = "runs inside the test PulseAudio daemon, started by mouth_to_ear_click_is_found"]
fn child_mouth_to_ear() {
    assert!(in_child());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(support::mouth_to_ear::measure(Default::default()))
        .expect("measurement runs");
    report.print();
    assert!(
        report.delays_ms.len() >= report.clicks_sent / 2,
        "only {} of {} clicks came through",
        report.delays_ms.len(),
        report.clicks_sent
    );
}
