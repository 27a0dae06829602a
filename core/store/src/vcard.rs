//! vCard import and export for personal contacts: RFC 6350 (4.0), and 3.0 and
//! 2.1 as phones and mail programs still write them.
//!
//! Read: `FN`, `N`, `ORG` (organisation; department), `TITLE`, `TEL` with
//! `TYPE` (`cell`/`mobile`, `work`, `home`; 2.1's bare `;CELL`), `EMAIL`,
//! `IMPP:sip:` and `X-SIP`, `NOTE`, and our `X-VAXEL-FAVOURITE`. Lines are
//! unfolded (RFC 6350 §3.2), text unescaped (`\,` `\;` `\n` `\\`, §3.4),
//! groups (`item1.TEL`) ignored, quoted-printable values of 2.1 decoded in
//! UTF-8 or ISO-8859-1. Other properties are skipped.
//!
//! A file may hold many cards. A broken card (a line without `:`, a missing
//! `END:VCARD`, an unknown `VERSION`, nothing to show) is reported as a
//! [`VcardError`] with its card and line number and skipped; the good cards
//! import anyway.
//!
//! Written: vCard 4.0 with CRLF line ends, lines folded at 75 octets. Export
//! then import gives back the same [`ContactData`].
//!
//! Hand-written rather than a crate: `calcard` (Stalwart) is maintained and
//! complete but brings iCalendar, JSContact and their dependencies for the six
//! properties we use, and neither it nor `vcard_parser` (4.0 only, strict,
//! little activity) reports per-card errors with line numbers while still
//! accepting the rest of a phone's export.

use crate::contact::{self, ContactData, Phone, PhoneKind};
use crate::error::Result;
use crate::{ContactId, Store};

/// A card that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcardError {
    /// 1-based number of the card in the file (counting `BEGIN:VCARD`s);
    /// `None` for a line outside any card.
    pub card: Option<usize>,
    /// 1-based line of the file where the problem is.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for VcardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.card {
            Some(c) => write!(f, "card {c}, line {}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// The result of parsing a vCard file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcardImport {
    /// The good cards, in file order.
    pub contacts: Vec<ContactData>,
    /// The broken ones.
    pub errors: Vec<VcardError>,
}

/// What [`Store::import_vcards`] stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcardReport {
    /// The new contacts, in file order.
    pub imported: Vec<ContactId>,
    /// The cards that were skipped, and why.
    pub errors: Vec<VcardError>,
}

/// One logical (unfolded) line and the physical line it starts on.
struct Line {
    text: String,
    line: usize,
}

/// The part of a content line before the value, uppercased, to spot
/// quoted-printable soft line breaks before parsing.
fn is_quoted_printable(text: &str) -> bool {
    let head = match split_unquoted(text, ':') {
        Some((h, _)) => h,
        None => text,
    };
    head.to_ascii_uppercase().contains("QUOTED-PRINTABLE")
}

fn logical_lines(text: &str) -> Vec<Line> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<Line> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(last) = out.last_mut() {
            // RFC 6350 §3.2: CRLF followed by one space or tab is a fold.
            if raw.starts_with([' ', '\t']) && !last.text.is_empty() {
                last.text.push_str(&raw[1..]);
                continue;
            }
            // vCard 2.1 quoted-printable: '=' at the end is a soft line break.
            if last.text.ends_with('=') && is_quoted_printable(&last.text) {
                last.text.pop();
                last.text.push_str(raw);
                continue;
            }
        }
        out.push(Line {
            text: raw.to_owned(),
            line: i + 1,
        });
    }
    out
}

/// Splits at the first `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return Some((&s[..i], &s[i + c.len_utf8()..])),
            _ => {}
        }
    }
    None
}

/// Splits on every `sep` outside double quotes.
fn split_all_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some((a, b)) = split_unquoted(rest, sep) {
        parts.push(a);
        rest = b;
    }
    parts.push(rest);
    parts
}

/// A parsed content line (RFC 6350 §3.3).
struct Property {
    name: String,
    /// Parameter names uppercased; values with quotes removed, split on ','.
    params: Vec<(String, Vec<String>)>,
    value: String,
}

