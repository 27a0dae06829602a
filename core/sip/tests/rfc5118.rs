//! RFC 5118 IPv6 torture cases, written from the rules of RFC 5118 §4 as files
//! under `tests/data/rfc5118/` with their verdicts in `VERDICTS.tsv`.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use bytes::Bytes;
use vaxel_sip::msg::{self, Host, Message};

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc5118"))
}

fn load(name: &str) -> Bytes {
    Bytes::from(std::fs::read(dir().join(name)).unwrap())
}

fn v6(s: &str) -> Host {
    Host::V6(s.parse::<Ipv6Addr>().unwrap())
}

#[test]
fn rfc5118_verdicts() {
    let text = std::fs::read_to_string(dir().join("VERDICTS.tsv")).unwrap();
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let raw = load(f[0]);
        let r = msg::parse(raw.clone());
        match f[1] {
            "parse" => {
                let m = r.unwrap_or_else(|e| panic!("{}: {e}", f[0]));
                m.validate().unwrap();
                // Every typed view of the IPv6 headers works and prints back.
                let h = m.headers();
                for via in h.vias().unwrap() {
                    assert!(msg::Via::parse(&via.to_string().into()).is_ok(), "{}", f[0]);
                }
                for c in h.contacts().unwrap() {
                    assert!(
                        msg::Contact::parse(&c.to_string().into()).is_ok(),
                        "{}",
                        f[0]
                    );
                }
                assert_eq!(msg::parse(m.to_bytes()).unwrap(), m, "{}", f[0]);
            }
            "reject" => {
                let e = r
                    .err()
                    .unwrap_or_else(|| panic!("{} must be rejected", f[0]));
                // A 400 goes back along the Via; with the Via itself broken there
                // is nowhere to send it.
                let answerable = !f[0].contains("bad_via");
                assert_eq!(
                    msg::bad_request_reply(&raw, &e).is_some(),
                    answerable,
                    "{}: {e}",
                    f[0]
                );
            }
            v => panic!("bad verdict {v}"),
        }
        n += 1;
    }
    println!("RFC 5118: {n}/{n} cases as expected");
    assert_eq!(n, 15);
}

fn request(name: &str) -> msg::Request {
    match msg::parse(load(name)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

#[test]
fn rfc5118_details() {
    let r = request("4.1_ipv6_good.sip");
    assert_eq!(r.uri.as_sip().unwrap().host, v6("2001:db8::10"));
    assert_eq!(r.headers.top_via().unwrap().host, v6("2001:db8::9:1"));
    let c = r.headers.contacts().unwrap();
    assert_eq!(
        c[0].address().unwrap().uri.as_sip().unwrap().host,
        v6("2001:db8::1")
    );

    let u = request("4.3_port_ambiguous.sip").uri;
    assert_eq!(u.as_sip().unwrap().host, v6("2001:db8::10:5070"));
    assert_eq!(u.as_sip().unwrap().port, None);
    let u = request("4.4_port_unambiguous.sip").uri;
    assert_eq!(u.as_sip().unwrap().host, v6("2001:db8::10"));
    assert_eq!(u.as_sip().unwrap().port, Some(5070));
    assert!(
        !request("4.3_port_ambiguous.sip")
            .uri
            .equivalent(&request("4.4_port_unambiguous.sip").uri)
    );

    for f in [
        "4.5a_via_received_no_delim.sip",
        "4.5b_via_received_with_delim.sip",
    ] {
        let via = request(f).headers.top_via().unwrap();
        assert_eq!(via.received(), Some(v6("2001:db8::9:255")), "{f}");
    }
    let via = request("4.5a_via_received_no_delim.sip")
        .headers
        .top_via()
        .unwrap();
    assert_eq!(via.port, Some(6050));

    let r = request("4.7_multiple_ip_in_headers.sip");
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias[1].host, Host::V4([192, 0, 2, 1].into()));
    assert_eq!(vias[2].received(), Some(Host::V4([192, 0, 2, 200].into())));
    assert_eq!(r.headers.contacts().unwrap().len(), 2);

    let r = request("4.9_ipv4_mapped.sip");
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.host, v6("::ffff:192.0.2.10"));
    assert_eq!(
        via.to_string(),
        "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19"
    );

    let r = request("4.10a_abnf_two_colons.sip");
    assert_eq!(r.uri.as_sip().unwrap().host, v6("2001:db8::c000:201"));
    // Addresses compare by value, not by text (RFC 5954 §4).
    let a: msg::Uri = "sip:user@[2001:db8::192.0.2.1]".parse().unwrap();
    let b: msg::Uri = "sip:user@[2001:DB8:0:0:0:0:C000:201]".parse().unwrap();
    assert!(a.equivalent(&b));
}
