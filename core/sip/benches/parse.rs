//! Parse speed of `vaxel_sip::msg` against rsip 0.4.0 on the same bytes: an
//! INVITE with SDP (about 850 bytes) and a REGISTER.
//!
//! Run with `cargo bench -p vaxel-sip --bench parse`.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "messages.rs"]
mod messages;
use messages::{INVITE, REGISTER};

fn bench(c: &mut Criterion) {
    assert!(INVITE.len() > 800, "INVITE is {} bytes", INVITE.len());
    for (name, raw) in [("invite", INVITE), ("register", REGISTER)] {
        let bytes = Bytes::from_static(raw);
        // Both parsers must accept the message, or the comparison is moot.
        vaxel_sip::msg::parse(bytes.clone()).expect("vaxel parses");
        rsip::SipMessage::try_from(raw).expect("rsip parses");

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("vaxel", |b| {
            b.iter(|| vaxel_sip::msg::parse(black_box(bytes.clone())).unwrap())
        });
        g.bench_function("vaxel+typed", |b| {
            b.iter(|| {
                let m = vaxel_sip::msg::parse(black_box(bytes.clone())).unwrap();
                let h = m.headers();
                (
                    h.top_via().unwrap(),
                    h.from().unwrap(),
                    h.to().unwrap(),
                    h.call_id().unwrap(),
                    h.cseq().unwrap(),
                )
            })
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(raw)).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
