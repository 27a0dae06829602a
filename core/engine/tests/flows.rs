//! Call flows carried out by the engine, with real clients: SIPp places and answers
//! the calls (digest, hunt-group members registered as SIPp UASes), and the test
//! itself is the caller's RTP end (it records what the engine plays, decodes it, and
//! sends RFC 4733 DTMF and audio); the `vaxel` softphone and a baresip phone (driven
//! over ctrl_tcp, recording with sndfile) call the menu too. The engine's clock is moved with
//! `--clock-offset-secs` so the office is open or closed. A small SMTP server in the
//! test receives the voicemail e-mail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use vaxel_media::codec::g711::{alaw_to_linear, linear_to_alaw};
use vaxel_testkit::peers::skip_or_fail;

/// These tests run one at a time: each starts an engine, several SIPp phones and
/// a real-time RTP end, and on a loaded 2-core machine running them all at once
/// starves the RTP timing they check.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds to add to now to be on the next Wednesday at `hour`:00 UTC.
fn offset_to(hour: i8) -> i64 {
    let now = jiff::Timestamp::now();
    let mut d = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    loop {
        d = d.tomorrow().unwrap();
        if d.weekday() == jiff::civil::Weekday::Wednesday {
            break;
        }
    }
    let t = d
        .at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    t.as_second() - now.as_second()
}

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/prompts")
}

