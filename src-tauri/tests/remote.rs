//! "Connect to a server" naming a Vaxel engine's control API (issue 7): a real
//! vaxel-engine with the demo office on loopback ports (SIP and the control API), and
//! an [`AppCore`] connecting to it as a remote server — not hosting it. The directory
//! comes from `GET /api/directory` and stays live from `/api/events`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vaxel_desktop::core::{AppCore, CoreOptions, DEMO_OFFICE, Sink};
use vaxel_desktop::dto::{AccountForm, Activity, ErrorCode, MediaUpdate, UiEvent};
use vaxel_engine::engine::EngineConfig;

#[derive(Default)]
struct Seen(Mutex<Vec<UiEvent>>);

impl Sink for Seen {
    fn event(&self, e: UiEvent) {
        self.0.lock().unwrap().push(e);
    }
    fn media(&self, _: MediaUpdate) {}
    fn notify(&self, _: &str, _: &str) {}
}

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_vaxel_engine_fills_the_directory_and_keeps_presence_live() {
    let dir =
        Dir(std::env::temp_dir().join(format!("vaxel-desktop-remote-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    // The office's engine: SIP and the control API on free loopback ports.
    let office = dir.0.join("office.toml");
    std::fs::write(&office, DEMO_OFFICE).unwrap();
    let engine = vaxel_engine::engine::start(EngineConfig {
        data: dir.0.join("engine"),
        sip: "127.0.0.1:0".parse().unwrap(),
        office: Some(office),
        session_check: Duration::from_secs(90),
        flows: Default::default(),
        session_min_se: 90,
        tls: None,
        udp_threads: false,
    })
    .await
    .expect("the engine starts");
    let api = vaxel_engine::api::serve(engine.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the control API listens");
    let base = format!("http://{api}");

    // The desktop on this computer: not hosting, connecting.
    let seen = Arc::new(Seen::default());
    let keychain = Arc::new(vaxel_store::MemoryStore::new());
    let options = || CoreOptions {
        config_dir: dir.0.join("config"),
        data_dir: dir.0.join("data"),
        engine_sip: None,
        demo_user: "4001".into(),
        keychain: keychain.clone(),
    };
    let core = AppCore::new(options(), seen.clone());
    let form = |password: &str, api: &str| AccountForm {
        name: "office".into(),
        uri: "sip:4001@demo.vaxel.test".into(),
        proxy: format!("sip:{}", engine.sip_addr()),
        transport: "udp".into(),
        password: password.into(),
        api: api.into(),
    };

    // Whose fault: a wrong password is the user's, an engine that does not answer the
    // network's; neither saves anything.
    let err = core.setup_server(form("wrong", &base)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadCredentials, "{err}");
    assert!(err.message.contains("wrong username or password"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = core
        .setup_server(form("alice-4001", &nobody))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Network, "{err}");
    assert!(err.message.contains("cannot be reached"), "{err}");
    assert!(core.accounts().is_empty());

    // The right password: the SIP account and the engine's API ("host:port" is enough).
    let snap = core
        .setup_server(form("alice-4001", &api.to_string()))
        .await
        .expect("connects");
    assert_eq!(snap.control_api, base);
    assert!(snap.engine.is_none(), "connected, not hosting");
    let settings = std::fs::read_to_string(dir.0.join("config/settings.json")).unwrap();
    assert!(settings.contains(&base));
    assert!(
        !settings.contains("alice-4001"),
        "no password in the settings"
    );

    // The colleagues, with departments and titles, from GET /api/directory.
    let people = core.directory().await.unwrap();
    assert_eq!(people.len(), 5, "{people:?}");
    let bo = people.iter().find(|p| p.extension == "4002").unwrap();
    assert_eq!(bo.name, "Bo Berg");
    assert!(!bo.department.is_empty() && !bo.title.is_empty(), "{bo:?}");
    assert_eq!(bo.phone, "offline", "Bo has no phone registered");

    // Our own phone registers over SIP: the registration event reaches the directory.
    eventually("4001 registered in the directory", || async {
        let people = core.directory().await.unwrap();
        people
            .iter()
            .any(|p| p.extension == "4001" && p.phone == "idle")
    })
    .await;

    // Bo sets "meeting" through the API from elsewhere: the presence event reaches our
    // directory live, and the UI is told.
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/login"))
        .json(&json!({ "username": "4002", "password": "bo-4002" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    seen.0.lock().unwrap().clear();
    let r = http
        .put(format!("{base}/api/me/presence"))
        .bearer_auth(token)
        .json(&json!({ "activity": "meeting", "note": "board room" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    eventually("Bo's meeting in the directory", || async {
        let people = core.directory().await.unwrap();
        let bo = people.iter().find(|p| p.extension == "4002").unwrap();
        bo.presence.activity == Activity::Meeting && bo.presence.note == "board room"
    })
    .await;
    assert!(
        seen.0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, UiEvent::Directory)),
        "the UI was told to redraw the directory"
    );

    // Caller names come from the remote directory too: search finds Bo.
    let hits = core.search("Berg").await.unwrap();
    assert!(
        hits.iter()
            .any(|h| h.kind == "directory" && h.display == "Bo Berg"),
        "{hits:?}"
    );

    // A call Alice makes from the app (to 8000, the voicemail the engine answers) is in
    // the engine's records of her calls (the client reads `GET /api/me/calls`) and in
    // her merged history once, not twice.
    core.call("8000").unwrap();
    eventually("the call to 8000 placed", || async {
        seen.0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, UiEvent::Call { call } if call.remote.contains("8000")))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in core.snapshot().calls {
        let _ = core.hangup(c.call);
    }
    eventually("the call ended", || async {
        core.snapshot().calls.is_empty()
    })
    .await;
    let alice = vaxel_desktop::remote::Remote::login(&base, "4001", "alice-4001")
        .await
        .unwrap();
    eventually("the engine's record of the call", || async {
        alice
            .my_calls()
            .await
            .unwrap()
            .iter()
            .any(|c| c.caller == "4001" && c.callee == "8000")
    })
    .await;
    let history = core.history(50).await.unwrap();
    let to_voicemail: Vec<_> = history
        .calls
        .iter()
        .filter(|h| h.number == "8000")
        .collect();
    assert_eq!(to_voicemail.len(), 1, "{:?}", history.calls);
    assert_eq!(to_voicemail[0].direction, "outgoing");
    assert!(
        to_voicemail[0].id > 0,
        "the phone's own entry, not the engine's copy"
    );
    core.shutdown();
    drop(core);

    // The next start: the password from the keychain logs in again (the token was in
    // memory only) and the directory is back.
    let again = AppCore::new(options(), Arc::new(Seen::default()));
    again.start().await.expect("starts as saved");
    assert_eq!(again.snapshot().control_api, base);
    assert_eq!(again.directory().await.unwrap().len(), 5);
    again.shutdown();
}
