//! Checks SIP message files: prints `FILE: valid` or `FILE: invalid: REASON`
//! for each one. A file counts as valid when it parses and passes the checks
//! an endpoint makes before processing it (`Message::validate`).
//!
//! ```text
//! cargo run --release -p vaxel-sip --example sip-lint -- FILE...
//! ```
//!
//! Exits 0 when every file could be read (whatever the verdicts), 1 when one
//! could not (with a message on stderr), 2 without arguments.

use std::process::ExitCode;

use bytes::Bytes;
use vaxel_sip::msg;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: sip-lint FILE...");
        return ExitCode::from(2);
    }
    let mut unreadable = false;
    for file in &files {
        // The example is a driver: reading files is its job, not the crate's.
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{file}: cannot read: {e}");
                unreadable = true;
                continue;
            }
        };
        match msg::parse(Bytes::from(data)).and_then(|m| m.validate()) {
            Ok(()) => println!("{file}: valid"),
            Err(e) => println!("{file}: invalid: {e}"),
        }
    }
    if unreadable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