/// The office: users 4001…4004 (common), a main number 7000 with hours → welcome →
/// menu (1 sales, 2 support, 0 operator), closed → closed prompt → the shared box;
/// one number per hunt strategy (71xx straight to a group of 4002, 4003, 4004).
fn flow_office(smtp_port: u16) -> String {
    let mut groups = String::new();
    let mut flows = String::new();
    for (i, s) in [
        "fixed",
        "rotating",
        "simultaneous",
        "longest_idle",
        "random",
    ]
    .iter()
    .enumerate()
    {
        groups.push_str(&format!(
            r#"
[routing.groups.{s}]
id = {id}
name = "Group {s}"
strategy = "{s}"
members = [{{ user = "4002" }}, {{ user = "4003" }}, {{ user = "4004" }}]
ring_secs = 4
no_answer = {{ type = "prompt", prompt = "no_answer" }}
"#,
            id = 10 + i
        ));
        flows.push_str(&format!(
            r#"
[[routing.flows]]
name = "{s}"
numbers = ["710{i}"]
active = 1
[[routing.flows.versions]]
version = 1
start = "group"
[routing.flows.versions.steps.group]
type = "hunt_group"
group = "{s}"
"#
        ));
    }
    office(&format!(
        r#"
[routing]
time_zone = "UTC"
language = "en"
voicemail_number = "8000"
echo_number = "8001"

[[routing.schedules]]
name = "office"
time_zone = "UTC"
week = {{ mon = ["08:00-17:00"], tue = ["08:00-17:00"], wed = ["08:00-17:00"], thu = ["08:00-17:00"], fri = ["08:00-17:00"] }}

[[routing.schedule_sets]]
name = "main"
schedules = ["office"]
active = "office"

[routing.groups.sales]
id = 1
name = "Sales"
strategy = "fixed"
members = [{{ user = "4002" }}, {{ user = "4003" }}]
ring_secs = 3
no_answer = {{ type = "voicemail", mailbox = {{ shared = "office" }} }}

[routing.groups.support]
id = 2
name = "Support"
strategy = "simultaneous"
members = [{{ user = "4004" }}]
no_answer = {{ type = "voicemail", mailbox = {{ shared = "office" }} }}
{groups}
[[routing.mailboxes]]
name = "office"
members = ["4001"]
pin = "1234"
email = ["office@example.test"]
max_secs = 30

[[routing.mailboxes]]
name = "4001"
pin = "4321"
max_secs = 3

[routing.smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "vaxel@example.test"

[[routing.flows]]
name = "swedish"
numbers = ["7002"]
active = 1
[[routing.flows.versions]]
version = 1
start = "hello"
[routing.flows.versions.steps.hello]
type = "play_prompt"
prompt = "welcome"
language = "sv"
next = "vm"
[routing.flows.versions.steps.vm]
type = "voicemail"
mailbox = {{ shared = "office" }}

[[routing.flows]]
name = "menu-first"
numbers = ["7001"]
active = 1
[[routing.flows.versions]]
version = 1
start = "menu"
[routing.flows.versions.steps.menu]
type = "menu"
prompt = "menu"
choices = {{ "1" = "sales", "2" = "support" }}
timeout_secs = 6
repeats = 2
[routing.flows.versions.steps.sales]
type = "hunt_group"
group = "sales"
[routing.flows.versions.steps.support]
type = "hunt_group"
group = "support"

[[routing.flows]]
name = "main"
numbers = ["7000"]
active = 1
[[routing.flows.versions]]
version = 1
start = "hours"
[routing.flows.versions.steps.hours]
type = "check_hours"
schedule_set = "main"
open = "welcome"
closed = "closed"
[routing.flows.versions.steps.welcome]
type = "play_prompt"
prompt = "welcome"
next = "menu"
[routing.flows.versions.steps.menu]
type = "menu"
prompt = "menu"
choices = {{ "1" = "sales", "2" = "support", "0" = "operator" }}
timeout_secs = 6
repeats = 2
invalid_prompt = "invalid"
[routing.flows.versions.steps.sales]
type = "hunt_group"
group = "sales"
[routing.flows.versions.steps.support]
type = "hunt_group"
group = "support"
[routing.flows.versions.steps.operator]
type = "forward"
target = {{ internal = "4001" }}
[routing.flows.versions.steps.closed]
type = "play_prompt"
prompt = "closed"
next = "closed_vm"
[routing.flows.versions.steps.closed_vm]
type = "voicemail"
mailbox = {{ shared = "office" }}
greeting = "closed"
{flows}"#
    ))
}

fn start_engine(dir: &Path, smtp_port: u16, open: bool) -> EngineProc {
    let offset = offset_to(if open { 10 } else { 20 }).to_string();
    let prompts = prompts_dir();
    EngineProc::start_with(
        dir,
        Some(&flow_office(smtp_port)),
        free_port(),
        &[
            "--clock-offset-secs",
            &offset,
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    )
}

/// The caller's RTP end: records what arrives (A-law), sends DTMF and audio back to
/// where the engine's packets come from.
struct RtpEnd {
    sock: Arc<UdpSocket>,
    heard: Arc<Mutex<Vec<i16>>>,
    engine: Arc<Mutex<Option<SocketAddr>>>,
    seq: Mutex<(u16, u32)>,
}

impl RtpEnd {
    fn new() -> RtpEnd {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let engine = Arc::new(Mutex::new(None));
        let (s, h, e) = (sock.clone(), heard.clone(), engine.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                if n <= 12 || buf[1] & 0x7f != 8 {
                    continue;
                }
                e.lock().unwrap().get_or_insert(from);
                h.lock()
                    .unwrap()
                    .extend(buf[12..n].iter().map(|b| alaw_to_linear(*b)));
            }
        });
        RtpEnd {
            sock,
            heard,
            engine,
            seq: Mutex::new((1000, 50_000)),
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Sends to `to` from now on (for an end that speaks first).
    fn aim(&self, to: SocketAddr) {
        *self.engine.lock().unwrap() = Some(to);
    }

    fn heard(&self) -> Vec<i16> {
        self.heard.lock().unwrap().clone()
    }

    fn send(&self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let Some(to) = *self.engine.lock().unwrap() else {
            return;
        };
        let mut s = self.seq.lock().unwrap();
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&s.0.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        s.0 = s.0.wrapping_add(1);
        let _ = self.sock.send_to(&p, to);
    }

    /// One key as RFC 4733 events (payload type 101), 100 ms long.
    fn dtmf(&self, key: char) {
        let code = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => panic!("key {key}"),
        };
        let ts = {
            let mut s = self.seq.lock().unwrap();
            s.1 = s.1.wrapping_add(8000);
            s.1
        };
        for i in 1..=5u16 {
            let d = (i * 160).to_be_bytes();
            self.send(101, i == 1, ts, &[code, 10, d[0], d[1]]);
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..3 {
            let d = 800u16.to_be_bytes();
            self.send(101, false, ts, &[code, 0x80 | 10, d[0], d[1]]);
        }
        std::thread::sleep(Duration::from_millis(150));
    }

    /// One key as tones in the audio (ITU-T Q.23 pairs), 120 ms, then 120 ms silence.
    fn inband(&self, key: char) {
        let (row, col) = match key {
            '1' => (697.0, 1209.0),
            '2' => (697.0, 1336.0),
            '5' => (770.0, 1336.0),
            '0' => (941.0, 1336.0),
            _ => panic!("key {key}"),
        };
        for p in 0..12u32 {
            let ts = {
                let mut s = self.seq.lock().unwrap();
                s.1 = s.1.wrapping_add(160);
                s.1
            };
            let payload: Vec<u8> = (0..160)
                .map(|i| {
                    if p >= 6 {
                        return linear_to_alaw(0);
                    }
                    let t = f64::from(p * 160 + i) / 8000.0;
                    let v = ((t * row * std::f64::consts::TAU).sin()
                        + (t * col * std::f64::consts::TAU).sin())
                        * 6000.0;
                    linear_to_alaw(v as i16)
                })
                .collect();
            self.send(8, false, ts, &payload);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&self, keys: &str) {
        for k in keys.chars() {
            self.dtmf(k);
        }
    }

    /// Speaks a sine of `freq` Hz for `secs` (A-law, 20 ms packets).
    fn tone(&self, freq: f64, secs: f64) {
        let packets = (secs * 50.0) as u32;
        for p in 0..packets {
            let ts = {
                let mut s = self.seq.lock().unwrap();
                s.1 = s.1.wrapping_add(160);
                s.1
            };
            let payload: Vec<u8> = (0..160)
                .map(|i| {
                    let n = f64::from(p * 160 + i);
                    let v = (n / 8000.0 * freq * std::f64::consts::TAU).sin() * 8000.0;
                    linear_to_alaw(v as i16)
                })
                .collect();
            self.send(8, false, ts, &payload);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_audio(&self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.engine.lock().unwrap().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// Waits for the engine's RTP on `rtp` while call `c` runs; when none comes, the
/// failure shows what SIPp saw.
fn await_audio(
    rtp: &RtpEnd,
    c: std::thread::JoinHandle<SippRun>,
    secs: u64,
) -> std::thread::JoinHandle<SippRun> {
    if !rtp.wait_for_audio(secs) {
        let run = c.join().unwrap();
        panic!("no RTP from the engine; the caller's SIPp: {}", run.output);
    }
    c
}

/// Samples of a prompt file (8 kHz mono 16-bit).
fn prompt_samples(lang: &str, name: &str) -> Vec<i16> {
    let b = std::fs::read(prompts_dir().join(lang).join(format!("{name}.wav"))).unwrap();
    wav_samples(&b)
}

fn wav_samples(b: &[u8]) -> Vec<i16> {
    let mut i = 12;
    while i + 8 <= b.len() {
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if &b[i..i + 4] == b"data" {
            let end = (i + 8 + len).min(b.len());
            return b[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + len;
    }
    Vec::new()
}

/// RMS per 20 ms.
fn envelope(s: &[i16]) -> Vec<f64> {
    s.chunks(160)
        .map(|c| (c.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// How well the start of `heard` (from its first sound) matches `prompt`: the
/// correlation of their loudness envelopes over the prompt's length.
fn match_score(heard: &[i16], prompt: &[i16]) -> f64 {
    let h = envelope(heard);
    let p = envelope(prompt);
    let Some(start) = h.iter().position(|v| *v > 200.0) else {
        return 0.0;
    };
    let p_start = p.iter().position(|v| *v > 200.0).unwrap_or(0);
    let mut best: f64 = 0.0;
    // Allow a few frames of misalignment either way.
    for shift in 0..6usize {
        let hs = start.saturating_sub(3) + shift;
        let n = (p.len() - p_start).min(h.len().saturating_sub(hs));
        if n < 25 {
            continue;
        }
        let (a, b) = (&h[hs..hs + n], &p[p_start..p_start + n]);
        let (ma, mb) = (
            a.iter().sum::<f64>() / n as f64,
            b.iter().sum::<f64>() / n as f64,
        );
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        best = best.max(cov / (va.sqrt() * vb.sqrt()).max(1e-9));
    }
    best
}

/// Goertzel power of `freq` relative to the signal's power, over `s`.
fn tone_ratio(s: &[i16], freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in s {
        let s0 = f64::from(*x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    let e: f64 = s.iter().map(|x| f64::from(*x).powi(2)).sum();
    p / (e * s.len() as f64 / 2.0).max(1.0)
}

/// Whether some 100 ms stretch of `s` is mostly a `freq` tone.
fn has_tone(s: &[i16], freq: f64) -> bool {
    s.chunks(800)
        .any(|c| c.len() == 800 && envelope(c)[0] > 300.0 && tone_ratio(c, freq) > 0.6)
}

/// How a caller's SIPp run ends.
#[derive(Clone, Copy)]
enum End {
    /// Send BYE after this many ms.
    HangUp(u32),
    /// Wait for the engine's BYE.
    Wait,
    /// After `.0` ms send the key `.1` by SIP INFO (`application/dtmf-relay`), then
    /// hang up after `.2` ms more.
    Info(u32, char, u32),
}

fn caller_scenario(
    engine: SocketAddr,
    user: &str,
    pw: &str,
    to: &str,
    rtp: u16,
    end: End,
) -> String {
    let sdp = format!(
        "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio {rtp} RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n\
         a=fmtp:101 0-16\n"
    );
    let to_uri = format!("sip:{}@{engine}", to.replace('#', "%23"));
    let finish = match end {
        End::HangUp(ms) => format!(
            r#"  <pause milliseconds="{ms}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"#,
            to_user = to.replace('#', "%23")
        ),
        End::Info(before, key, after) => format!(
            r#"  <pause milliseconds="{before}"/>
  <send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={key}
Duration=160
]]></send>
  <recv response="200"/>
  <pause milliseconds="{after}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 4 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"#,
            to_user = to.replace('#', "%23")
        ),
        End::Wait => r#"  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"#
        .to_owned(),
    };
    let to_user = to.replace('#', "%23");
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="flow caller">
  <send retrans="500"><![CDATA[
INVITE {to_uri} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK {to_uri} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE {to_uri} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={pw} auth_uri={to_uri}]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to_user}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{finish}</scenario>
"#
    )
}

/// Places a call in the background; joined with `.join()` for SIPp's verdict.
#[allow(clippy::too_many_arguments)]
fn call(
    dir: &Path,
    engine: &EngineProc,
    name: &str,
    user: &str,
    pw: &str,
    to: &str,
    rtp: u16,
    end: End,
) -> std::thread::JoinHandle<SippRun> {
    let scenario = caller_scenario(engine.sip, user, pw, to, rtp, end);
    let (dir, target, name) = (dir.to_owned(), engine.sip.to_string(), name.to_owned());
    std::thread::spawn(move || {
        sipp(
            &dir,
            &name,
            &scenario,
            &target,
            &[
                "-m",
                "1",
                "-p",
                &free_port().to_string(),
                "-mp",
                &media_port().to_string(),
            ],
        )
    })
}

/// A member phone that answers every call (after checking its From with `from_re`
/// and, when given, that a header matches `header_re`) and waits for BYE.
fn answerer_scenario(from_re: &str, header: Option<(&str, &str)>) -> String {
    let xml = |s: &str| {
        s.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let from_re = xml(from_re);
    let header = header.map(|(h, re)| (h, xml(re)));
    let refs = if header.is_some() { "x,y" } else { "x" };
    let extra = header
        .as_ref()
        .map(|(h, re)| {
            format!(
                r#"<ereg regexp="{re}" search_in="hdr" header="{h}" check_it="true" assign_to="y"/>"#
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answerer">
  <recv request="INVITE">
    <action><ereg regexp="{from_re}" search_in="hdr" header="From:" check_it="true" assign_to="x"/>{extra}</action>
  </recv>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]a[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]a[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <Reference variables="{refs}"/>
</scenario>
"#
    )
}

fn password(ext: &str) -> &'static str {
    match ext {
        "4001" => "alice-pw",
        "4002" => "bob-pw",
        "4003" => "carla-pw",
        _ => "dan-pw",
    }
}

/// Registers `ext` and starts its SIPp phone with `scenario`.
fn member(dir: &Path, engine: &EngineProc, ext: &str, scenario: &str) -> SippBg {
    let port = free_port();
    register_at(dir, engine, ext, password(ext), port);
    sipp_bg(
        dir,
        &format!("member-{ext}"),
        scenario,
        &["-p", &port.to_string(), "-mp", &media_port().to_string()],
    )
}

fn db(engine: &EngineProc) -> vaxel_engine::db::Db {
    vaxel_engine::db::Db::open(&engine.data).unwrap()
}

/// A call's legs as `role:party:outcome` (a moved call's new party is its
/// `transfer` leg ending `answered`; `answered_by` stays the first to answer, as for
/// REFER).
fn legs_of(engine: &EngineProc, call: i64) -> Vec<String> {
    let c = rusqlite::Connection::open(engine.data.join("engine.sqlite")).unwrap();
    let mut st = c
        .prepare("SELECT role, party, outcome FROM legs WHERE call = ?1 ORDER BY id")
        .unwrap();
    st.query_map([call], |r| {
        Ok(format!(
            "{}:{}:{}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn last_call(engine: &EngineProc) -> vaxel_engine::db::CallRecord {
    db(engine).calls(1).unwrap().remove(0)
}

/// A base port for SIPp's media (`-mp`): SIPp binds it and the next three (audio
/// RTP/RTCP, video RTP/RTCP), so all four must be free — a single free port made
/// "Unable to bind video RTP socket" a frequent flake on a busy machine.
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p > 65530 || p % 2 == 1 {
            continue;
        }
        if (1..4).all(|i| UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

fn need_sipp(what: &str) -> bool {
    have("sipp") || !skip_or_fail(what, "sipp (sip-tester)")
}

#[test]
fn open_plays_the_welcome_prompt_closed_plays_the_closed_prompt() {
    let _serial = one_at_a_time();
    if !need_sipp("flow prompts") {
        return;
    }
    let welcome = prompt_samples("en", "welcome");
    let closed = prompt_samples("en", "closed");
    for open in [true, false] {
        let dir = temp_dir(if open { "flow-open" } else { "flow-closed" });
        let engine = start_engine(&dir, free_port(), open);
        let rtp = RtpEnd::new();
        let c = call(
            &dir,
            &engine,
            "caller",
            "4001",
            "alice-pw",
            "7000",
            rtp.port(),
            End::HangUp(3500),
        );
        let run = c.join().unwrap();
        assert!(run.ok, "caller: {}", run.output);
        let heard = rtp.heard();
        let (w, cl) = (match_score(&heard, &welcome), match_score(&heard, &closed));
        if open {
            assert!(
                w > 0.8 && w > cl + 0.2,
                "open: welcome {w:.2}, closed {cl:.2}"
            );
        } else {
            assert!(
                cl > 0.8 && cl > w + 0.2,
                "closed: welcome {w:.2}, closed {cl:.2}"
            );
        }
        assert_eq!(last_call(&engine).callee, "7000");
    }
}

#[test]
fn an_ivr_choice_reaches_the_hunt_group_which_rings_on_after_the_ring_time() {
    let _serial = one_at_a_time();
    if !need_sipp("flow IVR") {
        return;
    }
    let dir = temp_dir("flow-ivr");
    let engine = start_engine(&dir, free_port(), true);
    // Sales: 4002 rings without answering, then 4003 answers; both see the caller
    // as "4001#1" with the group's name.
    let _bob = member(&dir, &engine, "4002", &ringer_scenario("4001%231"));
    let _carla = member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario(r#""Sales" <sip:4001%231@"#, None),
    );
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "caller",
            "4001",
            "alice-pw",
            "7000",
            rtp.port(),
            End::HangUp(12_000),
        ),
        10,
    );
    // The welcome prompt (about 2 s), then the menu: press 1 while it plays.
    std::thread::sleep(Duration::from_millis(3000));
    rtp.dtmf('1');
    let before = rtp.heard().len();
    std::thread::sleep(Duration::from_millis(2500));
    // While the group rings the caller hears music on hold (its notes are sines).
    let music = rtp.heard()[before..].to_vec();
    assert!(
        [261.6, 329.6, 392.0, 523.3]
            .iter()
            .any(|f| has_tone(&music, *f)),
        "music on hold while the group rings"
    );
    let run = c.join().unwrap();
    assert!(run.ok, "caller: {}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    let call = last_call(&engine);
    assert_eq!(call.answered_by.as_deref(), Some("4003"), "{call:?}");
    let choices = db(&engine).ivr_choices(call.id).unwrap();
    assert_eq!(choices.len(), 1, "{choices:?}");
    assert_eq!(
        (
            choices[0].menu.as_str(),
            choices[0].digit.as_str(),
            choices[0].valid
        ),
        ("menu", "1", true)
    );
    let outcomes = db(&engine).leg_outcomes(call.id).unwrap();
    assert!(
        outcomes.len() >= 3,
        "caller, 4002 (given up), 4003: {outcomes:?}"
    );
}

/// Three members (all answering) behind one number per strategy; three calls each.
#[test]
fn a_three_member_hunt_group_with_each_strategy() {
    let _serial = one_at_a_time();
    if !need_sipp("hunt strategies") {
        return;
    }
    let dir = temp_dir("flow-hunt");
    let engine = start_engine(&dir, free_port(), true);
    let _m: Vec<SippBg> = ["4002", "4003", "4004"]
        .iter()
        .map(|e| {
            member(
                &dir,
                &engine,
                e,
                &answerer_scenario("sip:4001%231[0-9]@", None),
            )
        })
        .collect();
    let answered = |number: &str| -> Vec<(String, i64)> {
        (0..3)
            .map(|i| {
                let rtp = RtpEnd::new();
                let run = call(
                    &dir,
                    &engine,
                    &format!("c{number}-{i}"),
                    "4001",
                    "alice-pw",
                    number,
                    rtp.port(),
                    End::HangUp(600),
                )
                .join()
                .unwrap();
                assert!(run.ok, "{number} call {i}: {}", run.output);
                std::thread::sleep(Duration::from_millis(400));
                let c = last_call(&engine);
                let b_legs = db(&engine).leg_count(c.id).unwrap() - 1;
                (c.answered_by.unwrap_or_default(), b_legs)
            })
            .collect()
    };
    let who = |v: &[(String, i64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    let fixed = answered("7100");
    assert_eq!(who(&fixed), ["4002", "4002", "4002"], "fixed");
    let rotating = answered("7101");
    assert_eq!(
        who(&rotating),
        ["4002", "4003", "4004"],
        "rotating starts after the last answerer"
    );
    let simultaneous = answered("7102");
    assert!(
        simultaneous
            .iter()
            .all(|(w, legs)| *legs == 3 && !w.is_empty()),
        "simultaneous rings all three: {simultaneous:?}"
    );
    let idle = answered("7103");
    // 4002 answered last (simultaneous or rotating), so the other two were idle longer.
    assert_ne!(idle[0].0, simultaneous[2].0, "longest idle: {idle:?}");
    let mut seen = who(&idle);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "longest idle goes round all three: {idle:?}");
    let random = answered("7104");
    assert!(
        random
            .iter()
            .all(|(w, _)| ["4002", "4003", "4004"].contains(&w.as_str())),
        "{random:?}"
    );
}

/// A tiny SMTP server (RFC 5321): takes every message and hands it over.
fn smtp_sink() -> (u16, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve_smtp(s, tx));
        }
    });
    (port, rx)
}

fn serve_smtp(s: TcpStream, tx: std::sync::mpsc::Sender<String>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 sink.test ESMTP\r\n");
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            let _ = w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n");
        } else if cmd.starts_with("HELO")
            || cmd.starts_with("MAIL")
            || cmd.starts_with("RCPT")
            || cmd.starts_with("RSET")
            || cmd.starts_with("NOOP")
        {
            let _ = w.write_all(b"250 OK\r\n");
        } else if cmd == "DATA" {
            let _ = w.write_all(b"354 go on\r\n");
            let mut msg = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                msg.push_str(&line);
            }
            let _ = tx.send(msg);
            let _ = w.write_all(b"250 queued\r\n");
        } else if cmd == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            let _ = w.write_all(b"502 no\r\n");
        }
    }
}

fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(api).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let code = head[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = plain;
    }
    (code, body)
}

fn login(api: SocketAddr, user: &str) -> String {
    let (code, body) = http(
        api,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"username":"{user}","password":"{}"}}"#, password(user)),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[test]
fn voicemail_left_when_closed_is_mailed_fetched_through_the_api_and_by_phone() {
    let _serial = one_at_a_time();
    if !need_sipp("voicemail") {
        return;
    }
    let (smtp_port, mails) = smtp_sink();
    let dir = temp_dir("flow-vm");
    let engine = start_engine(&dir, smtp_port, false);
    // Closed: the closed prompt, the closed greeting, "after the tone", the tone.
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "depositor",
            "4002",
            "bob-pw",
            "7000",
            rtp.port(),
            End::Wait,
        ),
        10,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_tone(&rtp.heard(), 1000.0) {
        assert!(Instant::now() < deadline, "never heard the tone");
        std::thread::sleep(Duration::from_millis(100));
    }
    rtp.tone(440.0, 3.0);
    rtp.dtmf('#');
    let run = c.join().unwrap();
    assert!(
        run.ok,
        "depositor (the engine hangs up after 'saved'): {}",
        run.output
    );

    // The e-mail with the WAV attached.
    let mail = mails
        .recv_timeout(Duration::from_secs(20))
        .expect("an e-mail");
    assert!(mail.contains("office@example.test"), "{mail}");
    assert!(
        mail.to_ascii_lowercase()
            .contains("content-type: audio/wav"),
        "{mail}"
    );

    // The API: a member lists and downloads; someone else may not.
    let alice = login(engine.api, "4001");
    let (code, body) = http(engine.api, "GET", "/api/voicemail/office", Some(&alice), "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{v}");
    assert_eq!(msgs[0]["caller"], "4002");
    let secs = msgs[0]["secs"].as_f64().unwrap();
    assert!((2.0..6.0).contains(&secs), "{secs}");
    let id = msgs[0]["id"].as_i64().unwrap();
    let (code, wav) = http(
        engine.api,
        "GET",
        &format!("/api/voicemail/office/{id}/audio"),
        Some(&alice),
        "",
    );
    assert_eq!(code, 200);
    assert!(
        has_tone(&wav_samples(&wav), 440.0),
        "the message holds what was said"
    );
    assert_eq!(msgs[0]["heard"], false);
    let (code, _) = http(
        engine.api,
        "POST",
        &format!("/api/voicemail/office/{id}/heard"),
        Some(&alice),
        "",
    );
    assert_eq!(code, 204);
    let (_, body) = http(engine.api, "GET", "/api/voicemail/office", Some(&alice), "");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["messages"][0]["heard"], true, "{v}");
    let bob = login(engine.api, "4002");
    let (code, _) = http(engine.api, "GET", "/api/voicemail/office", Some(&bob), "");
    assert_eq!(code, 403, "not a member of the shared box");
    let (code, _) = http(
        engine.api,
        "DELETE",
        &format!("/api/voicemail/office/{id}"),
        Some(&bob),
        "",
    );
    assert_eq!(code, 403, "nor may he delete");
    let (code, _) = http(
        engine.api,
        "GET",
        &format!("/api/voicemail/office/{id}/audio"),
        Some(&bob),
        "",
    );
    assert_eq!(code, 403);

    // By phone: the voicemail number, the box's PIN, the message plays, 3 deletes it.
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "listener",
            "4001",
            "alice-pw",
            "8000",
            rtp.port(),
            End::Wait,
        ),
        10,
    );
    std::thread::sleep(Duration::from_millis(3500));
    rtp.keys("1234#");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_tone(&rtp.heard(), 440.0) {
        assert!(Instant::now() < deadline, "never heard the message");
        std::thread::sleep(Duration::from_millis(100));
    }
    rtp.dtmf('3');
    let run = c.join().unwrap();
    assert!(run.ok, "listener: {}", run.output);
    let (code, body) = http(engine.api, "GET", "/api/voicemail/office", Some(&alice), "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["messages"].as_array().unwrap().len(),
        0,
        "deleted by phone: {v}"
    );
}

#[test]
fn feature_codes_switch_forwarding_on_and_off_and_a_call_is_forwarded() {
    let _serial = one_at_a_time();
    if !need_sipp("feature codes") {
        return;
    }
    let dir = temp_dir("flow-fc");
    let engine = start_engine(&dir, free_port(), true);
    let activated = prompt_samples("en", "activated");
    let deactivated = prompt_samples("en", "deactivated");
    // Alice forwards everything to Carla.
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "fc-on",
        "4001",
        "alice-pw",
        "*21*4003#",
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(run.ok, "*21*: {}", run.output);
    let (a, d) = (
        match_score(&rtp.heard(), &activated),
        match_score(&rtp.heard(), &deactivated),
    );
    assert!(a > 0.8 && a > d, "heard 'activated' ({a:.2} vs {d:.2})");
    // Dan calls Alice: Carla's phone rings, told why (Diversion, RFC 5806).
    let carla = member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario(
            "sip:4004@",
            Some(("Diversion:", "sip:4001@.*reason=unconditional")),
        ),
    );
    let alice = member(&dir, &engine, "4001", &answerer_scenario("sip:4004@", None));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "to-alice-1",
        "4004",
        "dan-pw",
        "4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "forwarded call: {}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_call(&engine).answered_by.as_deref(), Some("4003"));
    // Off again: the next call rings Alice herself.
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "fc-off",
        "4001",
        "alice-pw",
        "#21#",
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(run.ok, "#21#: {}", run.output);
    let (a, d) = (
        match_score(&rtp.heard(), &activated),
        match_score(&rtp.heard(), &deactivated),
    );
    assert!(d > 0.8 && d > a, "heard 'deactivated' ({d:.2} vs {a:.2})");
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "to-alice-2",
        "4004",
        "dan-pw",
        "4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "direct call: {}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_call(&engine).answered_by.as_deref(), Some("4001"));
    // Nothing to cancel: "service not active".
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "fc-none",
        "4001",
        "alice-pw",
        "#61#",
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(run.ok, "#61#: {}", run.output);
    let n = match_score(&rtp.heard(), &prompt_samples("en", "not_active"));
    assert!(n > 0.8, "heard 'not active' ({n:.2})");
    drop((carla, alice));
}

/// A 16-bit mono 8 kHz WAV of a sine.
fn tone_wav(freq: f64, secs: f64) -> Vec<u8> {
    let n = (8000.0 * secs) as u32;
    let mut data = Vec::new();
    for i in 0..n {
        let s = (f64::from(i) / 8000.0 * freq * std::f64::consts::TAU).sin() * 8000.0;
        data.extend_from_slice(&(s as i16).to_le_bytes());
    }
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(&8000u32.to_le_bytes());
    f.extend_from_slice(&16000u32.to_le_bytes());
    for v in [2u16, 16] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f.extend_from_slice(&data);
    f
}

fn http_bytes(api: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out[9..12]).parse().unwrap()
}

/// Flow versions through the API (validated, then activated), a replaced prompt, a
/// user's own greeting and `*59*n` straight to voicemail.
#[test]
fn flow_versions_prompts_and_greetings_through_the_api() {
    let _serial = one_at_a_time();
    if !need_sipp("flows API") {
        return;
    }
    let dir = temp_dir("flow-api");
    let engine = start_engine(&dir, free_port(), true);
    let admin = login(engine.api, "4001");
    let bob = login(engine.api, "4002");
    let (code, body) = http(engine.api, "GET", "/openapi.json", None, "");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["paths"]["/api/flows/{name}/versions/{version}"]["put"].is_object());
    assert!(doc["paths"]["/api/voicemail/{mailbox}"]["get"].is_object());
    let flow = r#"{"numbers":["7500"],"start":"hello","steps":{"hello":{"type":"play_prompt","prompt":"goodbye","next":"bye"},"bye":{"type":"hangup"}}}"#;
    let (code, _) = http(
        engine.api,
        "PUT",
        "/api/flows/api/versions/1",
        Some(&bob),
        flow,
    );
    assert_eq!(code, 403, "only administrators change flows");
    let bad = flow.replace(r#""next":"bye""#, r#""next":"nowhere""#);
    let (code, body) = http(
        engine.api,
        "PUT",
        "/api/flows/api/versions/1",
        Some(&admin),
        &bad,
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("hello") && body.contains("nowhere"),
        "names the step: {body}"
    );
    let (code, body) = http(
        engine.api,
        "PUT",
        "/api/flows/api/versions/1",
        Some(&admin),
        flow,
    );
    assert_eq!(code, 204, "{}", String::from_utf8_lossy(&body));
    let (code, _) = http(
        engine.api,
        "POST",
        "/api/flows/api/active",
        Some(&admin),
        r#"{"version":2}"#,
    );
    assert_eq!(code, 422, "no such version");
    let (code, _) = http(
        engine.api,
        "POST",
        "/api/flows/api/active",
        Some(&admin),
        r#"{"version":1}"#,
    );
    assert_eq!(code, 204);
    let (code, body) = http(engine.api, "GET", "/api/routing", Some(&admin), "");
    assert_eq!(code, 200);
    let routing: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        routing["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "api" && f["active"] == 1)
    );
    // The administrator replaces "goodbye" (English) with a 600 Hz tone.
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/prompts/en/goodbye",
            &bob,
            &tone_wav(600.0, 1.5)
        ),
        403
    );
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/prompts/en/goodbye",
            &admin,
            b"not a wav"
        ),
        422
    );
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/prompts/en/goodbye",
            &admin,
            &tone_wav(600.0, 1.5)
        ),
        204
    );
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "api-flow",
        "4002",
        "bob-pw",
        "7500",
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(
        run.ok,
        "the new flow answers, plays and hangs up: {}",
        run.output
    );
    assert!(has_tone(&rtp.heard(), 600.0), "the uploaded prompt played");
    // Alice's own greeting (a 700 Hz tone); Bob reaches her box with *59*4001.
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/voicemail/4001/greeting/standard",
            &bob,
            &tone_wav(700.0, 1.0)
        ),
        403
    );
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/voicemail/4001/greeting/standard",
            &admin,
            &tone_wav(700.0, 1.0)
        ),
        204
    );
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "vm-direct",
            "4002",
            "bob-pw",
            "*59*4001",
            rtp.port(),
            End::Wait,
        ),
        10,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_tone(&rtp.heard(), 1000.0) {
        assert!(Instant::now() < deadline, "never heard the tone");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(has_tone(&rtp.heard(), 700.0), "Alice's own greeting played");
    // Alice's box takes at most 3 s: speaking on for 5 s is cut there.
    rtp.tone(440.0, 5.0);
    assert!(c.join().unwrap().ok);
    let (code, body) = http(engine.api, "GET", "/api/voicemail/4001", Some(&admin), "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    let secs = v["messages"][0]["secs"].as_f64().unwrap();
    assert!(
        (2.5..=3.2).contains(&secs),
        "cut at the box's maximum: {secs}"
    );
    let (code, _) = http(engine.api, "GET", "/api/voicemail/4001", Some(&bob), "");
    assert_eq!(code, 403, "only the owner");
}

/// Menu keys arrive by SIP INFO and as in-band tones too (besides RFC 4733).
#[test]
fn menu_keys_by_sip_info_and_by_in_band_tones() {
    let _serial = one_at_a_time();
    if !need_sipp("flow DTMF") {
        return;
    }
    let dir = temp_dir("flow-dtmf");
    let engine = start_engine(&dir, free_port(), true);
    let _dan = member(
        &dir,
        &engine,
        "4004",
        &answerer_scenario(r#""Support" <sip:4001%232@"#, None),
    );
    let _alice = member(&dir, &engine, "4001", &answerer_scenario("sip:4002@", None));
    // SIP INFO "2" during the menu: the support group.
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "info",
        "4001",
        "alice-pw",
        "7000",
        rtp.port(),
        End::Info(3500, '2', 3000),
    )
    .join()
    .unwrap();
    assert!(run.ok, "caller with INFO: {}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4004"), "{c:?}");
    assert_eq!(db(&engine).ivr_choices(c.id).unwrap()[0].digit, "2");
    // In-band "0": the operator (forwarded to 4001).
    let rtp = RtpEnd::new();
    let h = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "inband",
            "4002",
            "bob-pw",
            "7000",
            rtp.port(),
            End::HangUp(8000),
        ),
        10,
    );
    std::thread::sleep(Duration::from_millis(3500));
    rtp.inband('0');
    let run = h.join().unwrap();
    assert!(run.ok, "caller with tones: {}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4001"), "{c:?}");
    assert_eq!(db(&engine).ivr_choices(c.id).unwrap()[0].digit, "0");
}

