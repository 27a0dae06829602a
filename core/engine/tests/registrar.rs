//! The registrar against SIPp: digest (401 then 200), a wrong password refused,
//! bindings persisted and restored after `kill -9`.

mod common;

use common::*;
use vaxel_testkit::peers::skip_or_fail;

#[test]
fn sipp_registers_with_digest_and_the_binding_survives_kill_9() {
    if !have("sipp") && skip_or_fail("registrar", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("registrar");
    let port = free_port();
    let engine = EngineProc::start(&dir, Some(&office("")), port);
    let target = engine.sip.to_string();

    let run = sipp(
        &dir,
        "reg-ok",
        &register_scenario("4001", "alice-pw", 600),
        &target,
        &["-m", "1", "-p", &free_port().to_string()],
    );
    assert!(run.ok, "REGISTER with the right password: {}", run.output);

    // A wrong password gets a fresh 401, never 200.
    let run = sipp(
        &dir,
        "reg-bad",
        &register_scenario("4002", "wrong", 600),
        &target,
        &["-m", "1", "-p", &free_port().to_string()],
    );
    assert!(
        !run.ok,
        "a wrong password must not register: {}",
        run.output
    );

    engine.kill9();
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let bindings = db.bindings(now).unwrap();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0].extension, "4001");
    assert!(bindings[0].expires_at > now + 500);
    drop(db);

    // Restarted without the office file: configuration and bindings come from the database.
    let engine = EngineProc::start(&dir, None, port);
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    assert_eq!(db.users().unwrap().len(), 4);
    assert_eq!(db.bindings(now).unwrap().len(), 1);
    drop(engine);
}
