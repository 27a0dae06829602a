//! Small bodies the usages speak: `message/sipfrag` (RFC 3420, for REFER
//! progress, RFC 3515 §2.4.5), `application/dtmf-relay` (the de-facto INFO
//! DTMF format), SDP direction (RFC 3264 §8.4 hold), PIDF basic status
//! (RFC 3863, RFC 3856) with RPID activities (RFC 4480) and dialog-info
//! (RFC 4235).
//!
//! These are deliberately minimal readers and writers of what the usages need,
//! not general XML or SDP parsers; readers never panic on bad input and return
//! `None` for what they cannot read.

use std::fmt::Write as _;

/// A `message/sipfrag` body holding a status line only (RFC 3515 §2.4.5):
/// `SIP/2.0 200 OK`.
pub fn sipfrag(status: u16, reason: &str) -> String {
    format!("SIP/2.0 {status} {reason}\r\n")
}

/// The status code of a `message/sipfrag` body's first line (RFC 3420).
pub fn parse_sipfrag(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let mut parts = line.split_whitespace();
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

/// An `application/dtmf-relay` body: `Signal=5\r\nDuration=160\r\n`.
pub fn dtmf_relay(digit: char, duration_ms: u32) -> String {
    format!("Signal={digit}\r\nDuration={duration_ms}\r\n")
}

/// Digit and duration (ms, 250 when absent) of an `application/dtmf-relay` body.
pub fn parse_dtmf_relay(body: &[u8]) -> Option<(char, u32)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut digit = None;
    let mut duration = 250;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        if k.trim().eq_ignore_ascii_case("signal") {
            let mut chars = v.chars();
            let c = chars.next()?;
            let c = if chars.next().is_some() {
                // "10"/"11" are used by some phones for * and #.
                match v {
                    "10" => '*',
                    "11" => '#',
                    _ => return None,
                }
            } else {
                c.to_ascii_uppercase()
            };
            if !(c.is_ascii_digit() || matches!(c, '*' | '#' | 'A' | 'B' | 'C' | 'D')) {
                return None;
            }
            digit = Some(c);
        } else if k.trim().eq_ignore_ascii_case("duration") {
            duration = v.parse().ok()?;
        }
    }
    Some((digit?, duration))
}

/// The media direction an SDP body asks for (RFC 3264 §6.1, §8.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `sendrecv` (the default).
    SendRecv,
    /// `sendonly`: the sender puts us on hold.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `inactive`, or a connection address of 0.0.0.0 (RFC 2543 hold).
    Inactive,
}

impl Direction {
    /// Whether an offer with this direction puts its receiver on hold
    /// (RFC 3264 §8.4: sendonly or inactive).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// The direction of the first audio stream of an SDP body (session-level
/// attribute when the media has none); `SendRecv` when nothing says otherwise.
pub fn sdp_direction(sdp: &[u8]) -> Direction {
    let text = String::from_utf8_lossy(sdp);
    let mut session = None;
    let mut media = None;
    let mut in_media = false;
    let mut zero_conn = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            if in_media {
                break;
            }
            in_media = true;
            continue;
        }
        if line == "c=IN IP4 0.0.0.0" {
            zero_conn = true;
        }
        let d = match line {
            "a=sendrecv" => Direction::SendRecv,
            "a=sendonly" => Direction::SendOnly,
            "a=recvonly" => Direction::RecvOnly,
            "a=inactive" => Direction::Inactive,
            _ => continue,
        };
        if in_media {
            media = Some(d);
        } else {
            session = Some(d);
        }
    }
    if zero_conn {
        return Direction::Inactive;
    }
    media.or(session).unwrap_or(Direction::SendRecv)
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Text between the first `<tag ...>` and `</tag>` (namespace prefixes ignored).
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = xml[from..].find('<') {
        let start = from + i + 1;
        let name_end = xml[start..].find(['>', ' ', '/'])? + start;
        let name = &xml[start..name_end];
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag && !name.starts_with('/') {
            let open_end = xml[name_end..].find('>')? + name_end + 1;
            let close = format!("</{name}>");
            let end = xml[open_end..].find(&close)? + open_end;
            return Some(&xml[open_end..end]);
        }
        from = name_end;
    }
    None
}

fn attribute<'a>(xml: &'a str, tag: &str, attr: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = xml[from..].find('<') {
        let start = from + i + 1;
        let end = xml[start..].find('>')? + start;
        let open = &xml[start..end];
        let name = open.split_whitespace().next().unwrap_or("");
        if name.rsplit(':').next() == Some(tag) {
            let key = format!("{attr}=\"");
            let a = open.find(&key)? + key.len();
            let b = open[a..].find('"')? + a;
            return Some(&open[a..b]);
        }
        from = end;
    }
    None
}

