//! SDP (RFC 4566) as SIP devices really send it, and offer/answer (RFC 3264) on top.
//!
//! # Why our own parser
//! rtc-sdp implements the strict RFC 8866 grammar for WebRTC: it rejects a body without
//! `t=`, lines out of the prescribed order (`a=` before `c=` in a media section), or an
//! `o=` line with missing fields. Desk phones, gateways and old PBXs send exactly such
//! bodies, and failing the call over them is worse than reading them. So [`parse`] is
//! line-oriented and order-agnostic: it reads what it understands, keeps unknown
//! attributes, skips lines it cannot make sense of, and fails only when a media line
//! itself is unusable or the body is hostile (too big, too many lines). What we *print*
//! is strict RFC 4566 and is checked against rtc-sdp in the tests.

pub mod negotiate;

use std::fmt::Write as _;
use std::net::IpAddr;
use thiserror::Error;

pub use negotiate::{
    Direction, MediaPolicy, NegotiatedAudio, NegotiationError, OfferAnswer, SrtpParams, SrtpPolicy,
    TelephoneEvent,
};

/// Largest SDP body we read; anything bigger is hostile (a phone's offer is < 2 KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most lines we read.
pub const MAX_SDP_LINES: usize = 2048;
/// Most media sections we read.
pub const MAX_MEDIA_SECTIONS: usize = 64;
/// Most formats on one `m=` line.
pub const MAX_FORMATS: usize = 128;

/// Why an SDP body could not be read. All are faults of the sender; SIP answers 400
/// (or 488 for a body it can read but not accept, see [`NegotiationError`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The body exceeds [`MAX_SDP_BYTES`], [`MAX_SDP_LINES`], [`MAX_MEDIA_SECTIONS`] or [`MAX_FORMATS`].
    #[error("SDP too large: {0}")]
    TooLarge(&'static str),
    /// The body is not UTF-8 text.
    #[error("SDP is not text")]
    NotText,
    /// An `m=` line we cannot read (line number, 1-based).
    #[error("malformed m= line {line}: {reason}")]
    BadMediaLine {
        /// Line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// An `a=` attribute: `name` or `name:value` (RFC 4566 §5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name.
    pub name: String,
    /// Value after the first `:`, if any.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=name`).
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.into(),
            value: None,
        }
    }

    /// A value attribute (`a=name:value`).
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// The `o=` line (RFC 4566 §5.2). Missing fields read as defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Username (`-` if none).
    pub username: String,
    /// Session id, kept as text: devices send anything from 0 to 20+ digits.
    pub session_id: String,
    /// Session version; 0 if absent or not a number.
    pub session_version: u64,
    /// Unicast address of the originator as written.
    pub address: String,
}

/// A `c=` line (RFC 4566 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The address as written (no TTL or count).
    pub address: String,
}

impl Connection {
    /// The address as an IP, if it is one (hostnames give `None`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// Whether this is the RFC 2543 hold address `0.0.0.0` (RFC 3264 §8.4 still honours it).
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// One media section (`m=` and what follows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport port; 0 means the stream is rejected or disabled (RFC 3264 §5.1).
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub protocol: String,
    /// Formats: payload type numbers for RTP.
    pub formats: Vec<String>,
    /// Media-level `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines, verbatim.
    pub bandwidth: Vec<String>,
    /// Media-level attributes in order.
    pub attributes: Vec<Attribute>,
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (`-` if absent).
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines, verbatim.
    pub bandwidth: Vec<String>,
    /// Session-level attributes.
    pub attributes: Vec<Attribute>,
    /// Media sections in order.
    pub media: Vec<MediaDescription>,
}

/// An `a=rtpmap` entry (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written.
    pub encoding: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels, if given.
    pub channels: Option<u8>,
}

fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

impl MediaDescription {
    /// The first attribute called `name` (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attr(&self.attributes, name)
    }

    /// Values of every attribute called `name`.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
            .filter_map(|a| a.value.as_deref())
    }

    /// Payload types on the `m=` line that are numbers in 0..=127.
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
            .collect()
    }

    /// The `a=rtpmap` for `pt`, if any (malformed rtpmaps are ignored).
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.attribute_values("rtpmap").find_map(|v| {
            let (num, rest) = v.trim().split_once(char::is_whitespace)?;
            if num.parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = rest.trim().split('/');
            let encoding = parts.next()?.trim().to_string();
            let clock_rate = parts.next()?.trim().parse().ok()?;
            let channels = parts.next().and_then(|c| c.trim().parse().ok());
            Some(RtpMap {
                payload_type: pt,
                encoding,
                clock_rate,
                channels,
            })
        })
    }

    /// The `a=fmtp` parameters for `pt`, if any.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attribute_values("fmtp").find_map(|v| {
            let (num, rest) = v.trim().split_once(char::is_whitespace)?;
            (num.parse::<u8>().ok()? == pt).then_some(rest.trim())
        })
    }

    /// `a=ptime` in milliseconds (fractional values are rounded down).
    pub fn ptime(&self) -> Option<u32> {
        let v = self.attribute("ptime")?.value.as_deref()?;
        let v = v.trim().split('.').next()?;
        v.parse().ok().filter(|p| (1..=1000).contains(p))
    }
}

