//! The Tauri commands on Tauri's mock runtime (`tauri::test`), with the real core behind
//! them: the embedded engine with the demo office on a loopback port, the phone registered
//! to it, the profile in a temporary folder and passwords in memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{MockRuntime, get_ipc_response, mock_context, noop_assets};
use tauri::webview::{InvokeRequest, WebviewWindow, WebviewWindowBuilder};
use tauri::{Listener, Manager};
use vaxel_desktop::core::CoreOptions;

struct App {
    app: tauri::App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    events: Arc<Mutex<Vec<Value>>>,
    dir: std::path::PathBuf,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn app(name: &str) -> App {
    let dir = std::env::temp_dir().join(format!("vaxel-desktop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = CoreOptions {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
        engine_sip: Some("127.0.0.1:0".parse().unwrap()),
        demo_user: "4001".into(),
        keychain: Arc::new(vaxel_store::MemoryStore::new()),
    };
    let app = vaxel_desktop::builder::<MockRuntime>()
        .build(mock_context(noop_assets()))
        .expect("the app builds on the mock runtime");
    vaxel_desktop::attach(app.handle(), opts, false, Vec::new());
    let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    app.listen_any(vaxel_desktop::EVENT, move |e| {
        sink.lock()
            .unwrap()
            .push(serde_json::from_str(e.payload()).unwrap());
    });
    App {
        app,
        webview,
        events,
        dir,
    }
}

fn invoke(app: &App, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        &app.webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            // On Linux the mock runtime's origin is tauri://localhost (ARCHITECTURE.md §5a).
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            // Our builder is not `mock_builder`, so the key is the app's own.
            invoke_key: app.app.invoke_key().to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn before_the_first_run_choice_nothing_runs_and_errors_say_so() {
    let app = app("unset");
    let snap = invoke(&app, "snapshot", json!({})).unwrap();
    assert_eq!(snap["mode"], "unset");
    assert_eq!(snap["calls"], json!([]));
    let err = invoke(&app, "call", json!({ "target": "4002" })).unwrap_err();
    assert_eq!(err["code"], "not_ready", "{err}");
    assert!(err["message"].as_str().unwrap().contains("not running"));
    // Bad settings are the caller's fault.
    let mut settings = snap["settings"].clone();
    settings["language"] = json!("xx");
    let err = invoke(&app, "set_settings", json!({ "settings": settings })).unwrap_err();
    assert_eq!(err["code"], "bad_command");
    // Hotkeys: defaults for answer, hang up and mute; a key that is none, or one key for
    // two actions, is refused and nothing is saved.
    assert_eq!(snap["settings"]["hotkeyAnswer"], "Ctrl+Alt+A");
    for (field, key, says) in [
        ("hotkeyMute", "Ctrl+Alt+Banana", "not a key"),
        ("hotkeyMute", "ctrl+alt+a", "both answer and mute"),
    ] {
        let mut settings = snap["settings"].clone();
        settings[field] = json!(key);
        let err = invoke(&app, "set_settings", json!({ "settings": settings })).unwrap_err();
        assert_eq!(err["code"], "bad_command", "{err}");
        assert!(err["message"].as_str().unwrap().contains(says), "{err}");
    }
    let mut settings = snap["settings"].clone();
    settings["hotkeyMute"] = json!("Shift+F9");
    let saved = invoke(&app, "set_settings", json!({ "settings": settings })).unwrap();
    assert_eq!(saved["hotkeyMute"], "Shift+F9");
    assert_eq!(
        invoke(&app, "snapshot", json!({})).unwrap()["settings"]["hotkeyMute"],
        "Shift+F9"
    );
}

#[test]
fn hosting_the_office_registers_the_demo_user_and_serves_search_directory_and_presence() {
    let app = app("host");
    let snap = invoke(&app, "setup_host", json!({})).unwrap();
    assert_eq!(snap["mode"], "host");
    assert_eq!(snap["me"]["extension"], "4001");
    assert_eq!(snap["me"]["name"], "Alice Andersen");
    assert_eq!(snap["engine"]["domain"], "demo.vaxel.test");
    wait_for("the demo user to register", || {
        let s = invoke(&app, "snapshot", json!({})).unwrap();
        s["accounts"][0]["registration"] == "registered"
    });
    assert!(
        app.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "account" && e["account"]["registration"] == "registered"),
        "the UI was told about the registration"
    );

    // Search: every word must match, across the directory.
    let hits = invoke(&app, "search", json!({ "query": "bo sal" })).unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["display"], "Bo Berg");
    assert_eq!(hits[0]["kind"], "directory");
    let none = invoke(&app, "search", json!({ "query": "bo support" })).unwrap();
    assert_eq!(none, json!([]));

    // The directory: the demo user's phone is registered, the others are offline.
    let dir = invoke(&app, "directory", json!({})).unwrap();
    let me = dir
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["extension"] == "4001")
        .unwrap();
    assert_eq!(me["phone"], "idle");
    let bo = dir
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["extension"] == "4002")
        .unwrap();
    assert_eq!(bo["phone"], "offline");

    // Presence: set, shown in the directory, kept in the snapshot.
    invoke(
        &app,
        "set_presence",
        json!({ "presence": { "activity": "meeting", "until": "14:00", "note": "board" } }),
    )
    .unwrap();
    let dir = invoke(&app, "directory", json!({})).unwrap();
    let me = dir
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["extension"] == "4001")
        .unwrap();
    assert_eq!(me["presence"]["activity"], "meeting");
    assert_eq!(me["presence"]["until"], "14:00");
    let snap = invoke(&app, "snapshot", json!({})).unwrap();
    assert_eq!(snap["presence"]["note"], "board");
    // … and published to the embedded engine (PUBLISH, RFC 3903), which tells watchers.
    let core = app
        .app
        .state::<Arc<vaxel_desktop::core::AppCore>>()
        .inner()
        .clone();
    let engine = core.engine().expect("hosting runs the engine");
    let engine_view = |ext: &str| {
        let all = tauri::async_runtime::block_on(engine.presence()).unwrap();
        all.into_iter().find(|(e, _)| e == ext).unwrap().1
    };
    wait_for("the engine to have my presence", || {
        let v = engine_view("4001");
        v.activity.as_deref() == Some("meeting") && v.note.as_deref() == Some("board")
    });
    assert_eq!(engine_view("4001").state, "away");
    // A colleague's presence reaches the directory through the phone's subscription to
    // the engine (SUBSCRIBE presence, RFC 3856): Bo sets lunch through the engine.
    tauri::async_runtime::block_on(engine.set_presence(
        "4002",
        vaxel_engine::engine::SetPresence {
            activity: "lunch".into(),
            note: Some("back at one".into()),
            until: None,
        },
    ))
    .unwrap();
    wait_for("Bo's lunch in the directory", || {
        let dir = invoke(&app, "directory", json!({})).unwrap();
        let bo = dir
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["extension"] == "4002")
            .cloned()
            .unwrap();
        bo["presence"]["activity"] == "lunch" && bo["presence"]["note"] == "back at one"
    });

    // Contacts: add, change, find.
    let c = invoke(
        &app,
        "save_contact",
        json!({ "contact": { "id": null, "name": "Anne Sällström", "numbers": ["+46701234567"] } }),
    )
    .unwrap();
    let id = c["id"].as_i64().unwrap();
    invoke(
        &app,
        "save_contact",
        json!({ "contact": { "id": id, "name": "Anne Sällström-Berg", "numbers": ["+46701234567"], "favourite": true } }),
    )
    .unwrap();
    let list = invoke(&app, "contacts", json!({})).unwrap();
    assert_eq!(list[0]["name"], "Anne Sällström-Berg");
    let err = invoke(
        &app,
        "save_contact",
        json!({ "contact": { "id": 999, "name": "Nobody", "numbers": [] } }),
    )
    .unwrap_err();
    assert_eq!(err["code"], "bad_command", "{err}");
    assert_eq!(list[0]["favourite"], true);
    let hits = invoke(&app, "search", json!({ "query": "anne" })).unwrap();
    assert_eq!(hits[0]["kind"], "contact");
    assert_eq!(hits[0]["number"], "+46701234567");

    // vCard out and back in.
    let file = app.dir.join("contacts.vcf");
    let out = invoke(
        &app,
        "vcard_export",
        json!({ "path": file.display().to_string() }),
    )
    .unwrap();
    assert_eq!(out["contacts"], 1);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("Anne Sällström-Berg")
    );
    let back = invoke(
        &app,
        "vcard_import",
        json!({ "path": file.display().to_string() }),
    )
    .unwrap();
    assert_eq!(back["contacts"], 1);

    // The history answers; a bad call id is the caller's fault.
    let h = invoke(&app, "history", json!({ "limit": 10 })).unwrap();
    assert_eq!(h["unseenMissed"], 0);
    let err = invoke(&app, "answer", json!({ "call": 99 })).unwrap_err();
    assert_eq!(err["code"], "bad_command");
    let err = invoke(&app, "dtmf", json!({ "call": 99, "digits": "x" })).unwrap_err();
    assert_eq!(err["code"], "bad_command");
    // The file dialogs need the dialog plugin, which the mock runtime does not have.
    let err = invoke(&app, "vcard_export_dialog", json!({ "title": "Export" })).unwrap_err();
    assert_eq!(err["code"], "not_ready", "{err}");
    // A second launch with a link (tauri-plugin-single-instance hands us its arguments):
    // the UI is told to show the dial screen and the call is placed.
    vaxel_desktop::second_launch(
        app.app.handle(),
        vec!["vaxel-desktop".into(), "--flag".into(), "tel:4002".into()],
    );
    wait_for("the link's call", || {
        app.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "dial" && e["uri"] == "4002")
    });
    wait_for("the link's call to be placed", || {
        app.events.lock().unwrap().iter().any(|e| {
            e["type"] == "call" && e["call"]["remote"].as_str().unwrap_or("").contains("4002")
        })
    });
    // Second calls, announced transfer, merge and voicemail: the caller's fault without
    // the calls they need (the flows themselves run in the end-to-end test).
    for (cmd, args, says) in [
        (
            "consult",
            json!({ "call": 99, "target": "4004" }),
            "no call 99",
        ),
        ("complete_transfer", json!({ "call": 99 }), "no call 99"),
        ("cancel_consult", json!({ "call": 99 }), "no call 99"),
        ("swap", json!({ "call": 99 }), "no call 99"),
        ("merge", json!({}), "two calls"),
        ("send_to_voicemail", json!({ "call": 99 }), "no call 99"),
    ] {
        let err = invoke(&app, cmd, args).unwrap_err();
        assert_eq!(err["code"], "bad_command", "{cmd}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(says),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn connecting_to_a_server_checks_the_account() {
    let app = app("server");
    let err = invoke(
        &app,
        "setup_server",
        json!({ "account": { "name": "work", "uri": "not a uri at all", "proxy": "", "transport": "udp", "password": "x" } }),
    )
    .unwrap_err();
    assert_eq!(err["code"], "bad_command", "{err}");
    let snap = invoke(
        &app,
        "setup_server",
        json!({ "account": { "name": "work", "uri": "sip:alice@127.0.0.1:9", "proxy": "", "transport": "udp", "password": "secret" } }),
    )
    .unwrap();
    assert_eq!(snap["mode"], "server");
    assert_eq!(snap["accounts"][0]["uri"], "sip:alice@127.0.0.1:9");
    // The password went to the keychain, not into the settings file.
    let settings = std::fs::read_to_string(app.dir.join("config/settings.json")).unwrap();
    assert!(!settings.contains("secret"));
}
