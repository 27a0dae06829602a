//! CPU cost per 20 ms frame of the media hot paths: codecs, jitter buffer, mixer, SRTP,
//! resampling. Run with `cargo bench -p vaxel-media`; criterion prints time per iteration
//! (one iteration = one 20 ms frame, or one frame for every party for the mixer).
#![allow(clippy::disallowed_methods)] // benchmarks read the clock for a virtual-time origin
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vaxel_media::codec::CodecKind;
use vaxel_media::dsp::sine;
use vaxel_media::jitter::{JitterBuffer, JitterConfig, JitterPacket};
use vaxel_media::mixer::{Clipping, ConferenceMixer};
use vaxel_media::srtp::{SrtpMasterKey, SrtpSession, SrtpSuite};

fn codecs(c: &mut Criterion) {
    for kind in [
        CodecKind::Opus,
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
    ] {
        let mut codec = kind.build(20).unwrap();
        let n = codec.frame_samples();
        let speechish = sine(kind.sample_rate(), 440.0, 6000.0, n * 50);
        let mut frame_no = 0;
        let mut payload = Vec::with_capacity(1500);
        c.bench_function(&format!("{} encode 20ms", kind.encoding_name()), |b| {
            b.iter(|| {
                let f = &speechish[(frame_no % 50) * n..(frame_no % 50 + 1) * n];
                frame_no += 1;
                payload.clear();
                codec.encode(black_box(f), &mut payload).unwrap();
            })
        });
        let mut enc = kind.build(20).unwrap();
        let payloads: Vec<Vec<u8>> = speechish
            .chunks_exact(n)
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(f, &mut p).unwrap();
                p
            })
            .collect();
        let mut pcm = Vec::with_capacity(n);
        let mut i = 0;
        c.bench_function(&format!("{} decode 20ms", kind.encoding_name()), |b| {
            b.iter(|| {
                pcm.clear();
                codec
                    .decode(black_box(&payloads[i % payloads.len()]), &mut pcm)
                    .unwrap();
                i += 1;
            })
        });
    }
}

fn jitter(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
    let payload = bytes::Bytes::from(vec![0xffu8; 160]);
    let mut i: u32 = 0;
    c.bench_function("jitter buffer push+pop 20ms", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_millis(20 * i as u64);
            // Mild jitter so the window statistics do real work.
            let arrive = now + Duration::from_micros((i as u64 * 7919) % 15_000);
            jb.push(
                arrive,
                JitterPacket {
                    ssrc: 1,
                    timestamp: i.wrapping_mul(160),
                    marker: false,
                    payload: payload.clone(),
                },
            );
            black_box(jb.pop(now + Duration::from_millis(40)));
            i += 1;
        })
    });
}

fn mixer(c: &mut Criterion) {
    for parties in [3usize, 10] {
        let mut m = ConferenceMixer::new(960, Clipping::SoftLimit);
        let ids: Vec<u32> = (0..parties).map(|_| m.join()).collect();
        let frames: Vec<Vec<i16>> = (0..parties)
            .map(|p| sine(48_000, 200.0 + 50.0 * p as f64, 8000.0, 960))
            .collect();
        c.bench_function(&format!("mixer {parties} parties 20ms@48k"), |b| {
            b.iter(|| {
                for (id, f) in ids.iter().zip(&frames) {
                    m.set_input(*id, f).unwrap();
                }
                m.mix();
                black_box(m.output(ids[0]));
            })
        });
    }
}

fn srtp_and_resample(c: &mut Criterion) {
    let k = SrtpMasterKey {
        key: [7; 16],
        salt: [9; 14],
    };
    let mut tx = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_80, &k, &k).unwrap();
    let mut rx = SrtpSession::new(SrtpSuite::AesCm128HmacSha1_80, &k, &k).unwrap();
    let mut seq: u16 = 0;
    c.bench_function("srtp protect+unprotect 160B", |b| {
        b.iter(|| {
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0xffu8; 160]);
            seq = seq.wrapping_add(1);
            let c = tx.protect_rtp(&p).unwrap();
            black_box(rx.unprotect_rtp(&c).unwrap());
        })
    });
    let mut r = vaxel_media::Resampler::new(8000, 48_000).unwrap();
    let input = sine(8000, 440.0, 8000.0, 160);
    let mut out = Vec::with_capacity(2000);
    c.bench_function("resample 8k->48k 20ms", |b| {
        b.iter(|| {
            out.clear();
            r.process(black_box(&input), &mut out);
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = codecs, jitter, mixer, srtp_and_resample
}
criterion_main!(benches);
