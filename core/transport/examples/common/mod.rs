//! Bits shared by the `sip-answer` and `sip-call` examples: command-line
//! reading, a fixed PCMU SDP, header helpers and a throwaway TLS certificate.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vaxel_sip::msg::{HeaderName, MediaType, Request, Response, StatusCode};

/// Command-line arguments as `--name value` pairs and positionals.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    pub fn from_env() -> Args {
        Args {
            items: std::env::args().skip(1).collect(),
        }
    }

    /// Whether a flag without value is present (and removes it).
    pub fn flag(&mut self, name: &str) -> bool {
        if let Some(i) = self.items.iter().position(|a| a == name) {
            self.items.remove(i);
            true
        } else {
            false
        }
    }

    /// Every value of an option (and removes them).
    pub fn values(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(i) = self.items.iter().position(|a| a == name) {
            if i + 1 >= self.items.len() {
                fail(&format!("{name} needs a value"));
            }
            out.push(self.items.remove(i + 1));
            self.items.remove(i);
        }
        out
    }

    /// The last value of an option.
    pub fn value(&mut self, name: &str) -> Option<String> {
        self.values(name).pop()
    }

    /// A parsed option value.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        self.value(name).map(|v| {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{name}: cannot read {v:?}")))
        })
    }

    /// What is left: positionals (an unknown `--option` is an error).
    pub fn rest(self) -> Vec<String> {
        if let Some(bad) = self.items.iter().find(|a| a.starts_with("--")) {
            fail(&format!("unknown option {bad}"));
        }
        self.items
    }
}

pub fn fail(msg: &str) -> ! {
    eprintln!("error: {msg} (try --help)");
    std::process::exit(2);
}

/// `ADDR`, `IP:PORT` or a bare port (on 127.0.0.1).
pub fn socket_addr(s: &str) -> SocketAddr {
    if let Ok(port) = s.parse::<u16>() {
        return SocketAddr::from(([127, 0, 0, 1], port));
    }
    s.parse()
        .unwrap_or_else(|_| fail(&format!("not an address: {s:?}")))
}

/// A PCMU (+ telephone-event) SDP for `ip:port` (RFC 4566, RFC 3551).
pub fn sdp(ip: IpAddr, port: u16, session: u64, version: u64) -> Bytes {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    Bytes::from(format!(
        "v=0\r\n\
         o=vaxel {session} {version} IN {family} {ip}\r\n\
         s=vaxel\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    ))
}

/// Whether an SDP offer has an audio stream we can answer with PCMU
/// (static payload type 0, RFC 3551).
pub fn offers_pcmu(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.lines().any(|l| {
        let l = l.trim_end();
        l.starts_with("m=audio ")
            && !l.starts_with("m=audio 0 ")
            && l.split(' ').skip(3).any(|pt| pt == "0")
    })
}

pub fn sdp_type() -> MediaType {
    MediaType::new("application", "sdp").expect("valid media type")
}

pub fn status(code: u16) -> StatusCode {
    StatusCode::new(code).expect("valid status code")
}

/// A response to `req` with our To tag and, when given, a Contact.
pub fn response(req: &Request, code: u16, tag: &str, contact: Option<&str>) -> Response {
    let mut r = Response::from_request(req, status(code));
    if code != 100 {
        let _ = r.set_to_tag(tag);
    }
    if let Some(c) = contact {
        r.headers.push(HeaderName::Contact, format!("<{c}>"));
    }
    r
}

pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// A random token for tags and Call-IDs.
pub fn token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// to `dir` (certificate and key); returns the TLS server config and the
/// certificate file path.
pub fn self_signed(dir: &Path) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("certificate generation");
    let cert_path = dir.join("vaxel-sip-answer-cert.pem");
    let key_path = dir.join("vaxel-sip-answer-key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).expect("writing the certificate");
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("writing the key");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let config = vaxel_transport::tls::server_config(vec![cert], key).expect("TLS config");
    (config, cert_path)
}