/// A phone that is busy: 486 to every INVITE.
fn busy_scenario() -> String {
    r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#
    .to_owned()
}

fn feature(dir: &Path, engine: &EngineProc, user: &str, code: &str) -> Vec<i16> {
    let rtp = RtpEnd::new();
    let run = call(
        dir,
        engine,
        &format!("fc-{user}"),
        user,
        password(user),
        code,
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(run.ok, "{code}: {}", run.output);
    rtp.heard()
}

fn heard_prompt(heard: &[i16], name: &str) -> bool {
    let s = match_score(heard, &prompt_samples("en", name));
    s > 0.8
}

/// Busy forwarding, the presence profile, hidden number and bypass.
#[test]
fn busy_forwarding_presence_hidden_number_and_bypass() {
    let _serial = one_at_a_time();
    if !need_sipp("feature codes 2") {
        return;
    }
    // *67*: Alice's phone is busy, the call goes to Carla marked user-busy.
    let dir = temp_dir("flow-busy");
    let engine = start_engine(&dir, free_port(), true);
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "*67*4003#"),
        "activated"
    ));
    let _a = member(&dir, &engine, "4001", &busy_scenario());
    let _c = member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario(
            "sip:4004@",
            Some(("Diversion:", "sip:4001@.*reason=user-busy")),
        ),
    );
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "busy",
        "4004",
        "dan-pw",
        "4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_call(&engine).answered_by.as_deref(), Some("4003"));
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "#67#"),
        "deactivated"
    ));
    drop(engine);

    // *24*: Bob is out of group calls until #24#.
    let dir = temp_dir("flow-presence");
    let engine = start_engine(&dir, free_port(), true);
    let _m: Vec<SippBg> = ["4002", "4003"]
        .iter()
        .map(|e| member(&dir, &engine, e, &answerer_scenario("sip:4001%2310@", None)))
        .collect();
    let group_call = |name: &str| {
        let rtp = RtpEnd::new();
        let run = call(
            &dir,
            &engine,
            name,
            "4001",
            "alice-pw",
            "7100",
            rtp.port(),
            End::HangUp(600),
        )
        .join()
        .unwrap();
        assert!(run.ok, "{}", run.output);
        std::thread::sleep(Duration::from_millis(300));
        last_call(&engine).answered_by.unwrap_or_default()
    };
    assert!(heard_prompt(
        &feature(&dir, &engine, "4002", "*24*1*2#"),
        "activated"
    ));
    assert_eq!(group_call("g1"), "4003", "Bob's profile keeps him out");
    assert!(heard_prompt(
        &feature(&dir, &engine, "4002", "#24#"),
        "deactivated"
    ));
    assert_eq!(
        group_call("g2"),
        "4002",
        "back in the fixed group's first place"
    );
    drop(engine);

    // *31*n: hidden number; *60*n: past Alice's forwarding.
    let dir = temp_dir("flow-hidden");
    let engine = start_engine(&dir, free_port(), true);
    let _c = member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario("sip:anonymous@anonymous.invalid", Some(("Privacy:", "id"))),
    );
    let _a = member(&dir, &engine, "4001", &answerer_scenario("sip:4004@", None));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "hidden",
        "4004",
        "dan-pw",
        "*31*4003",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4003"), "{c:?}");
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "*21*4003#"),
        "activated"
    ));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "bypass",
        "4004",
        "dan-pw",
        "*60*4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        last_call(&engine).answered_by.as_deref(),
        Some("4001"),
        "bypassed the forwarding"
    );
}

