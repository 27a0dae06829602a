//! Parses the benchmark messages N times with one parser, for instruction
//! counting under callgrind (repeatable where wall-clock time on a busy
//! machine is not):
//!
//! ```text
//! cargo build --release -p vaxel-sip --example parse-count
//! valgrind --tool=callgrind target/release/examples/parse-count vaxel invite 10000
//! ```
//!
//! Arguments: `vaxel`, `vaxel+typed` or `rsip`; `invite`, `register` or
//! `file:PATH` (a message read from a file); N.
//! Run once with N = 0 and once with N > 0: the difference divided by N is
//! the cost of one parse without process start-up.

use std::hint::black_box;
use std::process::ExitCode;

use bytes::Bytes;

#[path = "../benches/messages.rs"]
mod messages;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [parser, msg, n] = args.as_slice() else {
        eprintln!("usage: parse-count vaxel|vaxel+typed|rsip invite|register N");
        return ExitCode::from(2);
    };
    let raw: &'static [u8] = match msg.as_str() {
        "invite" => messages::INVITE,
        "register" => messages::REGISTER,
        // Any message from a file, to cost one header kind at a time.
        m if m.starts_with("file:") => match std::fs::read(&m[5..]) {
            Ok(v) => v.leak(),
            Err(e) => {
                eprintln!("{m}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("unknown message {msg}");
            return ExitCode::from(2);
        }
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("N must be a number");
        return ExitCode::from(2);
    };
    let bytes = Bytes::from_static(raw);
    match parser.as_str() {
        "vaxel" => {
            for _ in 0..n {
                black_box(vaxel_sip::msg::parse(black_box(bytes.clone())).unwrap());
            }
        }
        "vaxel+typed" => {
            for _ in 0..n {
                let m = vaxel_sip::msg::parse(black_box(bytes.clone())).unwrap();
                let h = m.headers();
                black_box((
                    h.top_via().unwrap(),
                    h.from().unwrap(),
                    h.to().unwrap(),
                    h.call_id().unwrap(),
                    h.cseq().unwrap(),
                ));
            }
        }
        "rsip" => {
            for _ in 0..n {
                black_box(rsip::SipMessage::try_from(black_box(raw)).unwrap());
            }
        }
        _ => {
            eprintln!("unknown parser {parser}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
