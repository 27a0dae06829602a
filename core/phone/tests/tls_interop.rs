//! A TLS account against Kamailio's tls module (tests/kamailio/tls.cfg.in), started by the
//! test on loopback with a certificate signed by a CA the test makes (rcgen):
//!
//! - alice's account has `--transport tls` and her AOR names Kamailio's TLS port (Kamailio
//!   has no UDP or TCP there): she registers with digest auth over TLS, trusting the test
//!   CA given with `--ca`;
//! - alice (TLS) calls bob (UDP) and bob calls alice, audio both ways over SRTP (SDES keys
//!   in the SDP; a tone each way, found in the other's recording), each side hangs up once — requests to alice reuse
//!   her TLS connection;
//! - without `--ca` the same account does not register: the server's certificate is not
//!   trusted (the OS's roots do not know the test CA), reported as 503 and exit status 1.
//!
//! Skips (or fails with `VAXEL_REQUIRE_PEERS=1`) when kamailio or its tls module is not
//! installed.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::kamailio::start_kamailio_with;
use common::*;

/// Writes ca.pem, server.pem, server.key and Kamailio's tls.cfg into `dir`.
fn make_certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Vaxel test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "kamailio.test");
    let cert = server.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("tls.cfg"),
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\nprivate_key = {}\ncertificate = {}\n",
            dir.join("server.key").display(),
            dir.join("server.pem").display()
        ),
    )
    .unwrap();
}

fn add_account(dir: &Path, name: &str, uri: &str, tls: bool) -> std::path::PathBuf {
    let profile = dir.join(name);
    let mut c = Command::new(BIN);
    c.args(["--profile", profile.to_str().unwrap(), "account", "add"])
        .args(["--name", name, "--uri", uri]);
    if tls {
        c.args(["--transport", "tls"]);
    }
    assert!(c.status().unwrap().success());
    profile
}

fn phone(dir: &Path, name: &str, profile: &Path, tone: &Path, ca: Option<&Path>) -> Vaxel {
    let rec = dir.join(format!("{name}.wav"));
    let mut args = vec![
        "--profile".to_string(),
        profile.display().to_string(),
        "--listen".into(),
        "127.0.0.1".into(),
    ];
    if let Some(ca) = ca {
        args.extend(["--ca".into(), ca.display().to_string()]);
    }
    args.extend([
        "run".into(),
        "--auto-answer".into(),
        "--play".into(),
        tone.display().to_string(),
        "--record".into(),
        rec.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut v = Vaxel::spawn(
        name,
        &args,
        &[("VAXEL_PASSWORD", &format!("{name}-secret"))],
    );
    v.event("registered", 15);
    v
}

#[test]
fn tls_account_registers_and_calls_through_kamailio() {
    if !have_peer("/usr/sbin/kamailio")
        || !have_peer("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so")
    {
        return;
    }
    let dir = temp_dir("tls");
    make_certificates(&dir);
    let kport = free_port();
    let tport = free_port();
    let cfg = include_str!("kamailio/tls.cfg.in")
        .replace("@TLSPORT@", &tport.to_string())
        .replace("@DIR@", dir.to_str().unwrap());
    let _k = start_kamailio_with(&dir, kport, &cfg);
    let t1000 = dir.join("t1000.wav");
    tone_wav(&t1000, 1000.0, 2);
    let t700 = dir.join("t700.wav");
    tone_wav(&t700, 700.0, 2);

    let alice_uri = format!("sip:alice@127.0.0.1:{tport}");
    let alice_profile = add_account(&dir, "alice", &alice_uri, true);
    let bob_profile = add_account(&dir, "bob", &format!("sip:bob@127.0.0.1:{kport}"), false);

    // Without the test CA the server is not trusted: no registration, exit 1.
    let out = Command::new(BIN)
        .args(["--profile", alice_profile.to_str().unwrap()])
        .args(["--listen", "127.0.0.1", "register"])
        .env("VAXEL_PASSWORD", "alice-secret")
        .env_remove("VAXEL_TLS_CA")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#""event":"registration_failed""#) && stdout.contains("503"),
        "{stdout}"
    );

    let ca = dir.join("ca.pem");
    let mut alice = phone(&dir, "alice", &alice_profile, &t1000, Some(&ca));
    let mut bob = phone(&dir, "bob", &bob_profile, &t700, None);

    // alice (TLS) calls bob (UDP); alice hangs up.
    alice.send("call bob");
    alice.expect("established", 10, |v| {
        v["event"] == "established" && v["call"] == 1
    });
    // SDES keys (RFC 4568) went in the SDP over alice's TLS: the audio is SRTP.
    alice.send("snapshot");
    let snap = alice.event("snapshot", 5);
    assert_eq!(snap["calls"][0]["srtp"], true, "{snap}");
    bob.event("established", 10);
    std::thread::sleep(Duration::from_secs(2));
    alice.send("hangup 1");
    bob.expect("ended", 10, |v| {
        v["event"] == "ended" && v["cause"] == "remote_hangup"
    });
    alice.expect("ended", 10, |v| v["event"] == "ended" && v["call"] == 1);
    std::thread::sleep(Duration::from_millis(300));
    let freqs = [500.0, 700.0, 1000.0, 1500.0];
    let (f, share) = dominant(&dir.join("bob.wav"), &freqs);
    assert_eq!(
        f, 1000.0,
        "bob hears alice over TLS signalling ({share:.2})"
    );
    assert!(share > 0.5, "{share}");
    let (f, share) = dominant(&dir.join("alice.wav"), &freqs);
    assert_eq!(f, 700.0, "alice hears bob ({share:.2})");
    assert!(share > 0.5, "{share}");

    // bob calls alice: the INVITE and bob's BYE reach her over her TLS connection.
    bob.send("call alice");
    let inc = alice.event("incoming", 10);
    assert_eq!(inc["from"], format!("sip:bob@127.0.0.1:{kport}"));
    bob.expect("established 2", 10, |v| {
        v["event"] == "established" && v["call"] == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    bob.send("hangup 2");
    alice.expect("ended by bob", 10, |v| {
        v["event"] == "ended" && v["call"] == inc["call"] && v["cause"] == "remote_hangup"
    });

    for v in [&mut alice, &mut bob] {
        v.send("quit");
        v.event("unregistered", 10);
        assert_eq!(v.wait(10), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
