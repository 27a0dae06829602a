//! Two endpoints in virtual time: SDP offer/answer, SRTP, RTP/RTCP, codec, a lossy
//! jittery network, the jitter buffer and RFC 4733 DTMF, end to end.
#![allow(clippy::disallowed_methods)] // one clock read for the virtual-time origin

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use vaxel_media::codec::CodecKind;
use vaxel_media::dsp::{goertzel_power, sine};
use vaxel_media::dtmf::{DtmfNotice, DtmfReceiver, DtmfSender};
use vaxel_media::jitter::{JitterBuffer, JitterConfig, JitterPacket, Playout};
use vaxel_media::netem::{NetworkEmulator, NetworkProfile};
use vaxel_media::rtp::{RtpConfig, RtpSession, is_rtcp};
use vaxel_media::sdp::{self, MediaPolicy, NegotiatedAudio, OfferAnswer};
use vaxel_media::srtp::SrtpSession;

const NTP0: u64 = 3_950_000_000u64 << 32;

fn rtp_session(n: &NegotiatedAudio, ssrc: u32, now: Instant) -> RtpSession {
    let mut pts = vec![n.recv_pt, n.send_pt];
    if let Some(te) = n.telephone_event {
        pts.extend([te.recv_pt, te.send_pt]);
    }
    RtpSession::new(
        RtpConfig {
            local_ssrc: ssrc,
            initial_seq: 40_000,
            cname: format!("{ssrc}@test"),
            clock_rate: n.codec.rtp_clock_rate(),
            payload_types: pts,
            remote_rtp: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            rtcp_mux: n.rtcp_mux,
        },
        now,
        NTP0,
    )
}

