//! Prints late loss and added delay of the adaptive jitter buffer over the standard
//! network profiles, in virtual time: `cargo run -p vaxel-media --example jitter_profiles [seconds]`.

fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    print!("{}", vaxel_media::netem::profile_table(seconds));
}