impl Property {
    fn param(&self, name: &str) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.iter().map(String::as_str))
    }

    fn has_param_value(&self, name: &str, value: &str) -> bool {
        self.param(name).any(|v| v.eq_ignore_ascii_case(value))
    }
}

fn parse_line(text: &str) -> Result<Property, String> {
    let (head, value) = split_unquoted(text, ':')
        .ok_or_else(|| "line has no ':' between name and value".to_owned())?;
    let mut parts = split_all_unquoted(head, ';').into_iter();
    let name = parts.next().unwrap_or("").trim();
    // Drop a group prefix ("item1.TEL").
    let name = name.rsplit_once('.').map_or(name, |(_, n)| n);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("{name:?} is not a property name"));
    }
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = match split_unquoted(p, '=') {
            Some((k, v)) => (k.trim().to_ascii_uppercase(), v),
            // vCard 2.1 bare parameters: `TEL;CELL;VOICE:`, `NOTE;QUOTED-PRINTABLE:`.
            None => {
                let upper = p.trim().to_ascii_uppercase();
                let key = match upper.as_str() {
                    "QUOTED-PRINTABLE" | "BASE64" | "8BIT" | "7BIT" | "B" => "ENCODING",
                    _ => "TYPE",
                };
                (key.to_owned(), p)
            }
        };
        let mut values: Vec<String> = split_all_unquoted(v, ',')
            .into_iter()
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if k == "TYPE" {
            // `TYPE="work,voice"`: a quoted list is still a list of types.
            values = values
                .iter()
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_owned())
                .collect();
        }
        params.push((k, values));
    }
    let mut prop = Property {
        name: name.to_ascii_uppercase(),
        params,
        value: value.to_owned(),
    };
    if prop.has_param_value("ENCODING", "QUOTED-PRINTABLE") {
        let bytes = decode_quoted_printable(&prop.value);
        let latin1 = prop.param("CHARSET").any(|c| {
            c.eq_ignore_ascii_case("ISO-8859-1") || c.eq_ignore_ascii_case("WINDOWS-1252")
        });
        prop.value = if latin1 {
            bytes.iter().map(|&b| b as char).collect()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
    }
    Ok(prop)
}

/// `=XX` to bytes; anything malformed is kept as it is.
fn decode_quoted_printable(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 6350 §3.4 text unescaping.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(c @ ('\\' | ',' | ';' | ':')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Splits a structured value (`N`, `ORG`) on unescaped `;`, then unescapes.
fn components(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ';' => parts.push(unescape(&std::mem::take(&mut cur))),
            c => cur.push(c),
        }
    }
    parts.push(unescape(&cur));
    parts
}

fn phone_kind(p: &Property) -> PhoneKind {
    let has = |t: &str| p.param("TYPE").any(|v| v.eq_ignore_ascii_case(t));
    if has("cell") || has("mobile") || has("iphone") {
        PhoneKind::Mobile
    } else if has("work") {
        PhoneKind::Work
    } else if has("home") {
        PhoneKind::Home
    } else {
        PhoneKind::Other
    }
}

/// A card being read.
struct Card {
    number: usize,
    begin_line: usize,
    data: ContactData,
    formatted_name: Option<String>,
    error: Option<VcardError>,
}

