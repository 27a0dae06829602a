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
    let cfg = include_str!("../kamailio/kamailio.cfg.in").replace("@PORT@", &port.to_string());
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
