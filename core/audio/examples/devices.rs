//! Lists the sound devices the settings screen would offer.
//!
//! ```sh
//! cargo run -p vaxel-audio --example devices
//! ```

use vaxel_audio::{Audio, AudioConfig, Direction};

fn main() {
    let audio = match Audio::start(AudioConfig::default()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("no sound system: {e} ({})", e.code());
            std::process::exit(1);
        }
    };
    println!("host: {}", audio.host_name());
    let devices = match audio.devices() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot list devices: {e}");
            std::process::exit(1);
        }
    };
    for direction in [Direction::Input, Direction::Output] {
        println!("\n{direction} devices:");
        let mut any = false;
        for d in devices.iter().filter(|d| d.direction == direction) {
            any = true;
            let rates = d.common_rates();
            let span = d
                .rate_span()
                .map_or("?".into(), |(lo, hi)| format!("{lo}-{hi} Hz"));
            println!(
                "  {} {}{}{}",
                if d.is_default { "*" } else { " " },
                d.name,
                if d.is_monitor() { " [monitor]" } else { "" },
                if d.is_default { " (default)" } else { "" }
            );
            println!("      id:       {}", d.id);
            if let Some(n) = d.native {
                println!(
                    "      native:   {} Hz, {} ch, {}",
                    n.rate,
                    n.channels,
                    n.sample.map_or("unsupported".into(), |s| s.to_string())
                );
            }
            println!("      rates:    {span}; common {rates:?}");
            let ch = d.channel_counts();
            match (ch.first(), ch.last()) {
                (Some(lo), Some(hi)) if lo != hi => println!("      channels: {lo}-{hi}"),
                (Some(lo), _) => println!("      channels: {lo}"),
                _ => println!("      channels: ?"),
            }
        }
        if !any {
            println!("  (none)");
        }
    }
}
