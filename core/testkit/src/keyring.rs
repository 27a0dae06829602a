//! A real Linux keychain for tests: gnome-keyring on a private D-Bus session bus.
//!
//! A test re-runs its own binary as a child under
//! `dbus-run-session -- sh -c '… gnome-keyring-daemon --unlock …; exec <test>'`
//! ([`run_under_keyring`]) with HOME and the XDG directories in a fresh temporary
//! directory, so it neither needs nor touches a desktop session or the user's real
//! keyring. The child sees [`in_child`] true and finds that directory with
//! [`child_dir`]; programs it starts inherit the private bus. gnome-keyring creates its
//! `login` collection headless only when `--unlock` reads a non-empty password on stdin
//! (with an empty one it asks a GUI prompter, which fails without a display).
//!
//! ```no_run
//! use vaxel_testkit::keyring;
//! #[test]
//! fn my_keychain_test() {
//!     if keyring::in_child() {
//!         // … use the keychain, `keyring::child_dir()` …
//!         println!("keyring child: ok");
//!         return;
//!     }
//!     if !keyring::tools_present("my_keychain_test") {
//!         return; // skipped (fails instead under VAXEL_REQUIRE_PEERS=1)
//!     }
//!     let dir = keyring::temp_dir("mine");
//!     let out = keyring::run_under_keyring("my_keychain_test", &dir, &[]);
//!     keyring::assert_child_ok(&out, "keyring child: ok");
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set in the child that runs under the private bus.
pub const CHILD: &str = "VAXEL_KEYRING_TEST_CHILD";
/// The child's temporary HOME (also holds XDG dirs).
pub const DIR: &str = "VAXEL_KEYRING_TEST_DIR";
/// The programs this needs (Debian: dbus, gnome-keyring, libsecret-tools).
pub const TOOLS: [&str; 3] = ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"];

/// Whether this process is the child under the private bus.
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// In the child: its temporary directory.
pub fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("run under keyring::run_under_keyring"))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether [`TOOLS`] are installed. When not: panics under `VAXEL_REQUIRE_PEERS=1`,
/// otherwise prints a skip line for `test` and returns false.
pub fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS.into_iter().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !crate::peers::peers_required(),
        "VAXEL_REQUIRE_PEERS=1 but {} not installed (Debian: dbus gnome-keyring libsecret-tools)",
        missing.join(", ")
    );
    println!("SKIP {test}: {} not installed", missing.join(", "));
    false
}

/// A fresh temporary directory (with a private `run/` for XDG_RUNTIME_DIR).
pub fn temp_dir(name: &str) -> PathBuf {
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

/// Runs the test `test_name` of the current test binary again, alone, under a private
/// D-Bus session with gnome-keyring unlocked, HOME and XDG dirs in `dir`, no
/// `VAXEL_PASSWORD`, and `env` added. Returns its output.
pub fn run_under_keyring(test_name: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let script = r#"printf '%s' "$VAXEL_KEYRING_UNLOCK" | gnome-keyring-daemon --daemonize --unlock --components=secrets >/dev/null || exit 97
exec "$0" --exact "$1" --nocapture --test-threads=1"#;
    let mut cmd = Command::new("dbus-run-session");
    cmd.args(["--", "sh", "-c", script])
        .arg(&exe)
        .arg(test_name)
        .env(CHILD, "1")
        .env("VAXEL_KEYRING_UNLOCK", "vaxel-test-keyring")
        .env(DIR, dir)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("VAXEL_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run dbus-run-session")
}

/// Panics with the child's output unless it exited 0 and printed `marker`.
pub fn assert_child_ok(out: &Output, marker: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(marker),
        "child under dbus-run-session failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// `secret-tool lookup service SERVICE username KEY`: the password the keychain holds.
pub fn secret_tool_lookup(service: &str, key: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", key])
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty()).then(|| String::from_utf8(out.stdout).unwrap())
}

/// Panics if `needle` occurs in any file of `dir` whose name starts with `prefix`.
pub fn assert_not_in_files(dir: &Path, prefix: &str, needle: &str) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) && p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "password found in {name}"
            );
        }
    }
}