/// `*80*n`: a colleague takes a group call ringing at n, and the two hear each other.
#[test]
fn directed_and_group_pickup_of_a_ringing_group_call() {
    let _serial = one_at_a_time();
    if !need_sipp("pickup") {
        return;
    }
    let dir = temp_dir("flow-pickup");
    let engine = start_engine(&dir, free_port(), true);
    let _bob = member(&dir, &engine, "4002", &ringer_scenario("4001%231"));
    let alice = RtpEnd::new();
    let a = await_audio(
        &alice,
        call(
            &dir,
            &engine,
            "alice",
            "4001",
            "alice-pw",
            "7000",
            alice.port(),
            End::Wait,
        ),
        10,
    );
    std::thread::sleep(Duration::from_millis(3000));
    alice.dtmf('1');
    std::thread::sleep(Duration::from_millis(500));
    // Bob's phone rings; Dan picks the call up.
    let dan = RtpEnd::new();
    let d = call(
        &dir,
        &engine,
        "dan",
        "4004",
        "dan-pw",
        "*80*4002",
        dan.port(),
        End::HangUp(3000),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(alice.wait_for_audio(5), "no RTP from the engine");
    alice.tone(500.0, 1.5);
    let run = d.join().unwrap();
    assert!(run.ok, "picker: {}", run.output);
    let run = a.join().unwrap();
    assert!(
        run.ok,
        "caller (hung up by the engine when Dan left): {}",
        run.output
    );
    std::thread::sleep(Duration::from_millis(300));
    let calls = db(&engine).calls(5).unwrap();
    let picked = calls.iter().find(|c| c.callee == "7000").unwrap();
    assert_eq!(picked.answered_by.as_deref(), Some("4004"), "{calls:?}");
    assert!(has_tone(&dan.heard(), 500.0), "Dan hears Alice");

    // Group pickup: Carla, a member of sales (id 1), takes the next sales call with
    // *80*1; Dan, not a member, may not. (Carla's desk phone rings too when the
    // hunt reaches her, so the call rings long enough for both tries.)
    let _carla_desk = member(&dir, &engine, "4003", &ringer_scenario("4001%231"));
    let alice = RtpEnd::new();
    let a = await_audio(
        &alice,
        call(
            &dir,
            &engine,
            "alice2",
            "4001",
            "alice-pw",
            "7000",
            alice.port(),
            End::Wait,
        ),
        10,
    );
    std::thread::sleep(Duration::from_millis(3000));
    alice.dtmf('1');
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        heard_prompt(&feature(&dir, &engine, "4004", "*80*1"), "not_active"),
        "Dan is not in sales"
    );
    let carla = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "carla",
        "4003",
        "carla-pw",
        "*80*1",
        carla.port(),
        End::HangUp(1000),
    )
    .join()
    .unwrap();
    assert!(run.ok, "group pickup: {}", run.output);
    assert!(a.join().unwrap().ok);
    std::thread::sleep(Duration::from_millis(300));
    let calls = db(&engine).calls(10).unwrap();
    let picked = calls.iter().find(|c| c.callee == "7000").unwrap();
    assert_eq!(
        picked.answered_by.as_deref(),
        Some("4003"),
        "newest call to 7000: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.caller == "4003" && c.outcome == "picked up")
    );
}

/// The echo-test number plays back what one says; a group nobody can answer plays
/// its no-answer prompt and hangs up.
#[test]
fn echo_test_and_a_group_without_anyone_to_answer() {
    let _serial = one_at_a_time();
    if !need_sipp("echo") {
        return;
    }
    let dir = temp_dir("flow-echo");
    let engine = start_engine(&dir, free_port(), true);
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "echo",
            "4001",
            "alice-pw",
            "8001",
            rtp.port(),
            End::HangUp(9000),
        ),
        10,
    );
    std::thread::sleep(Duration::from_millis(5000));
    let before = rtp.heard().len();
    rtp.tone(700.0, 1.5);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(has_tone(&rtp.heard()[before..], 700.0), "heard myself");
    assert!(c.join().unwrap().ok);
    // Nobody registered in the fixed group: its no-answer prompt, then the engine hangs up.
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "nobody",
        "4001",
        "alice-pw",
        "7100",
        rtp.port(),
        End::Wait,
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    assert!(heard_prompt(&rtp.heard(), "no_answer"));
}

/// `*21*` to a number outside: the forwarded call leaves through the trunk with the
/// forwarding user's long number in Diversion; a user without external calls may not.
#[test]
fn forwarding_to_an_outside_number_through_the_trunk() {
    let _serial = one_at_a_time();
    if !need_sipp("external forwarding") {
        return;
    }
    let dir = temp_dir("flow-external");
    let provider = free_port();
    let text = format!(
        "{}\n[[trunks]]\nname = \"provider\"\nhost = \"127.0.0.3\"\nport = {provider}\noutbound_prefixes = [\"00\"]\ncaller_id = \"+4570100000\"\n",
        flow_office(free_port())
    );
    let offset = offset_to(10).to_string();
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        &dir,
        Some(&text),
        free_port(),
        &[
            "--clock-offset-secs",
            &offset,
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    );
    assert!(
        heard_prompt(
            &feature(&dir, &engine, "4002", "*21*004612345678#"),
            "not_active"
        ),
        "Bob may not call out"
    );
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "*21*004612345678#"),
        "activated"
    ));
    let _provider = sipp_bg(
        &dir,
        "provider",
        &answerer_scenario(
            "sip:\\+4570100000@",
            Some(("Diversion:", "sip:\\+4570104001@.*reason=unconditional")),
        ),
        &[
            "-i",
            "127.0.0.3",
            "-p",
            &provider.to_string(),
            "-mp",
            &media_port().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "out",
        "4004",
        "dan-pw",
        "4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("004612345678"), "{c:?}");
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "#21#"),
        "deactivated"
    ));
    drop(_provider);

    // *31* to a number outside, both forms: anonymous From and Privacy: id at the
    // provider (RFC 3323); refused for Bob, who may not call out.
    let provider_at = |name: &str, scenario: &str, calls: &str| {
        let p = sipp_bg(
            &dir,
            name,
            scenario,
            &[
                "-m",
                calls,
                "-i",
                "127.0.0.3",
                "-p",
                &provider.to_string(),
                "-mp",
                &media_port().to_string(),
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        p
    };
    let hidden = provider_at(
        "provider-hidden",
        &answerer_scenario("sip:anonymous@anonymous.invalid", Some(("Privacy:", "id"))),
        "2",
    );
    for code in ["*31*004612345678", "*31*004612345678#"] {
        let rtp = RtpEnd::new();
        let run = call(
            &dir,
            &engine,
            "hidden-out",
            "4001",
            "alice-pw",
            code,
            rtp.port(),
            End::HangUp(800),
        )
        .join()
        .unwrap();
        assert!(run.ok, "{code}: {}", run.output);
        std::thread::sleep(Duration::from_millis(300));
        let c = last_call(&engine);
        assert_eq!(
            c.answered_by.as_deref(),
            Some("004612345678"),
            "{code}: {c:?}"
        );
    }
    assert!(
        heard_prompt(
            &feature(&dir, &engine, "4002", "*31*004612345678#"),
            "not_active"
        ),
        "Bob may not call out, hidden or not"
    );
    drop(hidden);

    // #n# to a number outside: Carla (who may call out) moves Alice's call to the
    // provider, which sees Alice's long number; Bob's #n# outside does nothing.
    let mut out = provider_at(
        "provider-move",
        &answerer_scenario("sip:\\+4570104001@", None),
        "1",
    );
    let mut mover = one_call_member(&dir, &engine, "4003", &keying_scenario("#004612345678#"));
    let rtp = RtpEnd::new();
    let caller = staying_caller_to(&dir, &engine, "moved-out", rtp.port(), 1000, "4003");
    assert!(
        wait_bg(&mut mover, 8),
        "Carla got BYE once the call moved out"
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "the caller stays in the call: {}", run.output);
    assert!(
        wait_bg(&mut out, 5),
        "the outside party got the caller's BYE"
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    let legs = legs_of(&engine, c.id);
    assert!(
        legs.contains(&"b:4003:transferred".to_owned())
            && legs.contains(&"transfer:004612345678:answered".to_owned()),
        "{legs:?}"
    );
    let mut bob = one_call_member(&dir, &engine, "4002", &keying_scenario("#004612345678#"));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "not-moved-out",
        "4001",
        "alice-pw",
        "4002",
        rtp.port(),
        End::HangUp(6500),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    assert!(wait_bg(&mut bob, 5), "Bob kept the call");
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4002"), "{c:?}");
    assert_eq!(
        db(&engine).leg_count(c.id).unwrap(),
        2,
        "nothing rang outside"
    );
}

/// Seed 002: hanging up completes the move. 4002 keys `#4004#` and hangs up while
/// 4004 still rings (2 s): the caller hears music on hold, then 4004 answers and
/// has the caller.
#[test]
fn the_mover_hangs_up_while_n_rings_and_the_caller_waits_for_n() {
    let _serial = one_at_a_time();
    if !need_sipp("move completed by hanging up") {
        return;
    }
    let dir = temp_dir("flow-move-hangup");
    let engine = start_engine(&dir, free_port(), true);
    let mut mover = one_call_member(&dir, &engine, "4002", &mover_scenario("#4004#", Some(300)));
    let mut target = one_call_member(
        &dir,
        &engine,
        "4004",
        &common::answerer_scenario("4001", 2500),
    );
    let rtp = RtpEnd::new();
    let caller = staying_caller(&dir, &engine, "waits", rtp.port(), 1000);
    assert!(wait_bg(&mut mover, 8), "4002 hung up (BYE answered 200)");
    let from = rtp.heard().len();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        music_in(&rtp.heard()[from..]),
        "the caller hears music on hold while 4004 rings"
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "the caller waited and got 4004: {}", run.output);
    assert!(wait_bg(&mut target, 5), "4004 got the caller's BYE");
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    let legs = legs_of(&engine, c.id);
    assert!(
        legs.contains(&"b:4002:transferred".to_owned())
            && legs.contains(&"transfer:4004:answered".to_owned()),
        "{legs:?}"
    );
}

/// Forwarding set through the API: on no answer after 2 s.
#[test]
fn no_answer_forwarding_set_through_the_api() {
    let _serial = one_at_a_time();
    if !need_sipp("no-answer forwarding") {
        return;
    }
    let dir = temp_dir("flow-noanswer");
    let engine = start_engine(&dir, free_port(), true);
    let alice = login(engine.api, "4001");
    let bob = login(engine.api, "4002");
    let body = r#"{"no_answer":{"target":{"internal":"4003"},"after_secs":2}}"#;
    let (code, _) = http(engine.api, "PUT", "/api/forwarding/4001", Some(&bob), body);
    assert_eq!(code, 403, "not Bob's to set");
    let (code, _) = http(
        engine.api,
        "PUT",
        "/api/forwarding/4001",
        Some(&alice),
        r#"{"busy":{"internal":"9999"}}"#,
    );
    assert_eq!(code, 422, "no such user");
    let (code, b) = http(
        engine.api,
        "PUT",
        "/api/forwarding/4001",
        Some(&alice),
        body,
    );
    assert_eq!(code, 204, "{}", String::from_utf8_lossy(&b));
    let (code, b) = http(engine.api, "GET", "/api/forwarding/4001", Some(&alice), "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["no_answer"]["after_secs"], 2, "{v}");
    let _a = member(&dir, &engine, "4001", &ringer_scenario("4004"));
    let _c = member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario(
            "sip:4004@",
            Some(("Diversion:", "sip:4001@.*reason=no-answer")),
        ),
    );
    let rtp = RtpEnd::new();
    let started = Instant::now();
    let run = call(
        &dir,
        &engine,
        "na",
        "4004",
        "dan-pw",
        "4001",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Alice's phone rang first"
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4003"), "{c:?}");
}

/// The `vaxel` softphone built in the same target directory as this test.
fn vaxel_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("vaxel");
    bin.is_file().then_some(bin)
}

/// The project's own softphone as the caller: its key (`vaxel call --dtmf`, RFC 4733
/// from its own media stack) takes it to the support group, and what it records
/// (`--record`) of the main number is the welcome prompt.
#[test]
fn the_vaxel_softphone_hears_the_welcome_and_uses_the_menu() {
    let _serial = one_at_a_time();
    let Some(vaxel) = vaxel_bin() else {
        assert!(
            skip_or_fail(
                "vaxel softphone menu",
                "the vaxel binary (cargo build -p vaxel-phone --bin vaxel)"
            ),
            "vaxel binary missing"
        );
        return;
    };
    if !need_sipp("vaxel menu") {
        return;
    }
    let dir = temp_dir("flow-vaxel");
    let engine = start_engine(&dir, free_port(), true);
    let _dan = member(
        &dir,
        &engine,
        "4004",
        &answerer_scenario(r#""Support" <sip:4001%232@"#, None),
    );
    let profile = dir.join("alice");
    let status = std::process::Command::new(&vaxel)
        .arg("--profile")
        .arg(&profile)
        .args([
            "account",
            "add",
            "--name",
            "alice",
            "--uri",
            &format!("sip:4001@{DOMAIN}"),
        ])
        .args(["--proxy", &format!("sip:{}", engine.sip)])
        .status()
        .unwrap();
    assert!(status.success());
    let rec = dir.join("heard.wav");
    let out = std::process::Command::new(&vaxel)
        .arg("--profile")
        .arg(&profile)
        .args([
            "--listen",
            "127.0.0.1",
            "call",
            &format!("sip:7001@{DOMAIN}"),
        ])
        .args([
            "--dtmf",
            "2",
            "--hangup-after",
            "7",
            "--timeout",
            "20",
            "--record",
        ])
        .arg(&rec)
        .env("VAXEL_PASSWORD", "alice-pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vaxel call: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4004"), "{c:?}");
    assert_eq!(db(&engine).ivr_choices(c.id).unwrap()[0].digit, "2");
    // Without a key: the welcome prompt, heard through the softphone's own stack.
    let rec2 = dir.join("welcome.wav");
    let out = std::process::Command::new(&vaxel)
        .arg("--profile")
        .arg(&profile)
        .args([
            "--listen",
            "127.0.0.1",
            "call",
            &format!("sip:7000@{DOMAIN}"),
        ])
        .args(["--hangup-after", "3.5", "--timeout", "20", "--record"])
        .arg(&rec2)
        .env("VAXEL_PASSWORD", "alice-pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vaxel call: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard =
        vaxel_media::wav::Prompt::from_wav(std::fs::File::open(&rec2).unwrap(), 8000).unwrap();
    let (w, c) = (
        match_score(heard.samples(), &prompt_samples("en", "welcome")),
        match_score(heard.samples(), &prompt_samples("en", "closed")),
    );
    assert!(w > 0.8 && w > c + 0.2, "welcome {w:.2}, closed {c:.2}");
}

/// Hanging up is how most callers end a message: it is kept.
#[test]
fn a_message_is_kept_when_the_caller_hangs_up_while_recording() {
    let _serial = one_at_a_time();
    if !need_sipp("voicemail hang-up") {
        return;
    }
    let dir = temp_dir("flow-hangup");
    let engine = start_engine(&dir, free_port(), true);
    let rtp = RtpEnd::new();
    let c = await_audio(
        &rtp,
        call(
            &dir,
            &engine,
            "vm",
            "4001",
            "alice-pw",
            "*59*4002",
            rtp.port(),
            End::HangUp(14_000),
        ),
        10,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_tone(&rtp.heard(), 1000.0) {
        assert!(Instant::now() < deadline, "never heard the tone");
        std::thread::sleep(Duration::from_millis(100));
    }
    rtp.tone(440.0, 2.0);
    assert!(c.join().unwrap().ok, "the caller hangs up while recording");
    std::thread::sleep(Duration::from_millis(500));
    let msgs = db(&engine).messages("4002").unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].caller, "4001");
    assert!(msgs[0].secs >= 1.5, "{msgs:?}");
    let wav = std::fs::read(engine.data.join("voicemail/4002").join(&msgs[0].file)).unwrap();
    assert!(has_tone(&wav_samples(&wav), 440.0));
}

/// A main number whose flow speaks Swedish (the office's language is English): its
/// prompt and the voicemail greeting after it are the Swedish ones.
#[test]
fn a_main_number_in_its_own_language() {
    let _serial = one_at_a_time();
    if !need_sipp("flow language") {
        return;
    }
    let dir = temp_dir("flow-lang");
    let engine = start_engine(&dir, free_port(), true);
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "sv",
        "4001",
        "alice-pw",
        "7002",
        rtp.port(),
        End::HangUp(6000),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    let heard = rtp.heard();
    let (sv, en) = (
        prompt_samples("sv", "welcome"),
        prompt_samples("en", "welcome"),
    );
    let (s, e) = (match_score(&heard, &sv), match_score(&heard, &en));
    assert!(
        s > 0.8 && s > e + 0.2,
        "Swedish welcome {s:.2}, English {e:.2}"
    );
    // What follows the welcome is the Swedish voicemail greeting.
    let start = envelope(&heard).iter().position(|v| *v > 200.0).unwrap() * 160;
    let rest = &heard[(start + sv.len()).min(heard.len())..];
    let (s, e) = (
        match_score(rest, &prompt_samples("sv", "vm_greeting")),
        match_score(rest, &prompt_samples("en", "vm_greeting")),
    );
    assert!(
        s > 0.8 && s > e + 0.2,
        "Swedish greeting {s:.2}, English {e:.2}"
    );
}

/// R-305 for every call, not only group calls: a member on an ordinary direct call
/// is skipped by a group that skips busy members, and the longest-idle strategy
/// counts from the end of that direct call.
#[test]
fn a_member_on_a_direct_call_is_skipped_and_idle_counts_from_its_end() {
    let _serial = one_at_a_time();
    if !need_sipp("busy members on direct calls") {
        return;
    }
    let dir = temp_dir("flow-direct-busy");
    let engine = start_engine(&dir, free_port(), true);
    let _m: Vec<SippBg> = ["4002", "4003", "4004"]
        .iter()
        .map(|e| {
            member(
                &dir,
                &engine,
                e,
                &answerer_scenario("sip:(4003|4001%231[0-9])@", None),
            )
        })
        .collect();
    // 4003 calls 4002 directly (no flow involved) and stays on the line for a while.
    let direct_rtp = RtpEnd::new();
    let direct = call(
        &dir,
        &engine,
        "direct",
        "4003",
        "carla-pw",
        "4002",
        direct_rtp.port(),
        End::HangUp(6000),
    );
    let up = Instant::now();
    while db(&engine)
        .calls(1)
        .unwrap()
        .first()
        .is_none_or(|c| c.answered_by.is_none())
        && up.elapsed() < Duration::from_secs(4)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = db(&engine).calls(1).unwrap();
    if c.first().and_then(|c| c.answered_by.as_deref()) != Some("4002") {
        panic!(
            "the direct call is not up: {c:?}: {}",
            direct.join().unwrap().output
        );
    }
    // The fixed group 4002, 4003, 4004: both on the direct call, so 4004 alone rings.
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "group-fixed",
        "4001",
        "alice-pw",
        "7100",
        rtp.port(),
        End::HangUp(600),
    )
    .join()
    .unwrap();
    assert!(run.ok, "group call: {}", run.output);
    std::thread::sleep(Duration::from_millis(400));
    let g = last_call(&engine);
    assert_eq!(
        g.answered_by.as_deref(),
        Some("4004"),
        "busy members skipped: {g:?}"
    );
    assert_eq!(
        db(&engine).leg_count(g.id).unwrap() - 1,
        1,
        "only 4004 was rung while 4002 and 4003 talked"
    );
    let run = direct.join().unwrap();
    assert!(run.ok, "direct call: {}", run.output);
    std::thread::sleep(Duration::from_millis(400));
    // Longest idle: 4004's group call ended before the direct call did, so 4004 has
    // been idle the longest (without direct calls counted, 4002 and 4003 would look
    // never used and come first).
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "group-idle",
        "4001",
        "alice-pw",
        "7103",
        rtp.port(),
        End::HangUp(600),
    )
    .join()
    .unwrap();
    assert!(run.ok, "longest-idle call: {}", run.output);
    std::thread::sleep(Duration::from_millis(400));
    let g = last_call(&engine);
    assert_eq!(
        g.answered_by.as_deref(),
        Some("4004"),
        "longest idle counts from the direct call's end: {g:?}"
    );
}

