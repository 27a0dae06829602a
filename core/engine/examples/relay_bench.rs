//! How many RTP streams the engine's relay carries on one core with added jitter
//! under a bound (default 1 ms): `cargo run --release -p vaxel-engine --example
//! relay_bench -- [--max-jitter-ms 1] [--secs 4] [--mode plain|srtp|transcode]`.
//!
//! Modes: `plain` relays packets as they are; `srtp` terminates SRTP on both legs
//! (each phone encrypts with its key, the relay decrypts and re-encrypts with the
//! engine's key for the other phone, which decrypts); `transcode` has one phone
//! send Opus and the other PCMU, so every packet is decoded, resampled and encoded
//! (those packets carry no send time, so a packet's send time is looked up by its
//! sequence number; the output runs one packet behind its input — the resampler
//! holds back a few samples — so output `n` is timed from the sending of input
//! `n + 1`, which is what makes it leave).
//!
//! The relays (one per call, two streams each: A→B and B→A) run on a tokio runtime
//! with a single thread, that is one core. A load generator on another thread plays
//! both phones of every call: 172-byte packets (RTP + 20 ms of G.711) every 20 ms per
//! stream, the streams spread evenly over the 20 ms like unsynchronised phones, each
//! packet stamped with its send time (wall clock). The arrival time is the kernel's
//! receive timestamp (`SO_TIMESTAMPNS`), so the generator's own scheduling does not
//! count. The added jitter of a packet is its transit time minus the smallest
//! transit time of its stream; a step passes when the 99th
//! percentile is under the bound and no packet is lost. The number of calls doubles
//! until a step fails, then is bisected. The generator shares the machine, so the
//! figure is a lower bound for the relay alone.
//!
//! The last line printed (stdout) is the result; progress goes to stderr.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::Interest;

use tokio::net::UdpSocket;
use vaxel_engine::relay::{Relay, Side, SocketPool};
use vaxel_media::codec::CodecKind;
use vaxel_media::srtp::{CryptoAttribute, SrtpMasterKey, SrtpSession, SrtpSuite};

/// What the relays do to the packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Srtp,
    Transcode,
}

/// One phone's SDP offer or answer.
fn sdp(port: u16, pt_line: &str, crypto: Option<&CryptoAttribute>) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} {pt_line}\r\n"
    );
    if let Some(c) = crypto {
        s.push_str(&format!("a=crypto:{}\r\n", c.to_value()));
    }
    s
}

fn crypto_in(sdp: &str) -> Option<CryptoAttribute> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .and_then(|v| CryptoAttribute::parse(v).ok())
}

/// Per call: the phones' SRTP sessions (A send, A receive, B send, B receive).
type CallKeys = Option<[SrtpSession; 4]>;

/// Send times by sequence number (transcode mode), per stream.
struct SendTimes(Vec<AtomicU64>);

impl SendTimes {
    fn new() -> Self {
        SendTimes((0..65536).map(|_| AtomicU64::new(0)).collect())
    }
}

const PACKET: usize = 172;
const PTIME_MS: u64 = 20;
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Asks the kernel to stamp every datagram's arrival (`SO_TIMESTAMPNS`).
fn enable_rx_timestamps(sock: &UdpSocket) -> std::io::Result<()> {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)
}

/// One datagram and the kernel's arrival time of it (wall clock, ns).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    sock.try_io(Interest::READABLE, || {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(std::io::Error::from)?;
        let mut stamp = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(t) = c {
                    stamp = Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
                }
            }
        }
        Ok((msg.bytes, stamp))
    })
}

struct Step {
    p99_us: u64,
    max_us: u64,
    sent: u64,
    received: u64,
}

