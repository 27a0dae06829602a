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

use std::path::{Path, PathBuf};
use std::process::Command;

use vaxel_store::secret::SERVICE;
use vaxel_store::{
    Fault, KeyringStore, NewAccount, Secret, SecretError, SecretStore, Store, Transport,
};

/// Set in the child that runs under the private bus.
const CHILD: &str = "VAXEL_KEYRING_TEST_CHILD";
const TEST_NAME: &str = "keyring_store_keeps_passwords_in_gnome_keyring";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vaxel-keyring-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("run")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    d
}

#[test]
fn keyring_store_keeps_passwords_in_gnome_keyring() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let required = std::env::var("VAXEL_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let missing: Vec<&str> = ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if !missing.is_empty() {
        assert!(
            !required,
            "VAXEL_REQUIRE_PEERS=1 but {} not installed (Debian: dbus gnome-keyring libsecret-tools)",
            missing.join(", ")
        );
        println!("SKIP {TEST_NAME}: {} not installed", missing.join(", "));
        return;
    }
    let dir = temp_dir("gnome");
    let exe = std::env::current_exe().unwrap();
    let script = r#"printf '%s' "$VAXEL_KEYRING_UNLOCK" | gnome-keyring-daemon --daemonize --unlock --components=secrets >/dev/null || exit 97
exec "$0" --exact "$1" --nocapture --test-threads=1"#;
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .arg(&exe)
        .arg(TEST_NAME)
        .env(CHILD, "1")
        .env("VAXEL_KEYRING_UNLOCK", "vaxel-test-keyring")
        .env("VAXEL_KEYRING_TEST_DIR", &dir)
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("VAXEL_PASSWORD")
        .output()
        .expect("run dbus-run-session");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && stdout.contains("keyring child: ok"),
        "child under dbus-run-session failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("gnome-keyring round trip ok");
}

/// Runs on the private bus with an unlocked gnome-keyring.
fn child() {
    let dir = PathBuf::from(std::env::var_os("VAXEL_KEYRING_TEST_DIR").unwrap());
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
    assert_not_in_files(&dir, &password);

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
    let out = Command::new("secret-tool")
        .args(["lookup", "service", SERVICE, "username", key])
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty()).then(|| String::from_utf8(out.stdout).unwrap())
}

fn assert_not_in_files(dir: &Path, needle: &str) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("store.sqlite") {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "password found in {name}"
            );
        }
    }
}

/// With no Secret Service on the bus, the keychain is reported unavailable
/// (the environment's fault), not as a missing password and not as a panic.
#[test]
fn keyring_store_without_a_secret_service_is_unavailable() {
    if std::env::var_os(CHILD).is_some() {
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
    let dir = temp_dir("nobus");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "keyring_store_without_a_secret_service_is_unavailable",
            "--nocapture",
        ])
        .env(CHILD, "1")
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
