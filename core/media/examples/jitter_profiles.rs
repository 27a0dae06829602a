//! Prints late loss and added delay of the adaptive jitter buffer over the standard
//! network profiles, in virtual time: `cargo run -p vaxel-media --example jitter_profiles [seconds]`.

fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Virtual time: the clock is read once for an origin, then only offsets are used.
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    print!("{}", vaxel_media::netem::profile_table(t0, seconds));
}