/// A called phone that answers, then keys `keys` one by one as SIP INFO
/// (`application/dtmf-relay`) and waits for BYE (from the engine once the call has
/// moved, or passed on when the caller hangs up).
fn keying_scenario(keys: &str) -> String {
    mover_scenario(keys, None)
}

/// A called party who answers, keys `keys` by SIP INFO 300 ms apart (`,` is a
/// 2-second pause) and then waits for BYE, or with `hang_up` hangs up itself that
/// many ms after its last key.
fn mover_scenario(keys: &str, hang_up: Option<u32>) -> String {
    let mut infos = String::new();
    let mut cseq = 0;
    for k in keys.chars() {
        if k == ',' {
            infos.push_str("  <pause milliseconds=\"2000\"/>\n");
            continue;
        }
        cseq += 1;
        infos.push_str(&format!(
            r#"  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:4002@{DOMAIN}>;tag=[pid]a[call_number]
To:[$f]
Call-ID: [call_id]
CSeq: {cseq} INFO
Max-Forwards: 70
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={k}
Duration=160
]]></send>
  <recv response="200"/>
"#
        ));
    }
    let end = match hang_up {
        None => r#"  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"#
        .to_owned(),
        Some(ms) => format!(
            r#"  <pause milliseconds="{ms}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:4002@{DOMAIN}>;tag=[pid]a[call_number]
To:[$f]
Call-ID: [call_id]
CSeq: {cseq} BYE
Max-Forwards: 70
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <recv response="200"/>
"#,
            cseq = cseq + 1
        ),
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="keying callee">
  <recv request="INVITE" rrs="true">
    <action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="f"/></action>
  </recv>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]a[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]a[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
{infos}{end}</scenario>
"#
    )
}

/// Registers `ext` and starts a one-call SIPp phone (finishes after its scenario).
fn one_call_member(dir: &Path, engine: &EngineProc, ext: &str, scenario: &str) -> SippBg {
    let port = free_port();
    register_at(dir, engine, ext, password(ext), port);
    sipp_bg(
        dir,
        &format!("once-{ext}"),
        scenario,
        &[
            "-m",
            "1",
            "-p",
            &port.to_string(),
            "-mp",
            &media_port().to_string(),
        ],
    )
}

/// R-309 `#n#` during an incoming call: the called party keys `#4003#`, 4003 rings
/// for the caller and on answering takes the called party's place (who gets BYE);
/// keying `*` while n still rings takes the call back.
#[test]
fn keyed_hash_n_hash_moves_the_incoming_call_and_star_takes_it_back() {
    let _serial = one_at_a_time();
    if !need_sipp("#n# call moving") {
        return;
    }
    let dir = temp_dir("flow-keyed-move");
    let engine = start_engine(&dir, free_port(), true);
    // Moved: 4001 → 4002, 4002 keys #4003#, 4003 answers (seeing 4001 as the caller).
    let mut mover = one_call_member(&dir, &engine, "4002", &keying_scenario("#4003#"));
    let mut target = one_call_member(&dir, &engine, "4003", &answerer_scenario("sip:4001@", None));
    let rtp = RtpEnd::new();
    let caller = staying_caller(&dir, &engine, "moved", rtp.port(), 1000);
    assert!(
        wait_bg(&mut mover, 8),
        "4002 got BYE once the call moved to 4003"
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "the caller stays in the call: {}", run.output);
    assert!(wait_bg(&mut target, 5), "4003 got the caller's BYE");
    std::thread::sleep(Duration::from_millis(400));
    let c = last_call(&engine);
    let legs = db(&engine).leg_outcomes(c.id).unwrap();
    assert!(
        legs.iter().any(|l| l.contains("transferred")),
        "4002's leg ended transferred: {legs:?}"
    );
    // Taken back: 4002 keys #4004# then *, 4004 rings and is cancelled, and the
    // caller's BYE still reaches 4002.
    let mut mover = one_call_member(&dir, &engine, "4002", &keying_scenario("#4004#*"));
    let mut ringer = one_call_member(&dir, &engine, "4004", &ringer_scenario("4001"));
    let rtp = RtpEnd::new();
    let caller = call(
        &dir,
        &engine,
        "taken-back",
        "4001",
        "alice-pw",
        "4002",
        rtp.port(),
        End::HangUp(5000),
    );
    assert!(wait_bg(&mut ringer, 8), "4004 rang and was cancelled by *");
    let run = caller.join().unwrap();
    assert!(run.ok, "taken back: {}", run.output);
    assert!(
        wait_bg(&mut mover, 5),
        "4002 kept the call and got the caller's BYE"
    );
    std::thread::sleep(Duration::from_millis(400));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4002"), "{c:?}");
    let legs = db(&engine).leg_outcomes(c.id).unwrap();
    assert!(
        legs.iter().any(|l| l.contains("taken back")),
        "4004's leg ended taken back: {legs:?}"
    );
}

/// A re-INVITE from the caller with `direction`, CSeq `cseq`, expecting a 200 whose
/// SDP says `expect` (RFC 3264 §8.4), then ACK.
fn reinvite_xml(
    user: &str,
    to: &str,
    rtp: u16,
    cseq: u32,
    direction: &str,
    expect: &str,
) -> String {
    format!(
        r#"  <send retrans="500"><![CDATA[
INVITE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 {version} IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {rtp} RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a={direction}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action><ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="d{cseq}"/></action>
  </recv>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <Reference variables="d{cseq}"/>
"#,
        version = 2353687637u64 + u64::from(cseq)
    )
}

