//! RFC 4475 torture tests: every message of the shared corpus, byte-exact,
//! against the verdicts of `VERDICTS.tsv`, and the 400 reply each rejected
//! request gets where its headers allow one.

use std::path::PathBuf;

use bytes::Bytes;
use vaxel_sip::msg::{self, ErrorKind, HeaderName, Message, StatusCode, bad_request_reply};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("VAXEL_SHARED_DIR") {
        Some(d) => PathBuf::from(d).join("testdata/rfc4475"),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/testdata/rfc4475"
        )),
    }
}

fn load(name: &str) -> Bytes {
    let p = corpus_dir().join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn verdicts() -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(corpus_dir().join("VERDICTS.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2] == "parse")
        })
        .collect()
}

/// Rejected requests whose Via, From, To, Call-ID and CSeq are intact, so a
/// 400 (505 for the version) can be built; the others cannot be answered.
const ANSWERABLE: &[&str] = &[
    "TC_CLERR_I.dat",
    "TC_NCL_I.dat",
    "TC_LTGTRURI_I.dat",
    "TC_LWSRURI_I.dat",
    "TC_LWSSTART_V.dat",
    "TC_TRWS_I.dat",
    "TC_ESCRURI_V.dat",
    "TC_BADDATE_V.dat",
    "TC_REGBADCT_I.dat",
    "TC_BADVERS_V.dat",
    "TC_MISMATCH01_V.dat",
    "TC_MISMATCH02_V.dat",
];

