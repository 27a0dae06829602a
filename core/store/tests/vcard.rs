//! vCard files as phones write them, imported into and exported from a store.

use vaxel_store::{ContactData, HitKind, Phone, PhoneKind, Store};

/// As an iPhone exports a contact (vCard 3.0, grouped properties, a folded photo).
const IPHONE: &str = "BEGIN:VCARD\r\n\
VERSION:3.0\r\n\
PRODID:-//Apple Inc.//iPhone OS 17.0//EN\r\n\
N:Lindqvist;Maja;;;\r\n\
FN:Maja Lindqvist\r\n\
ORG:Nordic Freight AB;Logistics\r\n\
TITLE:Dispatcher\r\n\
item1.EMAIL;type=INTERNET;type=pref:maja@nordicfreight.example\r\n\
item1.X-ABLabel:_$!<Other>!$_\r\n\
TEL;type=CELL;type=VOICE;type=pref:+46 70 555 01 02\r\n\
TEL;type=WORK;type=VOICE:+46 31-555 01 00\r\n\
PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkICQkKDA8\r\n \
MCgsOCwkJDRENDg8QEBEQCgwSExIQEw8QEBD/\r\n\
NOTE:Call before 10\\, please.\\nGate 4.\r\n\
END:VCARD\r\n";

/// As an older Android phone exports (vCard 2.1, quoted-printable UTF-8).
const ANDROID: &str = "BEGIN:VCARD\n\
VERSION:2.1\n\
N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=85berg;J=C3=B6rgen;;;\n\
FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:J=C3=B6rgen =C3=85berg\n\
TEL;CELL:0709876543\n\
TEL;HOME:+46855500000\n\
EMAIL;HOME:jorgen@example.org\n\
END:VCARD\n\
BEGIN:VCARD\n\
VERSION:2.1\n\
FN:Broken\n\
TEL;CELL 0701111111\n\
END:VCARD\n";

#[test]
fn phone_exports_import_and_become_searchable() {
    let mut s = Store::open_in_memory().unwrap();
    let report = s.import_vcards(&format!("{IPHONE}{ANDROID}")).unwrap();
    assert_eq!(report.imported.len(), 2);
    assert_eq!(report.errors.len(), 1);
    let e = &report.errors[0];
    assert_eq!((e.card, e.line), (Some(3), 27), "{e}");

    let maja = s.contact(report.imported[0]).unwrap().unwrap().data;
    assert_eq!(
        maja,
        ContactData {
            given_name: "Maja".into(),
            family_name: "Lindqvist".into(),
            organisation: "Nordic Freight AB".into(),
            department: "Logistics".into(),
            title: "Dispatcher".into(),
            phones: vec![
                Phone::new(PhoneKind::Mobile, "+46 70 555 01 02"),
                Phone::new(PhoneKind::Work, "+46 31-555 01 00"),
            ],
            emails: vec!["maja@nordicfreight.example".into()],
            note: "Call before 10, please.\nGate 4.".into(),
            ..ContactData::default()
        }
    );
    let jorgen = s.contact(report.imported[1]).unwrap().unwrap().data;
    assert_eq!(jorgen.display(), "Jörgen Åberg");
    assert_eq!(jorgen.phones[1].kind, PhoneKind::Home);

    let hits = s.search("jorg 0709", 5).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].kind, hits[0].id),
        (HitKind::Contact, report.imported[1].0)
    );
    assert_eq!(s.search("logist", 5).unwrap()[0].display, "Maja Lindqvist");
}

#[test]
fn export_then_import_keeps_every_contact() {
    let mut a = Store::open_in_memory().unwrap();
    a.import_vcards(&format!("{IPHONE}{ANDROID}")).unwrap();
    a.create_contact(&ContactData {
        display_name: "Reception, Main Office".into(),
        organisation: "Acme; Inc".into(),
        phones: vec![Phone::new(PhoneKind::Other, "4000")],
        sip_uris: vec!["sip:reception@acme.example;transport=tls".into()],
        note: "Line 1\nLine 2 \\ backslash".into(),
        favourite: true,
        ..ContactData::default()
    })
    .unwrap();
    let text = a.export_vcards().unwrap();
    assert!(text.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\n"), "{text}");

    let mut b = Store::open_in_memory().unwrap();
    let report = b.import_vcards(&text).unwrap();
    assert_eq!(report.errors, []);
    let data = |s: &Store| -> Vec<ContactData> {
        s.contacts().unwrap().into_iter().map(|c| c.data).collect()
    };
    assert_eq!(data(&b), data(&a));
    assert_eq!(
        b.export_vcards().unwrap(),
        text,
        "a second round trip is byte-identical"
    );
}