impl Card {
    fn fail(&mut self, line: usize, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(VcardError {
                card: Some(self.number),
                line,
                message: message.into(),
            });
        }
    }

    fn apply(&mut self, p: &Property, line: usize) {
        let d = &mut self.data;
        match p.name.as_str() {
            "VERSION" if !matches!(p.value.trim(), "2.1" | "3.0" | "4.0") => {
                self.fail(line, format!("unsupported VERSION {:?}", p.value.trim()));
            }
            "FN" => self.formatted_name = Some(unescape(&p.value).trim().to_owned()),
            "N" => {
                let c = components(&p.value);
                d.family_name = c.first().cloned().unwrap_or_default().trim().to_owned();
                d.given_name = c.get(1).cloned().unwrap_or_default().trim().to_owned();
            }
            "ORG" => {
                let c = components(&p.value);
                d.organisation = c.first().cloned().unwrap_or_default().trim().to_owned();
                d.department = c[1..]
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            "TITLE" => d.title = unescape(&p.value).trim().to_owned(),
            "TEL" => {
                let v = unescape(&p.value);
                let v = v.trim();
                let v = v.strip_prefix("tel:").unwrap_or(v);
                if !v.is_empty() {
                    d.phones.push(Phone::new(phone_kind(p), v));
                }
            }
            "EMAIL" => {
                let v = unescape(&p.value).trim().to_owned();
                let v = v.strip_prefix("mailto:").map(str::to_owned).unwrap_or(v);
                if !v.is_empty() {
                    d.emails.push(v);
                }
            }
            "IMPP" => {
                // A URI, not text: no unescaping (`;` belongs to SIP URI parameters).
                let v = p.value.trim();
                let lower = v.to_ascii_lowercase();
                if lower.starts_with("sip:") || lower.starts_with("sips:") {
                    d.sip_uris.push(v.to_owned());
                }
            }
            "X-SIP" | "X-SIP-URI" => {
                let v = unescape(&p.value).trim().to_owned();
                if !v.is_empty() {
                    let lower = v.to_ascii_lowercase();
                    d.sip_uris
                        .push(if lower.starts_with("sip:") || lower.starts_with("sips:") {
                            v
                        } else {
                            format!("sip:{v}")
                        });
                }
            }
            "NOTE" => {
                let v = unescape(&p.value);
                let v = v.trim();
                if !v.is_empty() {
                    if !d.note.is_empty() {
                        d.note.push('\n');
                    }
                    d.note.push_str(v);
                }
            }
            "X-VAXEL-FAVOURITE" => {
                d.favourite = matches!(
                    p.value.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes"
                );
            }
            _ => {}
        }
    }

    fn finish(mut self, line: usize) -> Result<ContactData, VcardError> {
        if let Some(fname) = self.formatted_name.take() {
            // Keep FN only when it says more than the names would.
            if fname != self.data.display() {
                self.data.display_name = fname;
            }
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.data.is_empty() {
            return Err(VcardError {
                card: Some(self.number),
                line,
                message: "card has no name, organisation, number, e-mail or SIP URI".into(),
            });
        }
        Ok(self.data)
    }
}

/// Parses every card of a vCard file (any mix of 2.1, 3.0 and 4.0).
pub fn parse(text: &str) -> VcardImport {
    let mut out = VcardImport::default();
    let mut card: Option<Card> = None;
    let mut cards_seen = 0;
    for Line { text, line } in logical_lines(text) {
        if text.trim().is_empty() {
            continue;
        }
        let prop = match parse_line(&text) {
            Ok(p) => p,
            Err(message) => {
                match card.as_mut() {
                    Some(c) => c.fail(line, message),
                    None => out.errors.push(VcardError {
                        card: None,
                        line,
                        message,
                    }),
                }
                continue;
            }
        };
        let value = prop.value.trim();
        match (prop.name.as_str(), card.as_mut()) {
            ("BEGIN", _) if value.eq_ignore_ascii_case("VCARD") => {
                if let Some(open) = card.take() {
                    out.errors.push(VcardError {
                        card: Some(open.number),
                        line: open.begin_line,
                        message: "card has no END:VCARD".into(),
                    });
                }
                cards_seen += 1;
                card = Some(Card {
                    number: cards_seen,
                    begin_line: line,
                    data: ContactData::default(),
                    formatted_name: None,
                    error: None,
                });
            }
            ("END", Some(_)) if value.eq_ignore_ascii_case("VCARD") => {
                if let Some(c) = card.take() {
                    match c.finish(line) {
                        Ok(d) => out.contacts.push(d),
                        Err(e) => out.errors.push(e),
                    }
                }
            }
            (_, Some(c)) => c.apply(&prop, line),
            (_, None) => out.errors.push(VcardError {
                card: None,
                line,
                message: format!("{} outside BEGIN:VCARD … END:VCARD", prop.name),
            }),
        }
    }
    if let Some(open) = card {
        out.errors.push(VcardError {
            card: Some(open.number),
            line: open.begin_line,
            message: "card has no END:VCARD".into(),
        });
    }
    out
}

/// RFC 6350 §3.4 text escaping; CR is dropped, LF becomes `\n`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (RFC 6350 §3.2) with CRLF.
fn push_folded(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// Writes contacts as vCard 4.0.
pub fn export<'a>(contacts: impl IntoIterator<Item = &'a ContactData>) -> String {
    let mut out = String::new();
    for d in contacts {
        let mut lines = vec!["BEGIN:VCARD".to_owned(), "VERSION:4.0".to_owned()];
        lines.push(format!("FN:{}", escape(&d.display())));
        if !d.family_name.is_empty() || !d.given_name.is_empty() {
            lines.push(format!(
                "N:{};{};;;",
                escape(&d.family_name),
                escape(&d.given_name)
            ));
        }
        if !d.organisation.is_empty() || !d.department.is_empty() {
            let mut org = escape(&d.organisation);
            if !d.department.is_empty() {
                org.push(';');
                org.push_str(&escape(&d.department));
            }
            lines.push(format!("ORG:{org}"));
        }
        if !d.title.is_empty() {
            lines.push(format!("TITLE:{}", escape(&d.title)));
        }
        for p in &d.phones {
            let ty = match p.kind {
                PhoneKind::Work => "work,voice",
                PhoneKind::Mobile => "cell",
                PhoneKind::Home => "home,voice",
                PhoneKind::Other => "voice",
            };
            lines.push(format!("TEL;TYPE={ty}:{}", escape(&p.number)));
        }
        for e in &d.emails {
            lines.push(format!("EMAIL:{}", escape(e)));
        }
        for u in &d.sip_uris {
            lines.push(format!("IMPP:{u}"));
        }
        if !d.note.is_empty() {
            lines.push(format!("NOTE:{}", escape(&d.note)));
        }
        if d.favourite {
            lines.push("X-VAXEL-FAVOURITE:TRUE".to_owned());
        }
        lines.push("END:VCARD".to_owned());
        for l in &lines {
            push_folded(&mut out, l);
        }
    }
    out
}

impl Store {
    /// Imports every good card of a vCard file as new contacts, in one
    /// transaction; broken cards are skipped and reported.
    pub fn import_vcards(&mut self, text: &str) -> Result<VcardReport> {
        let parsed = parse(text);
        let now = self.now();
        let tx = self.conn.transaction()?;
        let mut report = VcardReport {
            imported: Vec::with_capacity(parsed.contacts.len()),
            errors: parsed.errors,
        };
        for d in &parsed.contacts {
            report.imported.push(contact::insert(&tx, d, now)?);
        }
        tx.commit()?;
        Ok(report)
    }

    /// Exports all personal contacts as vCard 4.0.
    pub fn export_vcards(&self) -> Result<String> {
        let contacts = self.contacts()?;
        Ok(export(contacts.iter().map(|c| &c.data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_unescapes_and_reads_types() {
        let text = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Anne Sällström\r\nN:Sällström;Anne;;;\r\n\
                    ORG:Acme\\, Inc.;Sales;Nordic\r\nTITLE:Head of\r\n  sales\r\n\
                    TEL;TYPE=\"work,voice\";VALUE=uri:tel:+46-8-123\r\n\
                    item1.TEL;type=CELL:+46 70 123\r\nEMAIL;TYPE=work:anne@acme.example\r\n\
                    IMPP:sip:anne@acme.example;transport=tls\r\nNOTE:line one\\nline two\\; ok\r\n\
                    PHOTO;ENCODING=b;TYPE=JPEG:AAAA\r\nEND:VCARD\r\n";
        let r = parse(text);
        assert_eq!(r.errors, []);
        let d = &r.contacts[0];
        assert_eq!(
            (d.given_name.as_str(), d.family_name.as_str()),
            ("Anne", "Sällström")
        );
        assert_eq!(
            d.display_name, "",
            "FN equal to the names is not kept twice"
        );
        assert_eq!(d.organisation, "Acme, Inc.");
        assert_eq!(d.department, "Sales, Nordic");
        assert_eq!(d.title, "Head of sales");
        assert_eq!(
            d.phones,
            [
                Phone::new(PhoneKind::Work, "+46-8-123"),
                Phone::new(PhoneKind::Mobile, "+46 70 123")
            ]
        );
        assert_eq!(d.emails, ["anne@acme.example"]);
        assert_eq!(d.sip_uris, ["sip:anne@acme.example;transport=tls"]);
        assert_eq!(d.note, "line one\nline two; ok");
    }

    #[test]
    fn reads_vcard_2_1_quoted_printable() {
        let text = "BEGIN:VCARD\nVERSION:2.1\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:S=C3=A4llstr=C3=B6m;Anne\n\
                    FN;CHARSET=ISO-8859-1;QUOTED-PRINTABLE:Anne S=E4llstr=F6m\n\
                    NOTE;ENCODING=QUOTED-PRINTABLE:first=0D=0A=\nsecond\n\
                    TEL;CELL;VOICE:0701234567\nTEL;WORK:08-123\nX-SIP:anne@acme.example\nEND:VCARD\n";
        let r = parse(text);
        assert_eq!(r.errors, []);
        let d = &r.contacts[0];
        assert_eq!(d.family_name, "Sällström");
        assert_eq!(d.display(), "Anne Sällström");
        assert_eq!(d.note, "first\r\nsecond");
        assert_eq!(d.phones[0].kind, PhoneKind::Mobile);
        assert_eq!(d.phones[1].kind, PhoneKind::Work);
        assert_eq!(d.sip_uris, ["sip:anne@acme.example"]);
    }

    #[test]
    fn broken_cards_are_reported_and_good_ones_kept() {
        let text = "BEGIN:VCARD\nVERSION:3.0\nFN:Good One\nEND:VCARD\n\
                    BEGIN:VCARD\nVERSION:3.0\nFN:Bad\nthis line has no colon\nEND:VCARD\n\
                    BEGIN:VCARD\nVERSION:3.0\nNOTE:nothing to show\nEND:VCARD\n\
                    stray line\n\
                    BEGIN:VCARD\nVERSION:9.9\nFN:Future\nEND:VCARD\n\
                    BEGIN:VCARD\nFN:Good Two\nEND:VCARD\n\
                    BEGIN:VCARD\nFN:Unterminated\n";
        let r = parse(text);
        let names: Vec<String> = r.contacts.iter().map(ContactData::display).collect();
        assert_eq!(names, ["Good One", "Good Two"]);
        let where_: Vec<(Option<usize>, usize)> =
            r.errors.iter().map(|e| (e.card, e.line)).collect();
        assert_eq!(
            where_,
            [
                (Some(2), 8),
                (Some(3), 13),
                (None, 14),
                (Some(4), 16),
                (Some(6), 22)
            ],
            "{:#?}",
            r.errors
        );
        assert_eq!(
            r.errors[0].to_string(),
            "card 2, line 8: line has no ':' between name and value"
        );
    }

    #[test]
    fn export_folds_long_lines_and_round_trips() {
        let d = ContactData {
            given_name: "Zoë".into(),
            family_name: "O'Brien; Jr".into(),
            display_name: "Dr Zoë O'Brien".into(),
            organisation: "Ünïcode, Ltd".into(),
            department: "R&D".into(),
            title: "x".repeat(100),
            phones: vec![
                Phone::new(PhoneKind::Home, "+44 20 7946 0000"),
                Phone::new(PhoneKind::Other, "4001"),
            ],
            emails: vec!["zoe@example.org".into(), "z@example.com".into()],
            sip_uris: vec!["sip:zoe@example.org".into()],
            note: "a,b;c\\d\nnext ✓".repeat(10),
            favourite: true,
        };
        let text = export([&d]);
        assert!(text.lines().all(|l| l.len() <= 76), "{text}"); // 75 + the '\r'
        assert!(text.contains("ORG:Ünïcode\\, Ltd;R&D\r\n"));
        let back = parse(&text);
        assert_eq!(back.errors, []);
        assert_eq!(back.contacts, [d]);
    }
}
