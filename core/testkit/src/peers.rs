//! Real peers in tests (SIPp, PulseAudio, Kamailio, baresip, …): whether a
//! missing one skips the test or fails it.
//!
//! `npm test` sets `VAXEL_REQUIRE_PEERS=1`, so a peer that the setup script
//! should have installed but did not turns into a failure, never into a test
//! that silently asserted nothing. A developer running `cargo test` without the
//! peer gets a printed skip line instead.

/// Whether the environment demands that real peers exist
/// (`VAXEL_REQUIRE_PEERS=1`), so a missing one fails the test.
pub fn peers_required() -> bool {
    std::env::var("VAXEL_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// For a missing peer `what`: panics when peers are required, otherwise
/// prints a `SKIP` line naming `test` and returns true (the caller returns).
pub fn skip_or_fail(test: &str, what: &str) -> bool {
    if peers_required() {
        panic!("{test}: {what} is missing and VAXEL_REQUIRE_PEERS=1");
    }
    println!("SKIP {test}: {what} is missing (set VAXEL_REQUIRE_PEERS=1 to fail instead)");
    true
}
