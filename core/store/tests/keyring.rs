//! `KeyringStore` against the real Linux keychain: gnome-keyring on a private
//! D-Bus session bus (ARCHITECTURE.md §5).
//!
//! The test re-runs its own binary as a child under
//! `dbus-run-session -- sh -c '… gnome-keyring-daemon --unlock …; exec <test>'`
//! with HOME and the XDG directories in a fresh temporary directory, so it
//! neither needs nor touches a desktop session or the user's real keyring.
//! gnome-keyring creates its `login` collection headless only when `--unlock`
//! reads a non-empty password on stdin (with an empty one it asks a GUI
//! prompter, which fails without a display).
//!
//! Without gnome-keyring the test prints a skip line and passes, unless
//! `VAXEL_REQUIRE_PEERS=1`, when it fails.

use std::process::Command;

use vaxel_store::secret::SERVICE;
use vaxel_store::{
    Fault, KeyringStore, NewAccount, Secret, SecretError, SecretStore, Store, Transport,
};
use vaxel_testkit::keyring;

const TEST_NAME: &str = "keyring_store_keeps_passwords_in_gnome_keyring";

#[test]
fn keyring_store_keeps_passwords_in_gnome_keyring() {
    if keyring::in_child() {
        child();
        return;
    }
    if !keyring::tools_present(TEST_NAME) {
        return;
    }
    let dir = keyring::temp_dir("gnome");
    let out = keyring::run_under_keyring(TEST_NAME, &dir, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    keyring::assert_child_ok(&out, "keyring child: ok");
    println!("gnome-keyring round trip ok");
}

/// Runs on the private bus with an unlocked gnome-keyring.
fn child() {
    let dir = keyring::child_dir();
    let db = dir.join("store.sqlite");
    let mut store = Store::open(&db).unwrap();
    let account = store
        .create_account(&NewAccount {
            name: "Work".into(),
            sip_uri: format!("alice-{}@example.com", std::process::id()),
            transport: Transport::Tls,
            register: true,
            ..NewAccount::default()
        })
        .unwrap();
    let key = account.secret_key();
    let password = format!("pw-{}-Zq7!", std::process::id());
    let keychain = KeyringStore::new();

    assert_eq!(
        keychain.get(&key).unwrap(),
        None,
        "fresh keyring has no entry"
    );
    keychain.set(&key, &Secret::new(password.clone())).unwrap();
    assert_eq!(keychain.get(&key).unwrap().unwrap().expose(), password);

    // The password is in gnome-keyring, under service "vaxel" …
    assert_eq!(secret_tool_lookup(&key).as_deref(), Some(password.as_str()));
    // … and nowhere in the database files.
    drop(store);
    keyring::assert_not_in_files(&dir, "store.sqlite", &password);

    // Replacing and deleting.
    keychain.set(&key, &Secret::new("second-pw")).unwrap();
    assert_eq!(secret_tool_lookup(&key).as_deref(), Some("second-pw"));
    assert!(keychain.delete(&key).unwrap());
    assert_eq!(keychain.get(&key).unwrap(), None);
    assert_eq!(secret_tool_lookup(&key), None);
    assert!(!keychain.delete(&key).unwrap());
    println!("keyring child: ok");
}

fn secret_tool_lookup(key: &str) -> Option<String> {
    keyring::secret_tool_lookup(SERVICE, key)
}

/// With no Secret Service on the bus, the keychain is reported unavailable
/// (the environment's fault), not as a missing password and not as a panic.
#[test]
fn keyring_store_without_a_secret_service_is_unavailable() {
    if keyring::in_child() {
        if std::env::var_os("VAXEL_KEYRING_NO_BUS").is_none() {
            return;
        }
        let keychain = KeyringStore::new();
        let key = format!("sip:nobody-{}@example.com", std::process::id());
        for result in [
            keychain.get(&key).map(|_| ()),
            keychain.set(&key, &Secret::new("pw")),
            keychain.delete(&key).map(|_| ()),
        ] {
            let e = result.expect_err("no keychain, yet it worked");
            assert!(matches!(e, SecretError::Unavailable(_)), "{e:?}");
            assert_eq!(e.fault(), Fault::Environment);
            assert!(!e.to_string().contains("pw\""), "{e}");
        }
        println!("no-bus child: ok");
        return;
    }
    let dir = keyring::temp_dir("nobus");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "keyring_store_without_a_secret_service_is_unavailable",
            "--nocapture",
        ])
        .env(keyring::CHILD, "1")
        .env("VAXEL_KEYRING_NO_BUS", "1")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/no-bus", dir.display()),
        )
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("no-bus child: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