/// A caller who holds (re-INVITE sendonly) while the engine plays the welcome and
/// menu gets 200 with the media server's answer recvonly and hears nothing while
/// held; resuming (sendrecv) gets sendrecv and the prompts again (RFC 3264 §8.4;
/// before, such a re-INVITE got 491).
#[test]
fn hold_and_resume_while_the_engine_plays_prompts() {
    let _serial = one_at_a_time();
    if !need_sipp("re-INVITE during prompts") {
        return;
    }
    let dir = temp_dir("flow-hold");
    let engine = start_engine(&dir, free_port(), true);
    let rtp = RtpEnd::new();
    let hold = reinvite_xml("4001", "7000", rtp.port(), 3, "sendonly", "recvonly");
    let resume = reinvite_xml("4001", "7000", rtp.port(), 4, "sendrecv", "sendrecv");
    let scenario = caller_scenario(
        engine.sip,
        "4001",
        "alice-pw",
        "7000",
        rtp.port(),
        End::HangUp(1500),
    )
    .replace(
        "  <pause milliseconds=\"1500\"/>",
        &format!(
            "  <pause milliseconds=\"800\"/>\n{hold}  <pause milliseconds=\"3000\"/>\n{resume}  <pause milliseconds=\"1500\"/>"
        ),
    )
    .replace("CSeq: 3 BYE", "CSeq: 5 BYE");
    let started = Instant::now();
    let caller = {
        let (dir, target) = (dir.clone(), engine.sip.to_string());
        std::thread::spawn(move || {
            sipp(
                &dir,
                "holder",
                &scenario,
                &target,
                &[
                    "-m",
                    "1",
                    "-p",
                    &free_port().to_string(),
                    "-mp",
                    &media_port().to_string(),
                ],
            )
        })
    };
    let at = |ms: u64| {
        if let Some(d) = Duration::from_millis(ms).checked_sub(started.elapsed()) {
            std::thread::sleep(d);
        }
        rtp.heard().len()
    };
    let before_hold = at(700);
    let held_from = at(2000);
    let held_to = at(3600);
    let run = caller.join().unwrap();
    assert!(run.ok, "hold and resume answered: {}", run.output);
    let after = rtp.heard().len();
    assert!(
        before_hold > 2000,
        "prompt before hold: {before_hold} samples"
    );
    assert!(
        held_to - held_from < 800,
        "nothing sent while held: {} samples in 1.6 s",
        held_to - held_from
    );
    assert!(
        after - held_to > 4000,
        "sending again after resume: {} samples",
        after - held_to
    );
}

/// 4001 calls 4002 and stays while the call moves: it accepts the engine's re-INVITE
/// with the new party's media, then hangs up a second later.
fn staying_caller(
    dir: &Path,
    engine: &EngineProc,
    name: &str,
    rtp: u16,
    stay_ms: u32,
) -> std::thread::JoinHandle<SippRun> {
    staying_caller_to(dir, engine, name, rtp, stay_ms, "4002")
}

/// 4001 calls `to` and stays while the call moves (see [`staying_caller`]).
fn staying_caller_to(
    dir: &Path,
    engine: &EngineProc,
    name: &str,
    rtp: u16,
    stay_ms: u32,
    to: &str,
) -> std::thread::JoinHandle<SippRun> {
    // The caller stays: the engine re-offers it the new party's media (a re-INVITE),
    // then the caller hangs up on the new party.
    let scenario = caller_scenario(engine.sip, "4001", "alice-pw", to, rtp, End::HangUp(1000))
        .replace(
            "  <pause milliseconds=\"1000\"/>",
            &format!(
                r#"  <recv request="INVITE" timeout="15000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:4001@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687638 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {port} RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
  <pause milliseconds="{stay_ms}"/>"#,
                port = rtp
            ),
        );
    {
        let (dir, target, name) = (dir.to_owned(), engine.sip.to_string(), name.to_owned());
        std::thread::spawn(move || {
            sipp(
                &dir,
                &name,
                &scenario,
                &target,
                &[
                    "-m",
                    "1",
                    "-p",
                    &free_port().to_string(),
                    "-mp",
                    &media_port().to_string(),
                ],
            )
        })
    }
}

/// `#n#` keyed as RFC 4733 events in the called party's RTP (as mobile and desk
/// phones send keys): the relay sees them and the call moves to 4003.
#[test]
fn keyed_hash_n_hash_as_rfc4733_moves_the_call() {
    let _serial = one_at_a_time();
    if !need_sipp("#n# by RFC 4733") {
        return;
    }
    rfc4733_move("flow-keyed-rtp", "#4003#");
}

/// The mobile form `#n` (no trailing `#`): after a pause of 3 s the engine takes
/// `#4003` as complete and moves the call, with the keys by SIP INFO and by RFC 4733.
#[test]
fn keyed_mobile_form_hash_n_then_a_pause_moves_the_call() {
    let _serial = one_at_a_time();
    if !need_sipp("#n mobile form") {
        return;
    }
    rfc4733_move("flow-keyed-mobile-rtp", "#4003");
    let dir = temp_dir("flow-keyed-mobile-info");
    let engine = start_engine(&dir, free_port(), true);
    let mut mover = one_call_member(&dir, &engine, "4002", &keying_scenario("#4003"));
    let mut target = one_call_member(&dir, &engine, "4003", &answerer_scenario("sip:4001@", None));
    let rtp = RtpEnd::new();
    let caller = staying_caller(&dir, &engine, "moved-mobile", rtp.port(), 1000);
    let t0 = Instant::now();
    assert!(
        wait_bg(&mut mover, 12),
        "4002 got BYE once the call moved to 4003"
    );
    assert!(
        t0.elapsed() > Duration::from_secs(4),
        "the move waited for the pause after the last key ({:?})",
        t0.elapsed()
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "the caller stays in the call: {}", run.output);
    assert!(wait_bg(&mut target, 5), "4003 got the caller's BYE");
    std::thread::sleep(Duration::from_millis(400));
    let c = last_call(&engine);
    let legs = db(&engine).leg_outcomes(c.id).unwrap();
    assert!(
        legs.iter().any(|l| l.contains("transferred")),
        "4002's leg ended transferred: {legs:?}"
    );
}

/// 4001 calls 4002, who keys `keys` as RFC 4733 events in its RTP; the call moves to
/// 4003 (4002 gets BYE, the caller stays and then hangs up on 4003).
fn rfc4733_move(name: &str, keys: &str) {
    let dir = temp_dir(name);
    let engine = start_engine(&dir, free_port(), true);
    let callee_rtp = RtpEnd::new();
    let media_file = dir.join("callee-media-port");
    let scenario = keying_scenario("")
        .replace(
            r#"<action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="f"/></action>"#,
            &format!(
                r#"<action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="f"/><ereg regexp="m=audio ([0-9]+)" search_in="body" assign_to="mall,mport"/><exec command="echo [$mport] > {}"/></action>"#,
                media_file.display()
            ),
        )
        .replace(
            "m=audio [media_port]",
            &format!("m=audio {}", callee_rtp.port()),
        )
        .replace(
            "</scenario>",
            "  <Reference variables=\"f,mall\"/>\n</scenario>",
        );
    let mut mover = one_call_member(&dir, &engine, "4002", &scenario);
    let mut target = one_call_member(&dir, &engine, "4003", &answerer_scenario("sip:4001@", None));
    let rtp = RtpEnd::new();
    let caller = staying_caller(&dir, &engine, "moved-rtp", rtp.port(), 1000);
    let t0 = Instant::now();
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&media_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "4002 got no INVITE");
        std::thread::sleep(Duration::from_millis(50));
    };
    callee_rtp.aim(SocketAddr::from(([127, 0, 0, 1], port)));
    std::thread::sleep(Duration::from_millis(600));
    for k in keys.chars() {
        callee_rtp.dtmf(k);
    }
    assert!(
        wait_bg(&mut mover, 12),
        "4002 got BYE once the call moved to 4003"
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "the caller stays in the call: {}", run.output);
    assert!(wait_bg(&mut target, 5), "4003 got the caller's BYE");
}

/// A baresip 1.0 phone for the flows: registered as `user`, auto-answers, records
/// what it hears to `<dir>/*-dec.wav` (sndfile), driven through ctrl_tcp.
struct BaresipPhone {
    child: std::process::Child,
    ctrl: u16,
    dir: PathBuf,
}