impl SessionDescription {
    /// The first session-level attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attr(&self.attributes, name)
    }
}

/// Splits SDP text into lines, accepting CRLF, LF or bare CR (RFC 4566 §5 asks for CRLF;
/// §5 also says parsers should accept LF).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// Parses an SDP body leniently (see the module documentation for what is tolerated).
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge("body bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut sd = SessionDescription {
        origin: Origin {
            username: "-".into(),
            session_id: "0".into(),
            session_version: 0,
            address: "0.0.0.0".into(),
        },
        session_name: "-".into(),
        connection: None,
        bandwidth: Vec::new(),
        attributes: Vec::new(),
        media: Vec::new(),
    };
    for (index, line) in lines(text).enumerate() {
        if index >= MAX_SDP_LINES {
            return Err(SdpError::TooLarge("lines"));
        }
        let lineno = index + 1;
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' {
            continue; // not a type=value line: skip it
        }
        let value = line[2..].trim();
        match bytes[0] {
            b'o' => {
                let f: Vec<&str> = value.split_ascii_whitespace().collect();
                if let Some(u) = f.first() {
                    sd.origin.username = (*u).into();
                }
                if let Some(id) = f.get(1) {
                    sd.origin.session_id = (*id).into();
                }
                sd.origin.session_version = f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
                if let Some(a) = f.get(5).or(f.last().filter(|_| f.len() > 3)) {
                    sd.origin.address = (*a).into();
                }
            }
            b's' => {
                sd.session_name = if value.is_empty() {
                    "-".into()
                } else {
                    value.into()
                }
            }
            b'c' => {
                let f: Vec<&str> = value.split_ascii_whitespace().collect();
                // "IN IP4 addr[/ttl[/n]]"; some devices omit "IN" or the address type.
                let Some(addr) = f.last() else { continue };
                let address = addr.split('/').next().unwrap_or(addr).to_string();
                let c = Connection { address };
                match sd.media.last_mut() {
                    Some(m) => m.connection = Some(c),
                    None => sd.connection = Some(c),
                }
            }
            b'b' => match sd.media.last_mut() {
                Some(m) => m.bandwidth.push(value.into()),
                None => sd.bandwidth.push(value.into()),
            },
            b'a' => {
                let attr = match value.split_once(':') {
                    Some((n, v)) => Attribute {
                        name: n.trim().into(),
                        value: Some(v.trim().into()),
                    },
                    None => Attribute::flag(value),
                };
                match sd.media.last_mut() {
                    Some(m) => m.attributes.push(attr),
                    None => sd.attributes.push(attr),
                }
            }
            b'm' => {
                if sd.media.len() >= MAX_MEDIA_SECTIONS {
                    return Err(SdpError::TooLarge("media sections"));
                }
                let mut f = value.split_ascii_whitespace();
                let bad = |reason| SdpError::BadMediaLine {
                    line: lineno,
                    reason,
                };
                let kind = f.next().ok_or(bad("no media type"))?.to_ascii_lowercase();
                let port_text = f.next().ok_or(bad("no port"))?;
                let port = port_text
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(bad("bad port"))?;
                let protocol = f.next().ok_or(bad("no protocol"))?.to_string();
                let formats: Vec<String> = f.map(str::to_string).collect();
                if formats.len() > MAX_FORMATS {
                    return Err(SdpError::TooLarge("formats"));
                }
                sd.media.push(MediaDescription {
                    kind,
                    port,
                    protocol,
                    formats,
                    connection: None,
                    bandwidth: Vec::new(),
                    attributes: Vec::new(),
                });
            }
            // v=, t=, r=, z=, k=, i=, u=, e=, p= carry nothing offer/answer needs.
            _ => {}
        }
    }
    Ok(sd)
}

fn addr_type(address: &str) -> &'static str {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => "IP6",
        _ => "IP4",
    }
}

