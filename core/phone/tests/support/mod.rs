//! Helpers shared by the integration tests and the mouth-to-ear example: a private
//! PulseAudio daemon (adapted from vaxel-audio's tests) and the measurement itself.
#![allow(dead_code)]

pub mod mouth_to_ear;
pub mod pulse;

/// Whether the environment demands that real peers (here: PulseAudio) exist,
/// so a missing one fails the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var("VAXEL_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Skips (prints a line and returns true) or panics when a peer is missing.
pub fn skip_or_fail(test: &str, what: &str) -> bool {
    if peers_required() {
        panic!("{test}: {what} is missing and VAXEL_REQUIRE_PEERS=1");
    }
    println!("SKIP {test}: {what} is missing (set VAXEL_REQUIRE_PEERS=1 to fail instead)");
    true
}
