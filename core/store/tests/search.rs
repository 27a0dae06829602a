//! Search as you type over directory, contacts and history.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use vaxel_store::{
    CallDirection, ContactData, DirectoryEntry, HitKind, NewCall, Phone, PhoneKind, Store,
};

fn person(name: &str, ext: &str, dept: &str) -> DirectoryEntry {
    DirectoryEntry {
        engine_id: format!("u{ext}"),
        name: name.into(),
        extension: ext.into(),
        number: format!("+46 8 555 1{ext}"),
        mobile: String::new(),
        email: format!("{}@acme.example", name.to_lowercase().replace(' ', ".")),
        department: dept.into(),
        title: "Engineer".into(),
        location: "Göteborg".into(),
    }
}

fn store() -> Store {
    let mut s = Store::open_in_memory().unwrap();
    s.replace_directory(&[
        person("Anders Svensson", "4001", "Support"),
        person("Anne Sällström", "4002", "Sales"),
        DirectoryEntry {
            mobile: "+46 70-123 45 67".into(),
            ..person("Björn Åberg", "4003", "Finance")
        },
        person("Zoë Lind", "4004", "Sales"),
        person("Sales Hotline", "4100", "Sales"),
    ])
    .unwrap();
    s
}

fn names(s: &Store, q: &str) -> Vec<String> {
    s.search(q, 20)
        .unwrap()
        .into_iter()
        .map(|h| h.display)
        .collect()
}

#[test]
fn every_word_must_match_as_a_prefix_with_accents_folded() {
    let s = store();
    assert_eq!(names(&s, "ann sal"), ["Anne Sällström"]);
    assert_eq!(names(&s, "Ann Säl"), ["Anne Sällström"]);
    assert_eq!(
        names(&s, "anne sales"),
        ["Anne Sällström"],
        "name + department"
    );
    assert_eq!(names(&s, "abe"), ["Björn Åberg"]);
    assert_eq!(names(&s, "zoe"), ["Zoë Lind"]);
    assert!(
        names(&s, "anne svensson").is_empty(),
        "all words must match"
    );
    assert!(names(&s, "nne").is_empty(), "prefixes, not infixes");
    assert_eq!(names(&s, "goteb").len(), 5, "location");
    assert_eq!(
        names(&s, "anders.svensson@acme"),
        ["Anders Svensson"],
        "e-mail"
    );
}

#[test]
fn name_matches_rank_before_other_fields_and_directory_is_alphabetical() {
    let s = store();
    // "Sales Hotline" matches by name; Anne and Zoë only by department.
    assert_eq!(
        names(&s, "sales"),
        ["Sales Hotline", "Anne Sällström", "Zoë Lind"]
    );
    assert_eq!(
        names(&s, "engineer"),
        [
            "Anders Svensson",
            "Anne Sällström",
            "Björn Åberg",
            "Sales Hotline",
            "Zoë Lind"
        ]
    );
}

#[test]
fn numbers_match_with_or_without_spaces_plus_and_trunk_zero() {
    let s = store();
    for q in [
        "4003",
        "0701234567",
        "070 123 45 67",
        "070-123",
        "+46 70 123",
        "+4670123",
        "0046 70 123",
        "46701",
        "70 12",
    ] {
        assert_eq!(names(&s, q), ["Björn Åberg"], "query {q:?}");
    }
    assert_eq!(names(&s, "+46 8 555 14002"), ["Anne Sällström"]);
    assert_eq!(names(&s, "08 555 14002"), ["Anne Sällström"]);
    assert_eq!(names(&s, "björn 070"), ["Björn Åberg"]);
}