fn call(codecs: Vec<CodecKind>, profile: NetworkProfile) {
    let t0 = Instant::now();
    let a_addr: SocketAddr = "192.0.2.10:4000".parse().unwrap();
    let b_addr: SocketAddr = "198.51.100.20:5000".parse().unwrap();
    let policy = MediaPolicy {
        codecs,
        ..Default::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut alice = OfferAnswer::new(policy.clone(), a_addr, &mut rng);
    let mut bob = OfferAnswer::new(policy, b_addr, &mut rng);
    let offer = sdp::parse(alice.create_offer().to_string().as_bytes()).unwrap();
    let (answer, nb) = bob.handle_offer(&offer).unwrap();
    let na = alice
        .handle_answer(&sdp::parse(answer.to_string().as_bytes()).unwrap())
        .unwrap();
    let codec = na.codec;
    let (sa, sb) = (na.srtp.clone().unwrap(), nb.srtp.clone().unwrap());
    let mut a_srtp = SrtpSession::new(sa.suite, &sa.local_key, &sa.remote_key).unwrap();
    let mut b_srtp = SrtpSession::new(sb.suite, &sb.local_key, &sb.remote_key).unwrap();
    let mut a_rtp = rtp_session(&na, 0xa11ce, t0);
    let mut b_rtp = rtp_session(&nb, 0xb0b, t0);
    let mut enc = codec.build(na.ptime_ms).unwrap();
    let mut dec = codec.build(nb.ptime_ms).unwrap();
    let n = enc.frame_samples();
    let units = codec.rtp_units(n);
    let te = na.telephone_event.unwrap();
    let mut dtmf = DtmfSender::new(te.send_pt, te.clock_rate, na.ptime_ms);
    let mut dtmf_rx = DtmfReceiver::new(te.clock_rate);
    let mut jb = JitterBuffer::new(JitterConfig::new(codec.rtp_clock_rate(), nb.ptime_ms));
    let mut net = NetworkEmulator::new(profile);
    let frame = Duration::from_millis(na.ptime_ms as u64);
    let frames = 3000 / na.ptime_ms;
    let tone = sine(codec.sample_rate(), 1000.0, 8000.0, n * frames as usize);

    // Alice's side: encode, protect, hand to the network.
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut payload = Vec::new();
    for i in 0..frames {
        let now = t0 + frame * i;
        if i == 50 {
            for d in "12#".chars() {
                dtmf.send(d, Duration::from_millis(100)).unwrap();
            }
        }
        let ts = 1000u32.wrapping_add(i * units);
        let pkt = match dtmf.next_packet(ts) {
            Some(p) => a_rtp.build_rtp(now, p.payload_type, p.marker, p.timestamp, &p.payload),
            None => {
                payload.clear();
                enc.encode(&tone[i as usize * n..(i as usize + 1) * n], &mut payload)
                    .unwrap();
                a_rtp.build_rtp(now, na.send_pt, i == 0, ts, &payload)
            }
        };
        let protected = a_srtp.protect_rtp(&pkt).unwrap();
        for at in net.transmit(now) {
            in_flight.push((at, protected.to_vec()));
        }
        if let Some(rtcp) = a_rtp.poll_rtcp(now) {
            let p = a_srtp.protect_rtcp(&rtcp).unwrap();
            in_flight.push((now + Duration::from_millis(30), p.to_vec()));
        }
    }
    in_flight.sort_by_key(|(at, _)| *at);

    // Bob's side: unprotect, account, buffer, decode every ptime.
    let mut heard = Vec::new();
    let mut digits = String::new();
    let mut next = 0;
    for k in 0..frames + 20 {
        let now = t0 + frame * k + Duration::from_micros(300);
        while next < in_flight.len() && in_flight[next].0 <= now {
            let (at, bytes) = &in_flight[next];
            next += 1;
            if is_rtcp(bytes) {
                let plain = b_srtp.unprotect_rtcp(bytes).unwrap();
                b_rtp.handle_rtcp(*at, &plain).unwrap();
                continue;
            }
            let Ok(plain) = b_srtp.unprotect_rtp(bytes) else {
                continue; // a network duplicate is a replay: rightly refused
            };
            let r = b_rtp.handle_rtp(*at, a_addr, &plain).unwrap();
            if r.payload_type == te.recv_pt {
                dtmf_rx.handle(*at, r.timestamp, &r.payload).unwrap();
            } else {
                jb.push(
                    *at,
                    JitterPacket {
                        ssrc: r.ssrc,
                        timestamp: r.timestamp,
                        marker: r.marker,
                        payload: r.payload,
                    },
                );
            }
        }
        match jb.pop(now) {
            Playout::Frame(p) => dec.decode(&p.payload, &mut heard).unwrap(),
            Playout::Conceal { next } => dec.conceal(next.as_deref(), &mut heard).unwrap(),
            Playout::Stretch => dec.conceal(None, &mut heard).unwrap(),
            Playout::Silence => heard.extend(std::iter::repeat_n(0, n)),
        }
        while let Some(notice) = dtmf_rx.poll(now) {
            if let DtmfNotice::Ended { digit, .. } = notice {
                digits.push(digit);
            }
        }
    }
    assert_eq!(digits, "12#", "{codec:?}");
    let rate = codec.sample_rate();
    let tail = &heard[heard.len() - rate as usize..heard.len() - rate as usize / 2];
    let p1k = goertzel_power(tail, rate, 1000.0);
    assert!(
        p1k > 100.0 * goertzel_power(tail, rate, 1700.0),
        "{codec:?}: tone lost"
    );
    let stats = b_rtp.stats(codec.encoding_name());
    assert!(
        stats.packets_received as u32 >= frames * 9 / 10,
        "{stats:?}"
    );
    assert!(stats.jitter_ms < 40.0, "{stats:?}");
    assert_eq!(stats.remote_addr, Some(a_addr));
}

#[test]
fn opus_call_over_wifi() {
    call(vec![CodecKind::Opus], NetworkProfile::wifi(7));
}

#[test]
fn g722_call_over_wifi() {
    call(vec![CodecKind::G722], NetworkProfile::wifi(8));
}

#[test]
fn pcma_call_over_lossy_bursty_path() {
    call(vec![CodecKind::Pcma], NetworkProfile::bursty_loss(9));
}