#[test]
fn rfc4475_verdicts() {
    let v = verdicts();
    assert_eq!(v.len(), 50, "VERDICTS.tsv lists 50 messages");
    let mut score = 0;
    let mut failures = Vec::new();
    for (file, section, should_parse) in &v {
        let raw = load(file);
        let result = msg::parse(raw.clone());
        let ok = result.is_ok() == *should_parse;
        if ok {
            score += 1;
        } else {
            failures.push(format!(
                "{file} ({section}): expected {}, got {:?}",
                if *should_parse { "parse" } else { "reject" },
                result.as_ref().err().map(|e| e.to_string())
            ));
        }
        if let Err(e) = &result {
            let reply = bad_request_reply(&raw, e);
            let expect = ANSWERABLE.contains(&file.as_str());
            assert_eq!(reply.is_some(), expect, "{file}: reply {reply:?} for {e}");
            if let Some(r) = reply {
                let expected = if e.kind() == ErrorKind::Version {
                    StatusCode::VERSION_NOT_SUPPORTED
                } else {
                    StatusCode::BAD_REQUEST
                };
                assert_eq!(r.status, expected, "{file}");
                println!("{file}: {} {}", r.status, r.reason);
                if e.kind() == ErrorKind::Version {
                    // Its Via carries the peer's version (SIP/7.0): not ours to parse.
                    continue;
                }
                // The reply itself is a well-formed response with a To tag.
                let back = msg::parse(r.to_bytes()).unwrap_or_else(|e| panic!("{file}: {e}\n{r}"));
                back.validate().unwrap();
                assert!(back.headers().to().unwrap().tag().is_some());
            }
        }
    }
    println!("RFC 4475 score: {score}/{}", v.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn request(file: &str) -> msg::Request {
    match msg::parse(load(file)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{file} is a request"),
    }
}

#[test]
fn rfc4475_details_of_valid_messages() {
    // 3.1.1.1: folding, odd case, escaped quotes, whitespace everywhere.
    let r = request("TC_WSINV.dat");
    let h = &r.headers;
    assert_eq!(h.to().unwrap().tag(), Some("1918181833n"));
    let from = h.from().unwrap();
    assert_eq!(from.display_name().as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    assert_eq!(h.cseq().unwrap().seq, 9);
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let c = h.contacts().unwrap();
    assert_eq!(c[0].q(), Some(330));
    assert_eq!(
        c[0].address().unwrap().display_name().as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(
        h.get(&HeaderName::new("NewFangledHeader").unwrap())
            .unwrap(),
        "newfangled value continued newfangled value"
    );
    assert_eq!(h.get(&HeaderName::Subject).unwrap(), "");
    assert_eq!(r.body.len(), 150);
    assert!(h.routes().unwrap()[0].uri.as_sip().unwrap().lr());

    // 3.1.1.2: the full token character set.
    let r = request("TC_INTMETH.dat");
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    let u = r.uri.as_sip().unwrap();
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.headers.to().unwrap().display_name().as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );

    // 3.1.1.3 / 3.1.1.4: escapes.
    let r = request("TC_ESC01_V.dat");
    assert_eq!(
        &*r.uri.as_sip().unwrap().user_decoded().unwrap(),
        b"sips:user@example.com"
    );
    let r = request("TC_ESCNULL_V.dat");
    let c = r.headers.contacts().unwrap();
    let user = c[1]
        .address()
        .unwrap()
        .uri
        .as_sip()
        .unwrap()
        .user_decoded()
        .unwrap()
        .into_owned();
    assert_eq!(user, b"\0\0");

    // 3.1.1.5: escaped method and an unknown header spelled like Contact.
    let r = request("TC_ESC02_V.dat");
    assert_eq!(r.headers.contacts().unwrap().len(), 2);
    assert!(
        r.headers
            .get(&HeaderName::new("C%6Fntact").unwrap())
            .is_some()
    );

    // 3.1.1.7: very long values and many Vias.
    let r = request("TC_LONGREQ_V.dat");
    assert_eq!(r.headers.vias().unwrap().len(), 34);

    // 3.1.1.8: only the first request (by Content-Length) counts.
    let r = request("TC_DBLREQ.dat");
    assert_eq!(r.method, msg::Method::Register);
    assert!(r.body.is_empty());

    // 3.1.1.9: semicolon in the user part.
    let r = request("TC_SEMIURI_V.dat");
    assert_eq!(
        r.uri.as_sip().unwrap().user.as_deref(),
        Some("user;par=u%40example.net")
    );
    assert!(r.uri.as_sip().unwrap().params.is_empty());

    // 3.1.1.11: binary body kept byte-exact.
    let raw = load("TC_MPART01.dat");
    let r = request("TC_MPART01.dat");
    assert!(raw.ends_with(&r.body));
    assert_eq!(
        r.body.len() as u32,
        r.headers.content_length().unwrap().unwrap()
    );

    // 3.3.1, 3.3.8, 3.3.9: parse, but validation asks for a 400.
    for (file, kind) in [
        ("TC_INSUF_I.dat", ErrorKind::MissingHeader),
        ("TC_MULTI01_I.dat", ErrorKind::DuplicateHeader),
        ("TC_MCL01_I.dat", ErrorKind::ContentLength),
    ] {
        let raw = load(file);
        let m = msg::parse(raw.clone()).unwrap();
        let e = m.validate().unwrap_err();
        assert_eq!(e.kind(), kind, "{file}");
        let reply = bad_request_reply(&raw, &e);
        assert_eq!(reply.is_some(), file != "TC_INSUF_I.dat", "{file}");
    }
    // 3.4.1: RFC 2543 request without Max-Forwards validates.
    let m = msg::parse(load("TC_INV2543_I.dat")).unwrap();
    m.validate().unwrap();

    // Every parsed message prints to something that parses to the same thing.
    for (file, _, ok) in verdicts() {
        if !ok {
            continue;
        }
        let m = msg::parse(load(&file)).unwrap();
        let printed = m.to_bytes();
        let again = msg::parse(printed.clone())
            .unwrap_or_else(|e| panic!("{file}: {e}\n{}", String::from_utf8_lossy(&printed)));
        if file != "TC_MCL01_I.dat" {
            assert_eq!(
                without_content_length(&again),
                without_content_length(&m),
                "{file}"
            );
        }
        assert_eq!(
            msg::parse(again.to_bytes()).unwrap(),
            again,
            "{file}: printing is idempotent"
        );
    }
}

/// The message without its Content-Length headers (printing adds one when the
/// received message had none, RFC 4475 §3.4.1).
fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers_mut().remove(&HeaderName::ContentLength);
    m
}
