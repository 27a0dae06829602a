//! Fuzzes `msg::parse`: it must never panic, and whatever it accepts must
//! print to bytes that parse back to the same message; the 400 builder must
//! never panic on what it rejects.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vaxel_sip::msg::{self, HeaderName};

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    match msg::parse(raw) {
        Ok(m) => {
            let printed = m.to_bytes();
            let again = msg::parse(printed).expect("a parsed message reprints to a valid one");
            if m.validate().is_ok() {
                let strip = |m: &msg::Message| {
                    let mut m = m.clone();
                    m.headers_mut().remove(&HeaderName::ContentLength);
                    m
                };
                assert_eq!(strip(&again), strip(&m));
            }
            let h = m.headers();
            let _ = (h.vias(), h.from(), h.to(), h.cseq(), h.contacts(), h.routes());
            let _ = (h.event(), h.date(), h.replaces(), h.reasons(), h.session_expires());
            if let Err(e) = m.validate() {
                let _ = msg::bad_request_reply(data, &e);
            }
        }
        Err(e) => {
            if let Some(r) = msg::bad_request_reply(data, &e) {
                let _ = r.to_bytes();
            }
        }
    }
});
