//! Shared by the engine's interop tests: an engine process on loopback ports the test
//! picked, a temporary data directory, and SIPp runs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "office.test";

/// An office with four users; `extra` is appended (protection, trunks).
pub fn office(extra: &str) -> String {
    format!(
        r#"
[office]
domain = "{DOMAIN}"
digest = ["MD5"]
name = "Test office"

[[users]]
extension = "4001"
number = "+4570104001"
name = "Alice"
password = "alice-pw"
external_calls = true
role = "administrator"

[[users]]
extension = "4002"
number = "+4570104002"
name = "Bob"
password = "bob-pw"

[[users]]
extension = "4003"
name = "Carla"
password = "carla-pw"
external_calls = true

[[users]]
extension = "4004"
name = "Dan"
password = "dan-pw"
{extra}
"#
    )
}

/// A free UDP port on 127.0.0.1 (also free on TCP as far as we can tell).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    // Leftovers of earlier runs of this test (other processes) go first.
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        let prefix = format!("vaxel-engine-{name}-");
        let mine = format!("{prefix}{}-", std::process::id());
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            // Only leftovers of processes that have ended: another test binary (or a
            // second checkout's run) may be using the same name right now.
            let owner_alive = n
                .strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit('-').nth(1))
                .is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if n.starts_with(&prefix) && !n.starts_with(&mine) && !owner_alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = std::env::temp_dir().join(format!(
        "vaxel-engine-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `vaxel-engine` process; killed when dropped.
pub struct EngineProc {
    pub child: Child,
    pub sip: SocketAddr,
    pub api: SocketAddr,
    pub data: PathBuf,
}

impl EngineProc {
    /// Starts the engine with `office_toml` written to the data directory.
    pub fn start(data: &Path, office_toml: Option<&str>, sip_port: u16) -> EngineProc {
        Self::start_with(data, office_toml, sip_port, &[])
    }

    /// [`EngineProc::start`] with extra daemon options.
    pub fn start_with(
        data: &Path,
        office_toml: Option<&str>,
        sip_port: u16,
        extra: &[&str],
    ) -> EngineProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaxel-engine"));
        cmd.args(extra);
        cmd.arg("--data").arg(data);
        if let Some(t) = office_toml {
            let f = data.join("office.toml");
            std::fs::write(&f, t).unwrap();
            cmd.arg("--office").arg(&f);
        }
        let api_port = free_port();
        cmd.args(["--sip", &format!("127.0.0.1:{sip_port}")])
            .args(["--api", &format!("127.0.0.1:{api_port}")])
            .env(
                "VAXEL_LOG",
                std::env::var("VAXEL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("vaxel-engine starts");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "engine did not become ready");
            match lines.next() {
                Some(Ok(l)) if l.starts_with("vaxel-engine ready") => break,
                Some(Ok(_)) => {}
                _ => panic!("engine exited before it was ready"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        EngineProc {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            data: data.to_owned(),
        }
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `-i 127.0.0.1` unless the arguments pick an address.
fn default_ip(args: &[&str]) -> Vec<&'static str> {
    if args.contains(&"-i") {
        vec![]
    } else {
        vec!["-i", "127.0.0.1"]
    }
}

/// Result of a SIPp run.
pub struct SippRun {
    pub ok: bool,
    pub output: String,
}

/// Runs SIPp with `scenario` (XML text) against `target`, extra arguments `args`.
pub fn sipp(dir: &Path, name: &str, scenario: &str, target: &str, args: &[&str]) -> SippRun {
    let mut cmd = Command::new("sipp");
    cmd.arg(target);
    // An empty scenario: a built-in one is named in `args` (`-sn uac`).
    if !scenario.is_empty() {
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, scenario).unwrap();
        cmd.arg("-sf").arg(&file);
    }
    let out = cmd
        .args(default_ip(args))
        .args(args)
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .current_dir(dir)
        .output()
        .expect("sipp runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    SippRun {
        ok: out.status.success(),
        output,
    }
}

/// Starts SIPp in the background (a UAS), killed when dropped.
pub struct SippBg(pub Child);

impl Drop for SippBg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sipp_bg(dir: &Path, name: &str, scenario: &str, args: &[&str]) -> SippBg {
    let mut cmd = Command::new("sipp");
    if !scenario.is_empty() {
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, scenario).unwrap();
        cmd.arg("-sf").arg(&file);
    }
    let child = cmd
        .args(default_ip(args))
        .arg("-nostdin")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .expect("sipp starts");
    SippBg(child)
}

/// A SIPp REGISTER with digest: 401, then 200. `contact_port` is where the contact is.
pub fn register_scenario(user: &str, password: &str, expires: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register {user}">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]reg[call_number]
To: <sip:{user}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: {expires}
User-Agent: SIPp
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]reg[call_number]
To: <sip:{user}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={password}]
Max-Forwards: 70
Expires: {expires}
User-Agent: SIPp
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

/// A SIPp caller: INVITE, 407, INVITE with credentials, 200, ACK, RTP from a pcap
/// (when `pcap`), BYE. `to` is the dialled number.
pub fn call_scenario(
    engine: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
    pcap: bool,
    hold_ms: u32,
) -> String {
    let play = if pcap {
        r#"  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>
"#
    } else {
        ""
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call {to}">
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={password} auth_uri=sip:{to}@{engine}]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{play}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

/// Registers `user` with its contact at `port` (SIPp binds it, registers, exits).
pub fn register_at(dir: &Path, engine: &EngineProc, user: &str, password: &str, port: u16) {
    let run = sipp(
        dir,
        &format!("reg-{user}-{port}"),
        &register_scenario(user, password, 600),
        &engine.sip.to_string(),
        &["-m", "1", "-p", &port.to_string()],
    );
    assert!(run.ok, "register {user}: {}", run.output);
}

/// A SIPp device that rings and never answers: 180, then CANCEL → 200 and 487.
/// Checks that the caller shows as `caller` (R-302).
pub fn ringer_scenario(caller: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringer">
  <recv request="INVITE">
    <action><ereg regexp="sip:{caller}@" search_in="hdr" header="From:" check_it="true" assign_to="x"/></action>
  </recv>
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
  <recv request="CANCEL"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
CSeq: 1 INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>
  <Reference variables="x"/>
</scenario>
"#
    )
}

/// A SIPp device that rings for `ring_ms`, answers with SDP, and takes the BYE.
pub fn answerer_scenario(caller: &str, ring_ms: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answerer">
  <recv request="INVITE">
    <action><ereg regexp="sip:{caller}@" search_in="hdr" header="From:" check_it="true" assign_to="x"/></action>
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
  <pause milliseconds="{ring_ms}"/>
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
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
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
  <Reference variables="x"/>
</scenario>
"#
    )
}

/// A caller whose call the engine refuses after authentication with `code`.
pub fn refused_scenario(
    engine: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
    code: u16,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="refused {to}">
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={password}]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="{code}"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#
    )
}