impl Drop for BaresipPhone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BaresipPhone {
    fn start(dir: &Path, user: &str, engine: &EngineProc) -> BaresipPhone {
        std::fs::create_dir_all(dir).unwrap();
        let (sip, ctrl) = (free_port(), free_port());
        std::fs::write(dir.join("tx.wav"), tone_wav(300.0, 30.0)).unwrap();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nnet_interface 127.0.0.1\n\
                 sip_listen 127.0.0.1:{sip}\n\
                 audio_player aubridge,nil\n\
                 audio_source aufile,{tx}\n\
                 audio_alert aubridge,nil\n\
                 audio_srate 8000\naudio_channels 1\n\
                 snd_path {dir}\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n\
                 module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl}\n",
                tx = dir.join("tx.wav").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{DOMAIN}>;auth_pass={pw};outbound=\"sip:{sip}\";regint=600;answermode=auto;audio_codecs=PCMA\n",
                pw = password(user),
                sip = engine.sip,
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = std::process::Command::new("baresip")
            .arg("-v")
            .arg("-f")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        BaresipPhone {
            child,
            ctrl,
            dir: dir.to_owned(),
        }
    }

    /// One ctrl_tcp command (a netstring of JSON); returns baresip's reply.
    fn command(&self, command: &str, params: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", self.ctrl)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("baresip ctrl_tcp: {e}"),
            }
        };
        let json = format!(r#"{{"command":"{command}","params":"{params}","token":"t"}}"#);
        s.write_all(format!("{}:{json},", json.len()).as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// What it heard so far (the sndfile decoder dump).
    fn heard(&self) -> Option<Vec<i16>> {
        let p = std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))?;
        let mut b = std::fs::read(p).ok()?;
        // libsndfile writes the chunk sizes when the file is closed: while the call
        // runs, the data chunk is everything after the header.
        let at = b.windows(4).position(|w| w == b"data")?;
        let len = (b.len() - at - 8) as u32;
        b[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        Some(wav_samples(&b))
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// baresip as the caller: it calls the main number while the office is open, hears
/// the welcome prompt (its own decoder's recording), keys 2 with `sndcode` (RFC 4733
/// from baresip's stack) and the support group's SIPp member answers, seeing the
/// caller as "Support" <sip:4001#2@…>.
#[test]
fn a_baresip_caller_hears_the_welcome_and_keys_the_menu() {
    let _serial = one_at_a_time();
    if !have("baresip") && skip_or_fail("baresip menu", "baresip") {
        return;
    }
    if !need_sipp("baresip menu") {
        return;
    }
    let dir = temp_dir("flow-baresip");
    let engine = start_engine(&dir, free_port(), true);
    let mut dan = one_call_member(
        &dir,
        &engine,
        "4004",
        &answerer_scenario(r#""Support" <sip:4001%232@"#, None),
    );
    let alice = BaresipPhone::start(&dir.join("alice"), "4001", &engine);
    wait_for("baresip registered", 15, || {
        db(&engine)
            .bindings(0)
            .map(|b| b.iter().any(|b| b.extension == "4001"))
            .unwrap_or(false)
    });
    alice.command("dial", "7000");
    wait_for("the welcome prompt heard", 15, || {
        alice
            .heard()
            .is_some_and(|h| envelope(&h).iter().any(|v| *v > 200.0))
    });
    // The welcome's length and a little more: the menu is playing.
    let welcome = prompt_samples("en", "welcome");
    std::thread::sleep(Duration::from_millis(welcome.len() as u64 / 8 + 1000));
    let heard = alice.heard().unwrap();
    let (w, c) = (
        match_score(&heard, &welcome),
        match_score(&heard, &prompt_samples("en", "closed")),
    );
    assert!(w > 0.8 && w > c + 0.2, "welcome {w:.2}, closed {c:.2}");
    let reply = alice.command("sndcode", "2");
    wait_for("the support member answered", 15, || {
        db(&engine)
            .calls(1)
            .ok()
            .and_then(|c| c.first().cloned())
            .is_some_and(|c| c.answered_by.as_deref() == Some("4004"))
    });
    std::thread::sleep(Duration::from_secs(1));
    alice.command("hangup", "");
    let mut status = None;
    wait_for("the member's SIPp to end", 10, || {
        status = dan.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.unwrap().success(),
        "the member's SIPp: {}; sndcode: {reply}; baresip: {}",
        std::fs::read_to_string(dir.join("once-4004.log")).unwrap_or_default(),
        alice.log()
    );
    let c = last_call(&engine);
    assert_eq!(c.caller, "4001");
    assert_eq!(db(&engine).ivr_choices(c.id).unwrap()[0].digit, "2");
}

/// Time-controlled forwarding by a standard week set through the API: Alice takes
/// calls on Wednesdays 08:00–17:00; at 10:00 her own phone answers, at 20:00 the call
/// goes to 4003 with Diversion reason=time-of-day (RFC 5806) and her phone never rings.
#[test]
fn time_controlled_forwarding_by_a_week_set_through_the_api() {
    let _serial = one_at_a_time();
    if !need_sipp("time-controlled forwarding") {
        return;
    }
    let body = r#"{"timed":{"week":{"wed":["08:00-17:00"]},"target":{"internal":"4003"}}}"#;
    for inside in [true, false] {
        let dir = temp_dir(if inside {
            "flow-timed-in"
        } else {
            "flow-timed-out"
        });
        let engine = start_engine(&dir, free_port(), inside);
        let alice = login(engine.api, "4001");
        let (code, b) = http(
            engine.api,
            "PUT",
            "/api/forwarding/4001",
            Some(&alice),
            body,
        );
        assert_eq!(code, 204, "{}", String::from_utf8_lossy(&b));
        let (code, b) = http(engine.api, "GET", "/api/forwarding/4001", Some(&alice), "");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["timed"]["week"]["wed"][0], "08:00-17:00", "{v}");
        // Inside the week Alice answers; outside, 4003 answers what Alice forwarded.
        let mut a = one_call_member(&dir, &engine, "4001", &answerer_scenario("sip:4004@", None));
        let mut c = one_call_member(
            &dir,
            &engine,
            "4003",
            &answerer_scenario(
                "sip:4004@",
                Some(("Diversion:", "sip:4001@.*reason=time-of-day")),
            ),
        );
        let rtp = RtpEnd::new();
        let run = call(
            &dir,
            &engine,
            "timed",
            "4004",
            "dan-pw",
            "4001",
            rtp.port(),
            End::HangUp(800),
        )
        .join()
        .unwrap();
        assert!(run.ok, "inside {inside}: {}", run.output);
        std::thread::sleep(Duration::from_millis(300));
        let call = last_call(&engine);
        let (answerer, idle_log) = if inside {
            ("4001", "once-4003.log")
        } else {
            ("4003", "once-4001.log")
        };
        assert_eq!(
            call.answered_by.as_deref(),
            Some(answerer),
            "inside {inside}: {call:?}"
        );
        let (busy, idle) = if inside {
            (&mut a, &mut c)
        } else {
            (&mut c, &mut a)
        };
        let mut status = None;
        wait_for("the answering SIPp to end", 10, || {
            status = busy.0.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(
            status.unwrap().success(),
            "inside {inside}: the answerer's SIPp failed its checks"
        );
        assert!(
            idle.0.try_wait().unwrap().is_none()
                && !std::fs::read_to_string(dir.join(idle_log))
                    .unwrap_or_default()
                    .contains("INVITE"),
            "inside {inside}: the other phone was not called"
        );
    }
}

/// `scenario` with its SDP's media port replaced by `rtp`'s and the engine's media
/// port from the INVITE written to `file` (SIPp `exec`), so the test's RTP end can
/// speak and listen for that phone. `anchor` is the scenario's INVITE `ereg` to
/// extend, `var` the variable it assigns.
fn with_rtp_end(scenario: &str, anchor: &str, var: &str, rtp: &RtpEnd, file: &Path) -> String {
    scenario
        .replacen(
            anchor,
            &format!(
                r#"{anchor}<ereg regexp="m=audio ([0-9]+)" search_in="body" assign_to="mall,mport"/><exec command="echo [$mport] > {}"/>"#,
                file.display()
            ),
            1,
        )
        .replace("m=audio [media_port]", &format!("m=audio {}", rtp.port()))
        .replace(
            &format!("<Reference variables=\"{var}\"/>"),
            &format!("<Reference variables=\"{var},mall\"/>"),
        )
}

/// The engine's media port a phone's SIPp wrote with [`with_rtp_end`].
fn wait_port(file: &Path, secs: u64) -> u16 {
    let t0 = Instant::now();
    loop {
        if let Some(p) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            return p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "no INVITE reached the phone writing {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Speaks a `freq` tone from `rtp` for `secs` in the background (once it knows
/// where to send).
fn speak(rtp: &Arc<RtpEnd>, freq: f64, secs: f64) {
    let r = rtp.clone();
    std::thread::spawn(move || {
        r.wait_for_audio(20);
        r.tone(freq, secs);
    });
}

fn music_in(s: &[i16]) -> bool {
    s.chunks(800)
        .any(|c| c.len() == 800 && envelope(c)[0] > 300.0)
}

/// The announced move of seed 002 ("Aviserad överföring", the user's
/// `call_move = "announced"`): 4002 keys `#4003` (mobile form); when 4003 answers,
/// 4002 and 4003 talk (4003 hears 4002's 700 Hz) while the caller hears music on
/// hold (neither party's tone); 4002 hangs up to complete the move, and then the
/// caller and 4003 hear each other (1100 Hz and 400 Hz). Then `*` takes a call
/// back after talking with n: 4002 keys `#4004#`, talks with 4004, keys `*`; 4004
/// gets BYE and the caller's BYE reaches 4002.
#[test]
fn announced_move_the_mover_talks_with_n_hangs_up_to_complete_and_star_takes_back() {
    let _serial = one_at_a_time();
    if !need_sipp("announced move") {
        return;
    }
    let dir = temp_dir("flow-announced");
    let text = flow_office(free_port()).replacen(
        "echo_number = \"8001\"\n",
        "echo_number = \"8001\"\ncall_move_users = { \"4002\" = \"announced\" }\n",
        1,
    );
    let offset = offset_to(10).to_string();
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        &dir,
        Some(&text),
        free_port(),
        &[
            "--clock-offset-secs",
            &offset,
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    );
    let (m_rtp, n_rtp, c_rtp) = (
        Arc::new(RtpEnd::new()),
        Arc::new(RtpEnd::new()),
        Arc::new(RtpEnd::new()),
    );
    let (m_file, n_file) = (dir.join("mover-port"), dir.join("n-port"));
    let from_ereg = r#"<ereg regexp=".*" search_in="hdr" header="From:" assign_to="f"/>"#;
    let mover_sc = with_rtp_end(
        &mover_scenario("#4003", Some(9000)),
        from_ereg,
        "f",
        &m_rtp,
        &m_file,
    )
    .replace(
        "</scenario>",
        "  <Reference variables=\"f,mall\"/>\n</scenario>",
    );
    let mut mover = one_call_member(&dir, &engine, "4002", &mover_sc);
    let n_sc = with_rtp_end(
        &answerer_scenario("sip:4001@", None),
        r#"assign_to="x"/>"#,
        "x",
        &n_rtp,
        &n_file,
    );
    let mut target = one_call_member(&dir, &engine, "4003", &n_sc);
    let caller = staying_caller(&dir, &engine, "announced", c_rtp.port(), 4000);
    m_rtp.aim(SocketAddr::from(([127, 0, 0, 1], wait_port(&m_file, 5))));
    speak(&m_rtp, 700.0, 14.0);
    speak(&c_rtp, 400.0, 16.0);
    assert!(c_rtp.wait_for_audio(5), "the caller hears 4002");
    assert!(
        n_rtp.wait_for_audio(15) || std::fs::metadata(&n_file).is_ok(),
        "4003 was rung"
    );
    n_rtp.aim(SocketAddr::from(([127, 0, 0, 1], wait_port(&n_file, 1))));
    speak(&n_rtp, 1100.0, 10.0);
    assert!(n_rtp.wait_for_audio(5), "4003 hears 4002 once it answered");
    let (c0, n0) = (c_rtp.heard().len(), n_rtp.heard().len());
    std::thread::sleep(Duration::from_millis(2500));
    let (c_all, n_all) = (c_rtp.heard(), n_rtp.heard());
    assert!(
        has_tone(&c_all[..c0], 700.0),
        "before the move the caller heard 4002"
    );
    assert!(has_tone(&n_all[n0..], 700.0), "4003 talks with 4002");
    assert!(
        !has_tone(&n_all[n0..], 400.0),
        "4003 does not hear the caller yet"
    );
    let c_seg = &c_all[c0..];
    assert!(
        !has_tone(c_seg, 700.0) && !has_tone(c_seg, 1100.0),
        "the caller hears neither 4002 nor 4003 while they talk"
    );
    assert!(music_in(c_seg), "the caller hears music on hold");
    assert!(
        wait_bg(&mut mover, 12),
        "4002 hung up (its BYE answered 200)"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let (c1, n1) = (c_rtp.heard().len(), n_rtp.heard().len());
    std::thread::sleep(Duration::from_millis(1500));
    let (c_all, n_all) = (c_rtp.heard(), n_rtp.heard());
    assert!(
        has_tone(&c_all[c1..], 1100.0),
        "the caller hears 4003 after the move"
    );
    assert!(
        has_tone(&n_all[n1..], 400.0),
        "4003 hears the caller after the move"
    );
    let run = caller.join().unwrap();
    assert!(
        run.ok,
        "the caller stayed (re-INVITEd with 4003's media): {}",
        run.output
    );
    assert!(wait_bg(&mut target, 5), "4003 got the caller's BYE");
    std::thread::sleep(Duration::from_millis(400));
    let c = last_call(&engine);
    let legs = legs_of(&engine, c.id);
    assert!(
        legs.contains(&"b:4002:transferred".to_owned())
            && legs.contains(&"transfer:4003:answered".to_owned()),
        "{legs:?}"
    );

    // `*` after talking with n: the call comes back to the mover.
    let mut mover = one_call_member(&dir, &engine, "4002", &mover_scenario("#4004#,*", None));
    let mut other = one_call_member(&dir, &engine, "4004", &answerer_scenario("sip:4001@", None));
    let rtp = RtpEnd::new();
    let caller = call(
        &dir,
        &engine,
        "announced-back",
        "4001",
        "alice-pw",
        "4002",
        rtp.port(),
        End::HangUp(7000),
    );
    assert!(
        wait_bg(&mut other, 10),
        "4004 answered, talked, and got BYE on *"
    );
    let run = caller.join().unwrap();
    assert!(run.ok, "taken back: {}", run.output);
    assert!(
        wait_bg(&mut mover, 5),
        "4002 kept the call and got the caller's BYE"
    );
    std::thread::sleep(Duration::from_millis(400));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4002"), "{c:?}");
    let legs = db(&engine).leg_outcomes(c.id).unwrap();
    assert!(
        legs.iter().any(|l| l.contains("taken back")),
        "4004's leg ended taken back: {legs:?}"
    );
}

/// A `*24*` presence profile that ends by itself at its time (the engine's clock is
/// put 40 s before 10:00 and the profile set to `*1000`): while it runs the member
/// is out of group calls and callers to its voicemail hear the profile's greeting
/// (R-312: the office's prompt for profile 2, "in a meeting"; for another user the
/// own upload for profile 1); after 10:00 the member is back first in the fixed
/// group and the standard greeting plays. Also `*61*n*T#` sets the no-answer time
/// and `*61*n#` keeps it.
#[test]
fn a_presence_profile_ends_at_its_time_and_chooses_the_voicemail_greeting() {
    let _serial = one_at_a_time();
    if !need_sipp("presence profile end") {
        return;
    }
    let dir = temp_dir("flow-presence-end");
    let t0 = Instant::now();
    let offset = (offset_to(10) - 40).to_string();
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        &dir,
        Some(&flow_office(free_port())),
        free_port(),
        &[
            "--clock-offset-secs",
            &offset,
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    );
    let ends = t0 + Duration::from_secs(40);
    let _m: Vec<SippBg> = ["4002", "4003", "4004"]
        .iter()
        .map(|e| member(&dir, &engine, e, &answerer_scenario("sip:4001%2310@", None)))
        .collect();
    let carla = login(engine.api, "4003");
    assert_eq!(
        http_bytes(
            engine.api,
            "PUT",
            "/api/voicemail/4003/greeting/profile-1",
            &carla,
            &tone_wav(900.0, 1.5),
        ),
        204
    );
    assert!(heard_prompt(
        &feature(&dir, &engine, "4002", "*24*2*1000#"),
        "activated"
    ));
    assert!(heard_prompt(
        &feature(&dir, &engine, "4003", "*24*1*02#"),
        "activated"
    ));
    let group_call = |name: &str| {
        let rtp = RtpEnd::new();
        let run = call(
            &dir,
            &engine,
            name,
            "4001",
            "alice-pw",
            "7100",
            rtp.port(),
            End::HangUp(600),
        )
        .join()
        .unwrap();
        assert!(run.ok, "{}", run.output);
        std::thread::sleep(Duration::from_millis(300));
        last_call(&engine).answered_by.unwrap_or_default()
    };
    let greeting = |name: &str, to: &str| {
        let rtp = RtpEnd::new();
        let run = call(
            &dir,
            &engine,
            name,
            "4001",
            "alice-pw",
            to,
            rtp.port(),
            End::HangUp(3500),
        )
        .join()
        .unwrap();
        assert!(run.ok, "{}", run.output);
        rtp.heard()
    };
    assert_eq!(
        group_call("during"),
        "4004",
        "4002 (meeting) and 4003 (lunch) are out of group calls"
    );
    assert!(
        heard_prompt(&greeting("vm-meeting", "*59*4002"), "vm_meeting"),
        "4002's callers hear the meeting greeting"
    );
    assert!(
        has_tone(&greeting("vm-own", "*59*4003"), 900.0),
        "4003's callers hear 4003's own greeting for profile 1"
    );
    assert!(
        Instant::now() < ends,
        "all of the above ran while 4002's profile was on"
    );
    // *61*n*T# sets the no-answer time; *61*n# keeps it.
    let alice = login(engine.api, "4001");
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "*61*4003*5#"),
        "activated"
    ));
    let (_, b) = http(engine.api, "GET", "/api/forwarding/4001", Some(&alice), "");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["no_answer"]["after_secs"], 5, "{v}");
    assert_eq!(v["no_answer"]["target"]["internal"], "4003", "{v}");
    assert!(heard_prompt(
        &feature(&dir, &engine, "4001", "*61*4004#"),
        "activated"
    ));
    let (_, b) = http(engine.api, "GET", "/api/forwarding/4001", Some(&alice), "");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["no_answer"]["after_secs"], 5, "{v}");
    assert_eq!(v["no_answer"]["target"]["internal"], "4004", "{v}");
    // 10:00 passes: the profile ends by itself.
    if let Some(d) = (ends + Duration::from_millis(2500)).checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
    assert_eq!(
        group_call("after"),
        "4002",
        "4002 is back first in the fixed group once the profile ended"
    );
    assert!(
        heard_prompt(&greeting("vm-standard", "*59*4002"), "vm_greeting"),
        "the standard greeting again"
    );
}

/// The caller's RTP end for an Opus call (RFC 7587, payload type 96, 48 kHz): what
/// arrives is decoded with vaxel-media's Opus and resampled to 8 kHz.
struct OpusEnd {
    sock: Arc<UdpSocket>,
    heard: Arc<Mutex<Vec<i16>>>,
    engine: Arc<Mutex<Option<SocketAddr>>>,
    packets: Arc<Mutex<u32>>,
}

impl OpusEnd {
    fn new() -> OpusEnd {
        use vaxel_media::codec::AudioCodec;
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let engine = Arc::new(Mutex::new(None));
        let packets = Arc::new(Mutex::new(0));
        let (s, h, e, n) = (sock.clone(), heard.clone(), engine.clone(), packets.clone());
        std::thread::spawn(move || {
            let mut dec = vaxel_media::codec::opus::OpusCodec::new(20).unwrap();
            let mut down = vaxel_media::resample::Resampler::new(48_000, 8000).unwrap();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                let Ok((len, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                if len <= 12 || buf[1] & 0x7f != 96 {
                    continue;
                }
                e.lock().unwrap().get_or_insert(from);
                *n.lock().unwrap() += 1;
                let mut wide = Vec::new();
                if dec.decode(&buf[12..len], &mut wide).is_ok() {
                    let mut narrow = Vec::new();
                    down.process(&wide, &mut narrow);
                    h.lock().unwrap().extend(narrow);
                }
            }
        });
        OpusEnd {
            sock,
            heard,
            engine,
            packets,
        }
    }

    /// One key as RFC 4733 events at the 48 kHz clock (payload type 101), 100 ms.
    fn dtmf(&self, key: char, ts: u32) {
        let Some(to) = *self.engine.lock().unwrap() else {
            return;
        };
        let code = key.to_digit(10).unwrap() as u8;
        let send = |seq: u16, marker: bool, end: bool, dur: u16| {
            let mut p = vec![0x80, 101 | if marker { 0x80 } else { 0 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
            let d = dur.to_be_bytes();
            p.extend_from_slice(&[code, if end { 0x8a } else { 10 }, d[0], d[1]]);
            let _ = self.sock.send_to(&p, to);
        };
        for i in 1..=5u16 {
            send(i, i == 1, false, i * 960);
            std::thread::sleep(Duration::from_millis(20));
        }
        for i in 6..=8u16 {
            send(i, false, true, 4800);
        }
    }
}

/// The media server with an Opus-only caller (answered in Opus, the menu prompt
/// decoded and recognised, a key as RFC 4733 at 48 kHz recorded as the IVR choice)
/// and with a late offer (INVITE without SDP: our offer in the 200, the caller's
/// answer in the ACK; the welcome prompt heard in A-law) — both were 488 before.
#[test]
fn the_media_server_answers_an_opus_only_caller_and_a_late_offer() {
    let _serial = one_at_a_time();
    if !need_sipp("Opus and late offer") {
        return;
    }
    let dir = temp_dir("flow-opus-late");
    let engine = start_engine(&dir, free_port(), true);
    let g711 = "m=audio {rtp} RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n\
                a=fmtp:101 0-16\n";
    let opus = OpusEnd::new();
    let rtp = opus.sock.local_addr().unwrap().port();
    let scenario = caller_scenario(engine.sip, "4001", "alice-pw", "7001", rtp, End::HangUp(9500))
        .replace(
            &g711.replace("{rtp}", &rtp.to_string()),
            &format!(
                "m=audio {rtp} RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\n\
                 a=rtpmap:101 telephone-event/48000\na=fmtp:101 0-16\n"
            ),
        )
        .replace(
            r#"<recv response="200" rrs="true"/>"#,
            r#"<recv response="200" rrs="true"><action><ereg regexp="opus/48000" search_in="body" check_it="true" assign_to="o"/></action></recv>
  <Reference variables="o"/>"#,
        );
    assert!(
        scenario.contains("opus/48000/2"),
        "the Opus offer replaced G.711"
    );
    let caller = {
        let (dir, target) = (dir.clone(), engine.sip.to_string());
        std::thread::spawn(move || {
            sipp(
                &dir,
                "opus",
                &scenario,
                &target,
                &["-m", "1", "-p", &free_port().to_string()],
            )
        })
    };
    let t0 = Instant::now();
    while opus.engine.lock().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no Opus RTP from the engine"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The menu prompt (6.7 s) plays to its end, then the key.
    std::thread::sleep(Duration::from_millis(7200));
    opus.dtmf('2', 4_000_000);
    let run = caller.join().unwrap();
    assert!(run.ok, "answered in Opus: {}", run.output);
    let heard = opus.heard.lock().unwrap().clone();
    assert!(
        *opus.packets.lock().unwrap() > 100,
        "Opus packets all along"
    );
    let score = match_score(&heard, &prompt_samples("en", "menu"));
    assert!(score > 0.8, "the menu prompt through Opus: {score:.2}");
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    let choices = db(&engine).ivr_choices(c.id).unwrap();
    assert!(
        choices.iter().any(|x| x.digit == "2" && x.valid),
        "the key by RFC 4733 at 48 kHz: {choices:?}"
    );

    // Late offer: no SDP in the INVITE.
    let rtp = RtpEnd::new();
    let offer = g711.replace("{rtp}", &rtp.port().to_string());
    let sdp = format!(
        "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n{offer}"
    );
    let scenario = caller_scenario(engine.sip, "4001", "alice-pw", "7000", rtp.port(), End::HangUp(2500))
        .replace(
            &format!("Content-Type: application/sdp\nContent-Length: [len]\n\n{sdp}]]>"),
            "Content-Length: 0\n\n]]>",
        )
        .replace(
            r#"<recv response="200" rrs="true"/>"#,
            r#"<recv response="200" rrs="true"><action><ereg regexp="m=audio [0-9]+ RTP/AVP [0-9 ]*8" search_in="body" check_it="true" assign_to="m"/></action></recv>
  <Reference variables="m"/>"#,
        )
        .replace(
            "CSeq: 2 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]>",
            &format!("CSeq: 2 ACK\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: [len]\n\n{sdp}]]>"),
        );
    let invites = &scenario[..scenario.find("CSeq: 2 ACK").unwrap()];
    assert!(!invites.contains("v=0"), "the INVITEs carry no SDP");
    let caller = {
        let (dir, target) = (dir.clone(), engine.sip.to_string());
        std::thread::spawn(move || {
            sipp(
                &dir,
                "late",
                &scenario,
                &target,
                &["-m", "1", "-p", &free_port().to_string()],
            )
        })
    };
    let run = caller.join().unwrap();
    assert!(
        run.ok,
        "a late offer answered with our offer in the 200: {}",
        run.output
    );
    let score = match_score(&rtp.heard(), &prompt_samples("en", "welcome"));
    assert!(
        score > 0.8,
        "the welcome prompt after a late offer: {score:.2}"
    );
}

/// A device that rings and then answers the engine's INVITE with `302 Moved
/// Temporarily` and `Contact: <sip:CONTACT@office.test>` (a phone's "send to
/// voicemail" or "redirect" button).
fn redirect_scenario(contact: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="redirect">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <pause milliseconds="400"/>
  <send><![CDATA[
SIP/2.0 302 Moved Temporarily
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{contact}@{DOMAIN}>
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#,
        contact = contact.replace('#', "%23")
    )
}

/// 4001 calls `to` expecting the engine to answer `code` (then ACK).
fn refused_call(dir: &Path, engine: &EngineProc, name: &str, to: &str, code: u16) -> SippRun {
    let full = caller_scenario(engine.sip, "4001", "alice-pw", to, free_port(), End::Wait);
    let cut = full
        .find("  <recv response=\"200\" rrs=\"true\"/>")
        .unwrap();
    let scenario = format!(
        r#"{}  <recv response="{code}"/>
  <send><![CDATA[
ACK sip:{to}@{sip} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:4001@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#,
        &full[..cut],
        sip = engine.sip
    );
    sipp(
        dir,
        name,
        &scenario,
        &engine.sip.to_string(),
        &["-m", "1", "-p", &free_port().to_string()],
    )
}

/// "Send to voicemail" from a ringing phone: a device of 4002 answers the engine's
/// INVITE with 302 and `Contact: <sip:*59*4002@…>`; the engine answers the caller
/// with 4002's voicemail greeting and cancels 4002's other ringing device. A 302 to
/// an internal number rings that user (Diversion reason=deflection); one to a number
/// outside is followed through the trunk only when the called user may call out
/// (else the caller gets 480).
#[test]
fn a_ringing_device_sends_the_call_to_voicemail_or_redirects_it_with_302() {
    let _serial = one_at_a_time();
    if !need_sipp("302 redirect") {
        return;
    }
    let dir = temp_dir("flow-redirect");
    let provider = free_port();
    let text = format!(
        "{}\n[[trunks]]\nname = \"provider\"\nhost = \"127.0.0.3\"\nport = {provider}\noutbound_prefixes = [\"00\"]\ncaller_id = \"+4570100000\"\n",
        flow_office(free_port())
    );
    let offset = offset_to(10).to_string();
    let prompts = prompts_dir();
    let engine = EngineProc::start_with(
        &dir,
        Some(&text),
        free_port(),
        &[
            "--clock-offset-secs",
            &offset,
            "--prompts",
            prompts.to_str().unwrap(),
        ],
    );
    // Outside: Bob may not call out, so his phone's 302 to a number outside is not
    // followed (480 to the caller). (First, while Bob has no other device.)
    let mut button = one_call_member(&dir, &engine, "4002", &redirect_scenario("004612345678"));
    let run = refused_call(&dir, &engine, "bob-out", "4002", 480);
    assert!(run.ok, "not followed for Bob: {}", run.output);
    assert!(wait_bg(&mut button, 3));
    // To voicemail: one device redirects, the other rings and is cancelled.
    let mut button = one_call_member(&dir, &engine, "4002", &redirect_scenario("*59*4002"));
    let mut other = one_call_member(&dir, &engine, "4002", &ringer_scenario("4001"));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "to-voicemail",
        "4001",
        "alice-pw",
        "4002",
        rtp.port(),
        End::HangUp(4000),
    )
    .join()
    .unwrap();
    assert!(run.ok, "the engine answered the caller: {}", run.output);
    assert!(wait_bg(&mut button, 3), "the 302 was acknowledged");
    assert!(wait_bg(&mut other, 3), "4002's other device was cancelled");
    assert!(
        heard_prompt(&rtp.heard(), "vm_greeting"),
        "the caller hears 4002's voicemail greeting"
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    let legs = legs_of(&engine, c.id);
    assert!(
        legs.iter().filter(|l| l.starts_with("b:4002:")).count() >= 2
            && legs
                .iter()
                .filter(|l| l.starts_with("b:"))
                .all(|l| l == "b:4002:redirected"),
        "{legs:?}"
    );

    // To a colleague.
    let mut button = one_call_member(&dir, &engine, "4002", &redirect_scenario("4003"));
    let mut carla = one_call_member(
        &dir,
        &engine,
        "4003",
        &answerer_scenario(
            "sip:4001@",
            Some(("Diversion:", "sip:4002@.*reason=deflection")),
        ),
    );
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "to-carla",
        "4001",
        "alice-pw",
        "4002",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    assert!(
        wait_bg(&mut button, 3) && wait_bg(&mut carla, 3),
        "redirected to 4003"
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("4003"), "{c:?}");

    // Outside: Carla may call out.
    let mut out = sipp_bg(
        &dir,
        "provider-redirect",
        &answerer_scenario(
            "sip:\\+4570104001@",
            Some(("Diversion:", "sip:4003@.*reason=deflection")),
        ),
        &[
            "-m",
            "1",
            "-i",
            "127.0.0.3",
            "-p",
            &provider.to_string(),
            "-mp",
            &media_port().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut button = one_call_member(&dir, &engine, "4003", &redirect_scenario("004612345678"));
    let rtp = RtpEnd::new();
    let run = call(
        &dir,
        &engine,
        "carla-out",
        "4001",
        "alice-pw",
        "4003",
        rtp.port(),
        End::HangUp(800),
    )
    .join()
    .unwrap();
    assert!(run.ok, "{}", run.output);
    assert!(
        wait_bg(&mut button, 3) && wait_bg(&mut out, 3),
        "followed out for Carla"
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = last_call(&engine);
    assert_eq!(c.answered_by.as_deref(), Some("004612345678"), "{c:?}");
}
