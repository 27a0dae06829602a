//! What the server transport writes into a request it received before passing
//! it up: `received` and `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581 §4),
//! so that responses find their way back through NATs.

use std::net::{IpAddr, SocketAddr};

use bytestring::ByteString;
use vaxel_sip::msg::{HeaderName, Headers, Host, Request, Via};

/// Stamps the top Via of `request`, received from `source`:
///
/// - `received=<source IP>` when the sent-by host is not that IP (§18.2.1), or
///   when `rport` is to be filled in (RFC 3581 §4 says to add it then in any case);
/// - `rport=<source port>` when the request carries an `rport` without value.
///
/// Only the first value of the first Via line changes; other Via values and
/// the order of header lines stay as received. Returns whether anything
/// changed. A missing or unreadable top Via is left alone (validation rejects
/// such requests before this is called).
pub fn stamp_received(request: &mut Request, source: SocketAddr) -> bool {
    let Some(line) = request.headers.get(&HeaderName::Via).cloned() else {
        return false;
    };
    // Split the first Via line into its comma-separated values with the
    // parser's own (quote-aware) splitting.
    let mut one = Headers::new();
    one.push(HeaderName::Via, line);
    let mut values: Vec<ByteString> = one.values(&HeaderName::Via).collect();
    let Some(first) = values.first() else {
        return false;
    };
    let Ok(mut via) = Via::parse(first) else {
        return false;
    };
    let src = source.ip();
    let wants_rport = via.has_rport() && via.rport().is_none();
    let host_differs = host_ip(&via.host) != Some(src);
    if !host_differs && !wants_rport {
        return false;
    }
    // RFC 5118 §4.5: an IPv6 `received` is written without brackets.
    via.params.set("received", Some(&src.to_string()));
    if wants_rport {
        via.params.set("rport", Some(&source.port().to_string()));
    }
    values[0] = ByteString::from(via.to_string());
    let rewritten = values
        .iter()
        .map(|v| &**v)
        .collect::<Vec<&str>>()
        .join(", ");

    let mut out = Headers::with_capacity(request.headers.len());
    let mut done = false;
    for h in &request.headers {
        if !done && h.name == HeaderName::Via {
            done = true;
            out.push(HeaderName::Via, rewritten.clone());
        } else {
            out.push(h.name.clone(), h.value.clone());
        }
    }
    request.headers = out;
    true
}

fn host_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use vaxel_sip::msg::{self, Message};

    fn request(vias: &str) -> Request {
        let raw = format!(
            "OPTIONS sip:b@example.com SIP/2.0\r\n{vias}Max-Forwards: 70\r\n\
             To: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\n\
             Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        match msg::parse(Bytes::from(raw)).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn top(r: &Request) -> Via {
        r.headers.top_via().unwrap()
    }

    #[test]
    fn received_added_when_host_differs() {
        let mut r = request("Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1\r\n");
        assert!(stamp_received(&mut r, "192.0.2.4:5062".parse().unwrap()));
        let v = top(&r);
        assert_eq!(v.received(), Some(Host::V4([192, 0, 2, 4].into())));
        assert!(!v.has_rport());
        assert_eq!(v.branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn nothing_when_sent_by_matches() {
        let mut r = request("Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1\r\n");
        assert!(!stamp_received(&mut r, "192.0.2.4:5060".parse().unwrap()));
        assert!(top(&r).received().is_none());
    }

    #[test]
    fn rport_filled_and_received_forced() {
        // RFC 3581 §4 example: received is added even though the host matches.
        let mut r = request(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1, SIP/2.0/UDP p.example.com;branch=z9hG4bK0\r\n\
             Via: SIP/2.0/TCP q.example.com;branch=z9hG4bKq\r\n",
        );
        assert!(stamp_received(&mut r, "10.0.0.1:9988".parse().unwrap()));
        let v = top(&r);
        assert_eq!(v.rport(), Some(9988));
        assert_eq!(v.received(), Some(Host::V4([10, 0, 0, 1].into())));
        // The other Via values and lines are untouched and in order.
        let all: Vec<ByteString> = r.headers.values(&HeaderName::Via).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(&*all[1], "SIP/2.0/UDP p.example.com;branch=z9hG4bK0");
        assert_eq!(&*all[2], "SIP/2.0/TCP q.example.com;branch=z9hG4bKq");
        assert_eq!(r.headers.count(&HeaderName::Via), 2);
        // A filled rport is not touched again.
        assert!(!stamp_received(&mut r, "10.0.0.1:9988".parse().unwrap()));
    }

    #[test]
    fn ipv6_received_has_no_brackets() {
        let mut r = request("Via: SIP/2.0/UDP [2001:db8::9];rport;branch=z9hG4bK1\r\n");
        assert!(stamp_received(
            &mut r,
            "[2001:db8::10]:5070".parse().unwrap()
        ));
        let line = r.headers.get(&HeaderName::Via).unwrap();
        assert!(line.contains("received=2001:db8::10"), "{line}");
        assert!(line.contains("rport=5070"), "{line}");
    }
}