#[test]
fn hostile_input_never_errors() {
    let s = store();
    let nasty = [
        "\"",
        "\"\"",
        "*",
        "**",
        "-",
        "--",
        ":",
        "name:anne",
        "{name}: anne",
        "NEAR(anne sal)",
        "anne NEAR sal",
        "anne OR zoe",
        "anne AND",
        "NOT anne",
        "^anne",
        "anne*",
        "\"anne",
        "(",
        ")",
        "()",
        "'",
        "\\",
        "%",
        "_",
        "anne; DROP TABLE contacts; --",
        "\0",
        "\u{202e}",
        "😀",
        "a\u{308}nne",
        "+",
        "++46",
        "((0))",
        "0x",
        "NEAR/3",
        "AND",
        "OR",
        "NOT",
    ];
    for q in nasty {
        s.search(q, 10)
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
    }
    assert_eq!(names(&s, "\"anne\""), ["Anne Sällström"]);
    assert_eq!(names(&s, "anne*"), ["Anne Sällström"]);
    assert_eq!(
        names(&s, "name:anne"),
        Vec::<String>::new(),
        "no column filters"
    );
    assert_eq!(s.search(&"a".repeat(10_000), 10).unwrap(), []);

    // Random strings over an alphabet of FTS5 syntax and odd characters.
    let alphabet: Vec<char> = "aAnN0 9\"*-:^(){}[],.+'\\/NEARORANDNOT\t\u{e4}\u{308}😀\0"
        .chars()
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..3000 {
        let len = (rng.next_u32() % 16) as usize;
        let q: String = (0..len)
            .map(|_| alphabet[(rng.next_u32() as usize) % alphabet.len()])
            .collect();
        s.search(&q, 5)
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
    }
}

#[test]
fn contacts_and_history_join_the_results() {
    let mut s = store();
    let plain = s
        .create_contact(&ContactData {
            given_name: "Anna".into(),
            family_name: "Berg".into(),
            phones: vec![Phone::new(PhoneKind::Mobile, "+46 73 111 22 33")],
            ..ContactData::default()
        })
        .unwrap();
    let fav = s
        .create_contact(&ContactData {
            given_name: "Anna".into(),
            family_name: "Berg".into(),
            organisation: "Other AB".into(),
            favourite: true,
            ..ContactData::default()
        })
        .unwrap();
    s.insert_call(&NewCall {
        remote_name: "Annika Caller".into(),
        number: "+46 31 999 00 00".into(),
        ..NewCall::new(CallDirection::Incoming, 1_000)
    })
    .unwrap();
    let newer = s
        .insert_call(&NewCall {
            remote_name: "Annika Caller".into(),
            number: "031-999 00 00".into(),
            ..NewCall::new(CallDirection::Outgoing, 2_000)
        })
        .unwrap();
    let hits = s.search("ann", 20).unwrap();
    let order: Vec<(HitKind, &str)> = hits.iter().map(|h| (h.kind, h.display.as_str())).collect();
    assert_eq!(
        order,
        [
            (HitKind::Contact, "Anna Berg"),
            (HitKind::Contact, "Anna Berg"),
            (HitKind::History, "Annika Caller"),
            (HitKind::Directory, "Anne Sällström"),
        ]
    );
    assert_eq!(hits[0].id, fav.0, "favourite first");
    assert!(hits[0].favourite);
    assert_eq!(hits[1].id, plain.0);
    assert_eq!(hits[1].number, "+46 73 111 22 33");
    assert_eq!(hits[2].id, newer.0, "one hit per party, the newest call");
    // Unmarking the favourite moves it behind.
    s.set_favourite(fav, false).unwrap();
    let hits = s.search("anna berg", 20).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        [plain.0, fav.0]
    );
    // Limits are respected.
    assert_eq!(s.search("a", 2).unwrap().len(), 2);
    assert!(s.search("a", 0).unwrap().is_empty());
}

#[test]
fn replacing_the_directory_replaces_its_search_rows() {
    let mut s = store();
    assert_eq!(s.directory_len().unwrap(), 5);
    s.replace_directory(&[person("Cecilia Ek", "5001", "Legal")])
        .unwrap();
    assert!(names(&s, "anne").is_empty());
    assert_eq!(names(&s, "cec"), ["Cecilia Ek"]);
    let hit = &s.search("cec", 1).unwrap()[0];
    let entry = s
        .directory_entry(vaxel_store::DirectoryId(hit.id))
        .unwrap()
        .unwrap();
    assert_eq!(entry.extension, "5001");
    assert_eq!(hit.number, "5001");
    assert_eq!(hit.detail, "Legal, Engineer");
}

#[test]
fn very_long_queries_are_safe() {
    let s = store();
    let many_words = "anne ".repeat(5_000);
    s.search(&many_words, 10).unwrap();
    let many_numbers = "1 a ".repeat(5_000);
    s.search(&many_numbers, 10).unwrap();
    assert_eq!(names(&s, &"ann ".repeat(40)), ["Anne Sällström"]);
}