/// A caller that gives up while it rings: INVITE (with credentials), 180, CANCEL,
/// 200, 487, ACK.
pub fn cancel_scenario(engine: SocketAddr, user: &str, password: &str, to: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cancel {to}">
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={password}]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
CANCEL sip:{to}@{engine} SIP/2.0
[last_Via:]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
[last_Via:]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#
    )
}

/// Waits for a background SIPp to finish; whether it succeeded.
pub fn wait_bg(bg: &mut SippBg, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(s)) = bg.0.try_wait() {
            return s.success();
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A REGISTER with digest from `from_ip` (any 127.x address works on Linux loopback);
/// the final status, or `None` when the engine did not answer (a banned source).
pub fn register_from(from_ip: &str, sip: SocketAddr, user: &str, password: &str) -> Option<u16> {
    use vaxel_sip::auth::{ChallengeKind, DigestClient, Secret};
    use vaxel_sip::msg::{HeaderName, Message};
    let sock = UdpSocket::bind((from_ip, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = sock.local_addr().unwrap();
    let mut client = DigestClient::new(user, Secret::Password(password.into()));
    let mut auth = String::new();
    for cseq in 1..=2 {
        let msg = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{cseq}r{user};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{DOMAIN}>;tag=t{user}\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}-{local}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), sip).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        let Ok(Message::Response(r)) =
            vaxel_sip::msg::parse(bytes::Bytes::copy_from_slice(&buf[..n]))
        else {
            panic!("not a response");
        };
        if r.status.as_u16() != 401 {
            return Some(r.status.as_u16());
        }
        let values: Vec<String> = r
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|v| v.to_string())
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        client.handle_challenge(ChallengeKind::Www, &refs).unwrap();
        let a = client.authorize("REGISTER", &format!("sip:{DOMAIN}"), b"", "0a4f113b");
        auth = format!("Authorization: {}\r\n", a[0].credentials);
    }
    Some(401)
}