impl std::fmt::Display for SessionDescription {
    /// Prints strict RFC 4566 SDP with CRLF line ends, in the prescribed line order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(512);
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            addr_type(&o.address),
            o.address,
            self.session_name
        );
        if let Some(c) = &self.connection {
            let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c.address), c.address);
        }
        for b in &self.bandwidth {
            let _ = write!(s, "b={b}\r\n");
        }
        s.push_str("t=0 0\r\n");
        write_attrs(&mut s, &self.attributes);
        for m in &self.media {
            let _ = write!(s, "m={} {} {}", m.kind, m.port, m.protocol);
            for fmt in &m.formats {
                let _ = write!(s, " {fmt}");
            }
            s.push_str("\r\n");
            if let Some(c) = &m.connection {
                let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c.address), c.address);
            }
            for b in &m.bandwidth {
                let _ = write!(s, "b={b}\r\n");
            }
            write_attrs(&mut s, &m.attributes);
        }
        f.write_str(&s)
    }
}

fn write_attrs(s: &mut String, attrs: &[Attribute]) {
    for a in attrs {
        match &a.value {
            Some(v) => {
                let _ = write!(s, "a={}:{}\r\n", a.name, v);
            }
            None => {
                let _ = write!(s, "a={}\r\n", a.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOPPY: &str = "v=0\no=- 0 IN IP4 10.0.0.5\ns=\nc=IN IP4 10.0.0.5\nm=audio 4000 RTP/AVP 0 8 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n\na=ptime:20\ngarbage line\na=sendrecv\n";

    #[test]
    fn reads_sloppy_device_sdp() {
        let sd = parse(SLOPPY.as_bytes()).unwrap();
        assert_eq!(sd.origin.session_version, 0);
        assert_eq!(sd.connection.as_ref().unwrap().address, "10.0.0.5");
        let m = &sd.media[0];
        assert_eq!(m.port, 4000);
        assert_eq!(m.payload_types(), vec![0, 8, 96]);
        assert_eq!(m.rtpmap(96).unwrap().encoding, "telephone-event");
        assert_eq!(m.fmtp(96), Some("0-15"));
        assert_eq!(m.ptime(), Some(20));
        assert!(m.attribute("sendrecv").is_some());
    }

    #[test]
    fn strict_parser_rejects_what_we_accept_and_accepts_what_we_print() {
        // rtc-sdp refuses the device's body (no t=), which is why we parse ourselves.
        let mut strict = std::io::Cursor::new(SLOPPY.replace('\n', "\r\n"));
        assert!(rtc_sdp::description::session::SessionDescription::unmarshal(&mut strict).is_err());
        // But what we print is strict SDP.
        let printed = parse(SLOPPY.as_bytes()).unwrap().to_string();
        let mut c = std::io::Cursor::new(printed.clone());
        let strict = rtc_sdp::description::session::SessionDescription::unmarshal(&mut c)
            .unwrap_or_else(|e| panic!("{e}: {printed}"));
        assert_eq!(strict.media_descriptions.len(), 1);
        // And printing is stable.
        assert_eq!(parse(printed.as_bytes()).unwrap().to_string(), printed);
    }

    #[test]
    fn hostile_bodies_are_typed_errors() {
        assert_eq!(
            parse(&vec![b'a'; MAX_SDP_BYTES + 1]),
            Err(SdpError::TooLarge("body bytes"))
        );
        assert_eq!(parse(&[0xff, 0xfe, 0x00]), Err(SdpError::NotText));
        let many = "m=audio 1 RTP/AVP 0\n".repeat(MAX_MEDIA_SECTIONS + 1);
        assert!(matches!(parse(many.as_bytes()), Err(SdpError::TooLarge(_))));
        let lines = "a=x\n".repeat(MAX_SDP_LINES + 1);
        assert!(matches!(
            parse(lines.as_bytes()),
            Err(SdpError::TooLarge(_))
        ));
        assert!(matches!(
            parse(b"m=audio 99999 RTP/AVP 0"),
            Err(SdpError::BadMediaLine { .. })
        ));
        assert!(matches!(
            parse(b"m=audio"),
            Err(SdpError::BadMediaLine { .. })
        ));
        // Odd but harmless lines are skipped.
        let sd = parse(
            b"=\nx\na\no=\nc=\nm=audio 5 RTP/AVP\na=rtpmap:\na=rtpmap:96\na=fmtp\na=ptime:abc",
        )
        .unwrap();
        let m = &sd.media[0];
        assert_eq!(m.rtpmap(96), None);
        assert_eq!(m.ptime(), None);
        assert!(m.payload_types().is_empty());
    }

    #[test]
    fn never_panics_on_byte_soup() {
        let base = SLOPPY.as_bytes();
        let mut state = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut b = base.to_vec();
            for _ in 0..8 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (state >> 8) as usize % b.len();
                b[i] = (state >> 24) as u8;
            }
            let _ = parse(&b).map(|sd| sd.to_string());
        }
    }
}