/// Runs `calls` relays on a one-thread runtime and loads them for `secs`.
fn step(calls: usize, secs: u64, mode: Mode) -> std::io::Result<Step> {
    let gen_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Both phones of every call.
    let endpoints: Vec<(Arc<UdpSocket>, Arc<UdpSocket>)> = gen_rt.block_on(async {
        let mut v = Vec::with_capacity(calls);
        for _ in 0..calls {
            let a = UdpSocket::bind(SocketAddr::new(LO, 0)).await?;
            let b = UdpSocket::bind(SocketAddr::new(LO, 0)).await?;
            v.push((Arc::new(a), Arc::new(b)));
        }
        Ok::<_, std::io::Error>(v)
    })?;
    let phones: Vec<(SocketAddr, SocketAddr)> = endpoints
        .iter()
        .map(|(a, b)| Ok((a.local_addr()?, b.local_addr()?)))
        .collect::<std::io::Result<_>>()?;
    // The relays on their own thread and single-threaded runtime.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay_thread = std::thread::spawn(move || -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let pool = SocketPool::new(LO);
            let mut relays = Vec::with_capacity(phones.len());
            let mut addrs = Vec::with_capacity(phones.len());
            for (a, b) in phones {
                let r = Relay::start(&pool).await?;
                let mut keys = None;
                match mode {
                    Mode::Plain => {
                        r.set_remote(Side::A, Some(a));
                        r.set_remote(Side::B, Some(b));
                    }
                    Mode::Srtp => {
                        r.terminate();
                        let mut rng = rand::rng();
                        let suite = SrtpSuite::AesCm128HmacSha1_80;
                        let ka = CryptoAttribute {
                            tag: 1,
                            suite,
                            key: SrtpMasterKey::generate(&mut rng),
                        };
                        let to_b = r
                            .pass(Side::A, sdp(a.port(), "RTP/SAVP 0", Some(&ka)).as_bytes())
                            .unwrap_or_default();
                        let eb = crypto_in(&to_b)
                            .ok_or_else(|| std::io::Error::other("no key for B"))?;
                        let kb = CryptoAttribute {
                            tag: eb.tag,
                            suite,
                            key: SrtpMasterKey::generate(&mut rng),
                        };
                        let to_a = r
                            .pass(Side::B, sdp(b.port(), "RTP/SAVP 0", Some(&kb)).as_bytes())
                            .unwrap_or_default();
                        let ea = crypto_in(&to_a)
                            .ok_or_else(|| std::io::Error::other("no key for A"))?;
                        let s = |l: &SrtpMasterKey, r: &SrtpMasterKey| {
                            SrtpSession::new(suite, l, r)
                                .map_err(|e| std::io::Error::other(e.to_string()))
                        };
                        keys = Some([
                            s(&ka.key, &ea.key)?,
                            s(&ka.key, &ea.key)?,
                            s(&kb.key, &eb.key)?,
                            s(&kb.key, &eb.key)?,
                        ]);
                    }
                    Mode::Transcode => {
                        r.terminate();
                        r.pass(
                            Side::A,
                            sdp(a.port(), "RTP/AVP 111\r\na=rtpmap:111 opus/48000/2", None)
                                .as_bytes(),
                        );
                        r.pass(Side::B, sdp(b.port(), "RTP/AVP 0", None).as_bytes());
                    }
                }
                addrs.push((r.local(Side::A), r.local(Side::B), keys));
                relays.push(r);
            }
            let _ = addr_tx.send(addrs);
            let _ = stop_rx.await;
            drop(relays);
            Ok(())
        })
    });
    let relay_addrs = addr_rx
        .recv()
        .map_err(|_| std::io::Error::other("the relay thread failed"))?;
    let result = gen_rt.block_on(load(endpoints, relay_addrs, secs, mode));
    let _ = stop_tx.send(());
    relay_thread
        .join()
        .map_err(|_| std::io::Error::other("the relay thread panicked"))??;
    Ok(result)
}

