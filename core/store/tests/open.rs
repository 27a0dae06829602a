//! Opening files: creation, reopening, migrations, and files we must refuse
//! without touching them.

use std::path::PathBuf;

use vaxel_store::{ContactData, Fault, SCHEMA_VERSION, Store, StoreError};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vaxel-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn contact(i: usize) -> ContactData {
    ContactData {
        given_name: format!("Person{i}"),
        family_name: "Example".into(),
        note: "x".repeat(200),
        ..ContactData::default()
    }
}

#[test]
fn creates_migrates_and_reopens() {
    let dir = temp_dir("reopen");
    let path = dir.join("vaxel.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        s.create_contact(&contact(1)).unwrap();
        assert_eq!(s.path(), Some(path.as_path()));
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.contacts().unwrap().len(), 1);
    s.check_integrity().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!((v, mode.as_str()), (SCHEMA_VERSION, "wal"));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = temp_dir("garbage");
    let path = dir.join("vaxel.sqlite");
    let garbage = b"BEGIN:VCARD\r\nthis is not SQLite\r\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(e, StoreError::Corrupt { path: Some(ref p), .. } if p == &path),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Data);
    assert!(e.to_string().contains("vaxel.sqlite"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "file untouched");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_pages_are_reported_not_panicked_on() {
    let dir = temp_dir("damaged");
    let path = dir.join("vaxel.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        for i in 0..300 {
            s.create_contact(&contact(i)).unwrap();
        }
    }
    // Checkpointed and closed: everything is in the main file. Scribble over
    // a page in the middle (not the header).
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40 * 4096, "{}", bytes.len());
    for b in &mut bytes[20 * 4096..22 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    // Depending on which table the pages belonged to, open refuses the file
    // (the user's tables are checked) or a later read reports it.
    let e = match Store::open(&path) {
        Err(e) => {
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "file untouched");
            e
        }
        Ok(s) => s.check_integrity().unwrap_err(),
    };
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(e.fault(), Fault::Data);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = temp_dir("newer");
    let path = dir.join("vaxel.sqlite");
    drop(Store::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Store::open(&path).unwrap_err();
    match &e {
        StoreError::TooNew { found, known, .. } => {
            assert_eq!((*found, *known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other}"),
    }
    assert_eq!(e.fault(), Fault::Data);
    assert!(e.to_string().contains("update Vaxel"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_directory_is_an_environment_error() {
    let e = Store::open("/nonexistent-vaxel-dir/sub/vaxel.sqlite").unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert_eq!(e.fault(), Fault::Environment);
}

#[test]
fn another_programs_database_is_refused_and_left_alone() {
    let dir = temp_dir("foreign");
    let path = dir.join("other.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("not a Vaxel database"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damage_in_the_contacts_table_is_found_at_open() {
    let dir = temp_dir("damaged-contacts");
    let path = dir.join("vaxel.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        for i in 0..300 {
            s.create_contact(&contact(i)).unwrap();
        }
    }
    // Find a page of the contacts table and break its b-tree page header.
    let page = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'contacts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        root as usize
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (page - 1) * 4096;
    bytes[at] = 0x42; // not a valid b-tree page type
    std::fs::write(&path, &bytes).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "file untouched");
    let _ = std::fs::remove_dir_all(&dir);
}