/// A presence document (RFC 3863): basic status and an optional note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pidf {
    /// The presentity (`pres:` or `sip:` URI).
    pub entity: String,
    /// `open` (true) or `closed` (false), RFC 3863 §4.1.4.
    pub open: bool,
    /// A free-text note (RFC 3863 §4.1.6).
    pub note: Option<String>,
}

impl Pidf {
    /// The `application/pidf+xml` document with one tuple.
    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\n\
             <tuple id=\"t1\"><status><basic>{}</basic></status>",
            xml_escape(&self.entity),
            if self.open { "open" } else { "closed" }
        );
        if let Some(n) = &self.note {
            let _ = write!(s, "<note>{}</note>", xml_escape(n));
        }
        s.push_str("</tuple>\n</presence>\n");
        s
    }

    /// Reads entity, the first tuple's basic status and the first note.
    pub fn parse(xml: &[u8]) -> Option<Pidf> {
        let xml = std::str::from_utf8(xml).ok()?;
        let entity = xml_unescape(attribute(xml, "presence", "entity")?);
        let basic = element(xml, "basic")?.trim();
        let open = match basic {
            "open" => true,
            "closed" => false,
            _ => return None,
        };
        let note = element(xml, "note").map(|n| xml_unescape(n.trim()));
        Some(Pidf { entity, open, note })
    }
}

/// The activities and their end time in a presence document's person element (RPID,
/// RFC 4480 §3.2), with a note for people: "busy, in a meeting until 14:00".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rpid {
    /// Activity tokens (`busy`, `meeting`, `meal`, `vacation`, `on-the-phone`…, RFC
    /// 4480 §3.2); any other word travels as `<rpid:other>word</rpid:other>` and
    /// comes back as that word.
    pub activities: Vec<String>,
    /// When the activities end (the `until` attribute, an xs:dateTime, RFC 4480 §2).
    pub until: Option<String>,
    /// The person's note (`<dm:note>`, RFC 4479 §3.2).
    pub note: Option<String>,
}

/// The activity elements RFC 4480 §3.2 defines (the rest go in `<rpid:other>`).
const RPID_ACTIVITIES: &[&str] = &[
    "appointment",
    "away",
    "breakfast",
    "busy",
    "dinner",
    "holiday",
    "in-transit",
    "looking-for-work",
    "meal",
    "meeting",
    "on-the-phone",
    "performance",
    "permanent-absence",
    "playing",
    "presentation",
    "shopping",
    "sleeping",
    "spectator",
    "steering",
    "travel",
    "tv",
    "unknown",
    "vacation",
    "working",
    "worship",
];

impl Pidf {
    /// The `application/pidf+xml` document with one tuple and a person element
    /// carrying `rpid` (RFC 4479 data model, RFC 4480 activities).
    pub fn to_xml_with(&self, rpid: &Rpid) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{}\">\n\
             <tuple id=\"t1\"><status><basic>{}</basic></status>",
            xml_escape(&self.entity),
            if self.open { "open" } else { "closed" }
        );
        if let Some(n) = &self.note {
            let _ = write!(s, "<note>{}</note>", xml_escape(n));
        }
        s.push_str("</tuple>\n<dm:person id=\"p1\">");
        if !rpid.activities.is_empty() {
            s.push_str("<rpid:activities");
            if let Some(u) = &rpid.until {
                let _ = write!(s, " until=\"{}\"", xml_escape(u));
            }
            s.push('>');
            for a in &rpid.activities {
                if RPID_ACTIVITIES.contains(&a.as_str()) {
                    let _ = write!(s, "<rpid:{a}/>");
                } else {
                    let _ = write!(s, "<rpid:other>{}</rpid:other>", xml_escape(a));
                }
            }
            s.push_str("</rpid:activities>");
        }
        if let Some(n) = &rpid.note {
            let _ = write!(s, "<dm:note>{}</dm:note>", xml_escape(n));
        }
        s.push_str("</dm:person>\n</presence>\n");
        s
    }
}