async fn load(
    endpoints: Vec<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    relays: Vec<(SocketAddr, SocketAddr, CallKeys)>,
    secs: u64,
    mode: Mode,
) -> Step {
    let base = Instant::now();
    let warm_up = Duration::from_millis(500);
    let end = base + warm_up + Duration::from_secs(secs);
    // Packets sent before this (wall clock) are the warm-up.
    let counted_from = wall_ns() + warm_up.as_nanos() as u64;
    // Every socket sends to its relay side and receives what the other phone sent.
    // Per stream: socket, relay address, SRTP sending session, payload, send times.
    type Stream = (
        Arc<UdpSocket>,
        SocketAddr,
        Option<SrtpSession>,
        Vec<u8>,
        Arc<SendTimes>,
    );
    let mut streams: Vec<Stream> = Vec::new();
    // Per receiving socket: its SRTP receiving session and the send times of the
    // stream it receives.
    let mut rx_side: Vec<(Option<SrtpSession>, Arc<SendTimes>)> = Vec::new();
    let opus_payload = encoded(CodecKind::Opus);
    let pcmu_payload = encoded(CodecKind::Pcmu);
    for ((a, b), (ra, rb, keys)) in endpoints.iter().zip(relays) {
        let (pa, pb) = match mode {
            Mode::Transcode => (opus_payload.clone(), pcmu_payload.clone()),
            _ => (vec![0u8; PACKET - 12], vec![0u8; PACKET - 12]),
        };
        let (ta, tb) = (Arc::new(SendTimes::new()), Arc::new(SendTimes::new()));
        let [a_tx, a_rx, b_tx, b_rx] = match keys {
            Some([w, x, y, z]) => [Some(w), Some(x), Some(y), Some(z)],
            None => [None, None, None, None],
        };
        streams.push((a.clone(), ra, a_tx, pa, ta.clone()));
        streams.push((b.clone(), rb, b_tx, pb, tb.clone()));
        // A receives B's stream and the other way round.
        rx_side.push((a_rx, tb));
        rx_side.push((b_rx, ta));
    }
    let mut receivers = Vec::new();
    for ((sock, ..), (mut srtp, times)) in streams.iter().zip(rx_side) {
        let sock = sock.clone();
        let _ = enable_rx_timestamps(&sock);
        receivers.push(tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut transits: Vec<u64> = Vec::new();
            let mut count = 0u64;
            let deadline = tokio::time::Instant::from_std(end + Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    r = sock.readable() => {
                        if r.is_err() { break; }
                        let Ok((n, stamp)) = recv_stamped(&sock, &mut buf) else { continue };
                        let decrypted;
                        let plain: &[u8] = match srtp.as_mut() {
                            Some(s) => match s.unprotect_rtp(&buf[..n]) {
                                Ok(p) => {
                                    decrypted = p;
                                    &decrypted
                                }
                                Err(_) => continue,
                            },
                            None => &buf[..n],
                        };
                        if plain.len() < 20 { continue; }
                        let sent_ns = if mode == Mode::Transcode {
                            // Output `seq` leaves when input `seq + 1` arrives.
                            let seq = u16::from_be_bytes([plain[2], plain[3]]).wrapping_add(1);
                            times.0[usize::from(seq)].load(Ordering::Relaxed)
                        } else {
                            u64::from_be_bytes(plain[12..20].try_into().unwrap_or_default())
                        };
                        if sent_ns == 0 { continue; }
                        let arrived = stamp.unwrap_or_else(wall_ns);
                        if sent_ns >= counted_from {
                            count += 1;
                            transits.push(arrived.saturating_sub(sent_ns) / 1000);
                        }
                    }
                }
            }
            (transits, count)
        }));
    }
    // Pacing: one tick per millisecond; stream i sends in tick i mod 20.
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut slot = 0u64;
    let mut seq = 1u16;
    let mut pkt = Vec::with_capacity(PACKET);
    while Instant::now() < end {
        tick.tick().await;
        for (i, (sock, to, srtp, payload, times)) in streams.iter_mut().enumerate() {
            if i as u64 % PTIME_MS != slot % PTIME_MS {
                continue;
            }
            let now_ns = wall_ns();
            pkt.clear();
            pkt.extend_from_slice(&[
                0x80,
                if mode == Mode::Transcode && i % 2 == 0 {
                    111
                } else {
                    0
                },
            ]);
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
            pkt.extend_from_slice(&(i as u32).to_be_bytes());
            pkt.extend_from_slice(payload);
            if mode == Mode::Transcode {
                times.0[usize::from(seq)].store(now_ns, Ordering::Relaxed);
            } else {
                pkt[12..20].copy_from_slice(&now_ns.to_be_bytes());
            }
            let ok = match srtp.as_mut() {
                Some(s) => s
                    .protect_rtp(&pkt)
                    .is_ok_and(|w| sock.try_send_to(&w, *to).is_ok()),
                None => sock.try_send_to(&pkt, *to).is_ok(),
            };
            if ok && now_ns >= counted_from {
                sent += 1;
            }
        }
        slot += 1;
        if slot.is_multiple_of(PTIME_MS) {
            seq = seq.wrapping_add(1);
        }
    }
    let mut added: Vec<u64> = Vec::new();
    let mut received = 0u64;
    for r in receivers {
        if let Ok((transits, count)) = r.await {
            received += count;
            if let Some(min) = transits.iter().min().copied() {
                added.extend(transits.iter().map(|t| t - min));
            }
        }
    }
    added.sort_unstable();
    let p99_us = added
        .get(added.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(u64::MAX);
    Step {
        p99_us,
        max_us: added.last().copied().unwrap_or(0),
        sent,
        received,
    }
}

