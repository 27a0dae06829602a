//! Kamailio as registrar and proxy with digest auth on loopback, with the test
//! configuration tests/kamailio/kamailio.cfg.in (users alice, bob, carol, dave; password
//! `NAME-secret`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Kamailio; killed on drop.
pub struct Kamailio(Child);

impl Drop for Kamailio {
    /// SIGTERM, so the main process stops its worker processes too (SIGKILL would leave
    /// them running, orphaned, holding the port); SIGKILL if it has not exited in 3 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_kamailio(dir: &std::path::Path, port: u16) -> Kamailio {
    start_kamailio_with(dir, port, include_str!("../kamailio/kamailio.cfg.in"))
}

/// Kamailio with the presence server of tests/kamailio/presence.cfg.in: its db_text tables
/// (presentity, watchers, pua…) are copied from the package's empty ones into `dir/db`.
pub fn start_kamailio_presence(dir: &std::path::Path, port: u16) -> Kamailio {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let tables = "/usr/share/kamailio/dbtext/kamailio";
    for t in [
        "version",
        "presentity",
        "active_watchers",
        "watchers",
        "xcap",
        "pua",
    ] {
        std::fs::copy(format!("{tables}/{t}"), db.join(t)).unwrap_or_else(|e| {
            panic!("{tables}/{t}: {e} (the kamailio package ships the db_text tables)")
        });
    }
    let cfg = include_str!("../kamailio/presence.cfg.in").replace("@DB@", db.to_str().unwrap());
    start_kamailio_with(dir, port, &cfg)
}

/// Kamailio with `template` (`@PORT@` replaced) as its configuration.
pub fn start_kamailio_with(dir: &std::path::Path, port: u16, template: &str) -> Kamailio {
    let cfg = template.replace("@PORT@", &port.to_string());
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let child = Command::new("kamailio")
        .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
        .arg(&cfg_path)
        .arg("-Y")
        .arg(&run)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("kamailio.log")).unwrap(),
        ))
        .spawn()
        .expect("kamailio starts");
    // Wait until it answers on TCP (UDP is up at the same time).
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Kamailio(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(Kamailio(child));
    panic!(
        "kamailio did not come up; see {}",
        dir.join("kamailio.log").display()
    );
}