impl Rpid {
    /// Reads the first `<activities>` element (any namespace prefix) with its
    /// `until`, and the note of the `<person>` element. `None` when the document
    /// has neither.
    pub fn parse(xml: &[u8]) -> Option<Rpid> {
        let xml = std::str::from_utf8(xml).ok()?;
        let mut r = Rpid::default();
        if let Some(inner) = element(xml, "activities") {
            r.until = attribute(xml, "activities", "until").map(xml_unescape);
            let mut rest = inner;
            while let Some(i) = rest.find('<') {
                let after = &rest[i + 1..];
                let Some(end) = after.find(['>', ' ', '/']) else {
                    break;
                };
                let name = &after[..end];
                if name.starts_with('/') || name.starts_with('!') || name.starts_with('?') {
                    rest = &after[end..];
                    continue;
                }
                let local = name.rsplit(':').next().unwrap_or(name);
                if local == "other" {
                    if let Some(text) = element(&rest[i..], "other") {
                        let t = xml_unescape(text.trim());
                        if !t.is_empty() {
                            r.activities.push(t);
                        }
                    }
                } else if !local.is_empty() {
                    r.activities.push(local.to_owned());
                }
                // Skip this element's content (activity elements are empty but for
                // <other>).
                rest = match after.find('>') {
                    Some(g) if after[..g].ends_with('/') => &after[g + 1..],
                    Some(_) => match after.find(&format!("</{name}>")) {
                        Some(c) => &after[c + name.len() + 3..],
                        None => &after[end..],
                    },
                    None => break,
                };
            }
        }
        if let Some(person) = element(xml, "person") {
            r.note = element(person, "note").map(|n| xml_unescape(n.trim()));
        }
        (r != Rpid::default()).then_some(r)
    }
}

/// Every dialog of a dialog-info document (RFC 4235 §4.1): its id, state and
/// direction (`initiator` or `recipient`, §4.1.2), in document order. A document
/// with no dialogs means the resource is idle.
pub fn dialog_states(xml: &[u8]) -> Option<Vec<(String, DialogInfoState, Option<String>)>> {
    let xml = std::str::from_utf8(xml).ok()?;
    attribute(xml, "dialog-info", "entity")?;
    let mut out = Vec::new();
    let mut rest = xml;
    // Each <dialog ...> element (not <dialog-info>).
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let Some(end) = after.find(['>', ' ', '/', '\n', '\t', '\r']) else {
            break;
        };
        let name = &after[..end];
        if name.rsplit(':').next() != Some("dialog") {
            rest = &after[end..];
            continue;
        }
        let close = format!("</{name}>");
        let body_end = after.find(&close).unwrap_or(after.len());
        let one = &rest[i..i + 1 + body_end];
        let id = attribute(one, "dialog", "id")
            .map(xml_unescape)
            .unwrap_or_default();
        let direction = attribute(one, "dialog", "direction").map(xml_unescape);
        let state = match element(one, "state").map(str::trim) {
            Some("trying" | "proceeding") => DialogInfoState::Trying,
            Some("early") => DialogInfoState::Early,
            Some("confirmed") => DialogInfoState::Confirmed,
            Some("terminated") => DialogInfoState::Terminated,
            _ => {
                rest = &after[end..];
                continue;
            }
        };
        out.push((id, state, direction));
        rest = &after[body_end.min(after.len())..];
    }
    Some(out)
}

/// Dialog states of RFC 4235 §3.7.1.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DialogInfoState {
    /// Request sent or received, no response with tag yet.
    Trying,
    /// Provisional response with tag (ringing).
    Early,
    /// 2xx: the call is up.
    Confirmed,
    /// Ended.
    Terminated,
}

impl DialogInfoState {
    /// The state's name in the document (RFC 4235 §4.1.6).
    pub fn as_str(self) -> &'static str {
        match self {
            DialogInfoState::Trying => "trying",
            DialogInfoState::Early => "early",
            DialogInfoState::Confirmed => "confirmed",
            DialogInfoState::Terminated => "terminated",
        }
    }
}

/// A dialog-info document (RFC 4235) with at most one dialog (the busy-lamp
/// field case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogInfo {
    /// The monitored AOR.
    pub entity: String,
    /// The document version (RFC 4235 §4.1.1: increments per NOTIFY).
    pub version: u32,
    /// `full` (true) or `partial`.
    pub full: bool,
    /// The one dialog and its state, `None` for "no dialogs" (idle).
    pub dialog: Option<(String, DialogInfoState)>,
}