/// One 20 ms frame of a 440 Hz tone in `kind`.
fn encoded(kind: CodecKind) -> Vec<u8> {
    let Ok(mut c) = kind.build(20) else {
        return vec![0; 160];
    };
    let rate = f64::from(kind.sample_rate());
    let pcm: Vec<i16> = (0..c.frame_samples())
        .map(|i| ((i as f64 / rate * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16)
        .collect();
    let mut out = Vec::new();
    let _ = c.encode(&pcm, &mut out);
    out
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let bound_us = (value("--max-jitter-ms", 1.0) * 1000.0) as u64;
    let secs = value("--secs", 4.0) as u64;
    let mode = match args
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("srtp") => Mode::Srtp,
        Some("transcode") => Mode::Transcode,
        _ => Mode::Plain,
    };
    let passes = |calls: usize| -> std::io::Result<bool> {
        let s = step(calls, secs, mode)?;
        let lost = s.sent.saturating_sub(s.received);
        eprintln!(
            "{calls} calls ({} streams): added jitter p99 {:.3} ms, max {:.3} ms, {lost} of {} packets lost",
            calls * 2,
            s.p99_us as f64 / 1000.0,
            s.max_us as f64 / 1000.0,
            s.sent
        );
        // Loss is allowed only as rounding at the edges of the window (0.1 %); a
        // transcoded stream's output runs one packet behind, so its last packet
        // is still in the resampler when the window closes.
        let edge = if mode == Mode::Transcode {
            calls as u64 * 2
        } else {
            0
        };
        Ok(s.p99_us < bound_us && lost.saturating_sub(edge) * 1000 <= s.sent)
    };
    let (mut lo, mut hi) = (0usize, if mode == Mode::Transcode { 10 } else { 50 });
    while passes(hi)? {
        lo = hi;
        hi *= 2;
        if hi > 20_000 {
            break;
        }
    }
    let resolution = if mode == Mode::Transcode { 1 } else { 10 };
    while hi - lo > (lo / 10).max(resolution) {
        let mid = (lo + hi) / 2;
        if passes(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    println!(
        "{} {mode:?} streams ({lo} calls) relayed on one core with added jitter p99 < {:.1} ms",
        lo * 2,
        bound_us as f64 / 1000.0
    );
    Ok(())
}