impl DialogInfo {
    /// The `application/dialog-info+xml` document.
    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" \
             version=\"{}\" state=\"{}\" entity=\"{}\">\n",
            self.version,
            if self.full { "full" } else { "partial" },
            xml_escape(&self.entity)
        );
        if let Some((id, st)) = &self.dialog {
            let _ = writeln!(
                s,
                "<dialog id=\"{}\"><state>{}</state></dialog>",
                xml_escape(id),
                st.as_str()
            );
        }
        s.push_str("</dialog-info>\n");
        s
    }

    /// Reads the document attributes and the first dialog's id and state.
    pub fn parse(xml: &[u8]) -> Option<DialogInfo> {
        let xml = std::str::from_utf8(xml).ok()?;
        let entity = xml_unescape(attribute(xml, "dialog-info", "entity")?);
        let version = attribute(xml, "dialog-info", "version")?.parse().ok()?;
        let full = attribute(xml, "dialog-info", "state")? == "full";
        let dialog = match attribute(xml, "dialog", "id") {
            None => None,
            Some(id) => {
                let st = match element(xml, "state")?.trim() {
                    "trying" | "proceeding" => DialogInfoState::Trying,
                    "early" => DialogInfoState::Early,
                    "confirmed" => DialogInfoState::Confirmed,
                    "terminated" => DialogInfoState::Terminated,
                    _ => return None,
                };
                Some((xml_unescape(id), st))
            }
        };
        Some(DialogInfo {
            entity,
            version,
            full,
            dialog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_round_trip() {
        assert_eq!(parse_sipfrag(sipfrag(180, "Ringing").as_bytes()), Some(180));
        assert_eq!(parse_sipfrag(b"garbage"), None);
        assert_eq!(parse_sipfrag(b"SIP/2.0 99 x"), None);
    }

    #[test]
    fn dtmf_round_trip() {
        assert_eq!(
            parse_dtmf_relay(dtmf_relay('5', 160).as_bytes()),
            Some(('5', 160))
        );
        assert_eq!(parse_dtmf_relay(b"Signal=11\r\n"), Some(('#', 250)));
        assert_eq!(parse_dtmf_relay(b"Signal=x\r\n"), None);
        assert_eq!(parse_dtmf_relay(b"Duration=10\r\n"), None);
    }

    #[test]
    fn hold_detection() {
        let sdp = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        assert_eq!(sdp_direction(sdp), Direction::SendOnly);
        assert!(sdp_direction(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 1 RTP/AVP 0\r\n").is_hold());
        assert_eq!(
            sdp_direction(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n"),
            Direction::SendRecv
        );
    }

    #[test]
    fn pidf_round_trip() {
        let p = Pidf {
            entity: "sip:alice@example.com".into(),
            open: false,
            note: Some("In a meeting <until 3>".into()),
        };
        assert_eq!(Pidf::parse(p.to_xml().as_bytes()), Some(p));
        assert_eq!(Pidf::parse(b"<presence/>"), None);
    }

    #[test]
    fn dialog_info_round_trip() {
        for st in [
            DialogInfoState::Trying,
            DialogInfoState::Early,
            DialogInfoState::Confirmed,
            DialogInfoState::Terminated,
        ] {
            let d = DialogInfo {
                entity: "sip:bob@example.com".into(),
                version: 3,
                full: true,
                dialog: Some(("d1".into(), st)),
            };
            assert_eq!(DialogInfo::parse(d.to_xml().as_bytes()), Some(d));
        }
        let idle = DialogInfo {
            entity: "sip:bob@example.com".into(),
            version: 0,
            full: true,
            dialog: None,
        };
        assert_eq!(DialogInfo::parse(idle.to_xml().as_bytes()), Some(idle));
    }

    #[test]
    fn rpid_activities_round_trip() {
        let p = Pidf {
            entity: "sip:alice@example.com".into(),
            open: true,
            note: Some("busy".into()),
        };
        let r = Rpid {
            activities: vec!["busy".into(), "lunch & tea".into()],
            until: Some("2026-11-22T14:00:00Z".into()),
            note: Some("In a meeting".into()),
        };
        let xml = p.to_xml_with(&r);
        assert!(
            xml.contains("<rpid:busy/>")
                && xml.contains("<rpid:other>lunch &amp; tea</rpid:other>")
        );
        assert_eq!(Pidf::parse(xml.as_bytes()), Some(p.clone()));
        assert_eq!(Rpid::parse(xml.as_bytes()), Some(r));
        // Another server's spelling: default namespaces, no prefixes.
        let other = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
<tuple id="x"><status><basic>open</basic></status></tuple>
<person xmlns="urn:ietf:params:xml:ns:pidf:data-model"><activities xmlns="urn:ietf:params:xml:ns:pidf:rpid"><meeting></meeting></activities><note>Weekly</note></person></presence>"#;
        assert_eq!(
            Rpid::parse(other),
            Some(Rpid {
                activities: vec!["meeting".into()],
                until: None,
                note: Some("Weekly".into())
            })
        );
        assert_eq!(Rpid::parse(p.to_xml().as_bytes()), None);
    }

    #[test]
    fn every_dialog_of_a_document() {
        let xml = br#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:bob@x">
  <dialog id="a1" call-id="c" direction="recipient">
    <state>confirmed</state>
  </dialog>
  <dialog id="a2" direction="initiator"><state>early</state></dialog>
</dialog-info>"#;
        assert_eq!(
            dialog_states(xml),
            Some(vec![
                (
                    "a1".into(),
                    DialogInfoState::Confirmed,
                    Some("recipient".into())
                ),
                (
                    "a2".into(),
                    DialogInfoState::Early,
                    Some("initiator".into())
                ),
            ])
        );
        let idle = b"<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"0\" state=\"full\" entity=\"sip:bob@x\"/>";
        assert_eq!(dialog_states(idle), Some(vec![]));
        assert_eq!(dialog_states(b"<nope/>"), None);
    }
}
