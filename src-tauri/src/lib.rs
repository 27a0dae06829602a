//! The Vaxel desktop app: the only crate that knows Tauri. It wraps the softphone core
//! (`vaxel-phone`, through its `Command`/`Event` vocabulary) and, when this computer hosts
//! the office's switchboard, the routing engine (`vaxel-engine`) in-process.
//!
//! # Shape (ARCHITECTURE.md §3.4, §7)
//!
//! - [`core::AppCore`] knows nothing of Tauri: it starts the engine and the phone, keeps
//!   the state the UI mirrors and turns phone events into [`dto::UiEvent`]s.
//! - [`dto`] holds every type that crosses into the web view; their TypeScript twins
//!   are generated into `ui/src/lib/bindings.ts` and checked fresh by a test.
//! - [`commands`] are thin Tauri commands over the core; errors are `{ code, message }`.
//! - The UI seeds itself with the `snapshot` command and applies `vaxel://event`
//!   events; levels and call quality (ten a second) go over a Tauri channel.
//! - [`tray`] is the tray icon, [`links`] the `tel:`/`sip:` links.
//!
//! [`builder`] assembles the app for any Tauri runtime, so the command tests run it on
//! Tauri's mock runtime (`tauri::test`) with the real core behind it.

pub mod commands;
pub mod core;
pub mod dto;
pub mod hotkeys;
pub mod links;
pub mod remote;
pub mod soundcheck;
pub mod tray;

use std::path::PathBuf;
use std::sync::Arc;

use tauri::{AppHandle, Emitter, Manager, Runtime};

use crate::commands::MediaChannel;
use crate::core::{AppCore, CoreOptions, Sink};
use crate::dto::{MediaUpdate, UiEvent};

/// The name of the Tauri event that carries [`UiEvent`]s.
pub const EVENT: &str = "vaxel://event";

/// When the program started, for the start-up figure (scripts/bench-desktop.sh).
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Milliseconds since the program started.
pub fn since_start_ms() -> f64 {
    STARTED
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0
}

/// Events to the web view through Tauri.
struct TauriSink<R: Runtime> {
    app: AppHandle<R>,
}

impl<R: Runtime> Sink for TauriSink<R> {
    fn event(&self, e: UiEvent) {
        if let UiEvent::Presence { presence } = &e {
            tray::show_presence(&self.app, presence);
        }
        if let Err(err) = self.app.emit(EVENT, &e) {
            tracing::warn!("cannot emit an event: {err}");
        }
    }

    fn media(&self, m: MediaUpdate) {
        if let Some(ch) = self.app.try_state::<MediaChannel>() {
            let ch = ch.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(ch) = ch
                && ch.send(m).is_err()
            {
                tracing::debug!("media channel closed");
            }
        }
    }

    fn notify(&self, title: &str, body: &str) {
        use tauri_plugin_notification::NotificationExt;
        if self
            .app
            .try_state::<tauri_plugin_notification::Notification<R>>()
            .is_some()
            && let Err(e) = self
                .app
                .notification()
                .builder()
                .title(title)
                .body(body)
                .show()
        {
            tracing::debug!("notification: {e}");
        }
        // The window comes forward for an incoming call (R-118: the one time it may).
        if let Some(w) = self.app.get_webview_window("main") {
            let _ = w.show();
            let _ = w.unminimize();
        }
    }
}

/// Where the core keeps its files: `VAXEL_DESKTOP_DIR` (tests, several instances),
/// else the platform's config and data folders for the app.
pub fn core_options<R: Runtime>(app: &AppHandle<R>) -> CoreOptions {
    let (config, data) = match std::env::var_os("VAXEL_DESKTOP_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            (d.join("config"), d.join("data"))
        }
        None => (
            app.path()
                .app_config_dir()
                .unwrap_or_else(|_| PathBuf::from(".vaxel/config")),
            app.path()
                .app_data_dir()
                .unwrap_or_else(|_| PathBuf::from(".vaxel/data")),
        ),
    };
    CoreOptions::from_env(config, data)
}

/// The app on any runtime: its commands and state. [`attach`] adds the core (the app's
/// setup hook does, tests call it themselves: the mock runtime runs no setup hook).
pub fn builder<R: Runtime>() -> tauri::Builder<R> {
    tauri::Builder::<R>::new()
        .manage(MediaChannel::default())
        .invoke_handler(tauri::generate_handler![
            commands::snapshot,
            commands::setup_host,
            commands::setup_server,
            commands::call,
            commands::answer,
            commands::decline,
            commands::hangup,
            commands::hold,
            commands::mute,
            commands::dtmf,
            commands::transfer,
            commands::consult,
            commands::complete_transfer,
            commands::cancel_consult,
            commands::swap,
            commands::merge,
            commands::send_to_voicemail,
            commands::set_notification_text,
            commands::search,
            commands::history,
            commands::mark_missed_seen,
            commands::directory,
            commands::contacts,
            commands::save_contact,
            commands::vcard_import,
            commands::vcard_export,
            commands::vcard_import_dialog,
            commands::vcard_export_dialog,
            commands::set_presence,
            commands::set_settings,
            commands::accounts,
            commands::save_account,
            commands::audio_devices,
            commands::test_tone,
            commands::mic_test,
            commands::media_channel,
            commands::register_links,
            commands::ui_ready,
        ])
        .on_page_load(|_, payload| {
            if payload.event() == tauri::webview::PageLoadEvent::Finished {
                eprintln!("vaxel-desktop page loaded ms={:.0}", since_start_ms());
            }
        })
}

/// Creates the core with `options`, hands it to Tauri's state, builds the tray icon when
/// `with_tray`, and starts what the saved settings ask for; then opens `links`.
pub fn attach<R: Runtime>(
    app: &AppHandle<R>,
    options: CoreOptions,
    with_tray: bool,
    links: Vec<String>,
) -> Arc<AppCore> {
    let core = AppCore::new(options, Arc::new(TauriSink { app: app.clone() }));
    app.manage(core.clone());
    if with_tray && let Err(e) = tray::build(app) {
        tracing::warn!("no tray icon: {e}");
    }
    if core.snapshot().settings.start_minimised
        && let Some(w) = app.get_webview_window("main")
    {
        let _ = w.hide();
    }
    let (handle, started) = (app.clone(), core.clone());
    tauri::async_runtime::spawn(async move {
        if let Err(e) = started.start().await {
            tracing::error!("start: {e}");
            core_error(&handle, e);
        }
        tray::show_presence(&handle, &started.snapshot().presence);
        for l in links {
            if let Err(e) = started.open_link(&l) {
                core_error(&handle, e);
            }
        }
    });
    core
}

/// Another `vaxel-desktop` was started while this one runs (tauri-plugin-single-instance
/// handed us its arguments; it has exited): come forward and call its `tel:`/`sip:` links.
pub fn second_launch<R: Runtime>(app: &AppHandle<R>, argv: Vec<String>) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
    let Some(core) = app.try_state::<Arc<AppCore>>() else {
        return;
    };
    for link in links::from_args(argv.into_iter().skip(1)) {
        tracing::info!("a second launch asks to call {link}");
        if let Err(e) = core.open_link(&link) {
            core_error(app, e);
        }
    }
}

fn core_error<R: Runtime>(app: &AppHandle<R>, error: dto::UiError) {
    let _ = app.emit(EVENT, UiEvent::Error { error });
}

/// A lighter WebKitGTK for a one-page app that loads nothing from the network: the
/// memory cache sized for one document (`DocumentViewer`), no page cache, and no WebGL,
/// WebAudio, media, media streams, DNS prefetch or offline/database storage (Vaxel's
/// sound is the phone's, not the page's). `VAXEL_WEBKIT_DEFAULTS=1` keeps WebKit's
/// defaults (scripts/bench-desktop.sh measures both).
#[cfg(target_os = "linux")]
fn lighten_webview(app: &AppHandle<tauri::Wry>) {
    if std::env::var_os("VAXEL_WEBKIT_DEFAULTS").is_some() {
        return;
    }
    let Some(w) = app.get_webview_window("main") else {
        return;
    };
    let r = w.with_webview(|pv| {
        use webkit2gtk::{SettingsExt, WebContextExt, WebViewExt};
        let view = pv.inner();
        if let Some(ctx) = view.context() {
            ctx.set_cache_model(webkit2gtk::CacheModel::DocumentViewer);
        }
        if let Some(s) = WebViewExt::settings(&view) {
            s.set_enable_page_cache(false);
            s.set_enable_webgl(false);
            s.set_enable_webaudio(false);
            s.set_enable_media(false);
            s.set_enable_media_stream(false);
            s.set_enable_dns_prefetching(false);
            s.set_enable_html5_database(false);
            s.set_enable_offline_web_application_cache(false);
        }
    });
    if let Err(e) = r {
        tracing::debug!("web view settings: {e}");
    }
}

/// Runs the desktop app (the `vaxel-desktop` program).
pub fn run() {
    since_start_ms();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAXEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let links = links::from_args(std::env::args().skip(1));
    let app = builder::<tauri::Wry>()
        // First of the plugins: a second launch gives us its links and exits.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            second_launch(app, argv)
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_global_shortcut::Builder::new().build())
        .plugin(tauri_plugin_dialog::init())
        .setup(move |app| {
            let handle = app.handle().clone();
            #[cfg(target_os = "linux")]
            lighten_webview(&handle);
            let core = attach(&handle, core_options(&handle), true, links);
            hotkeys::apply(&handle, &core.snapshot().settings);
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vaxel-desktop: {e}");
            std::process::exit(2);
        }
    };
    app.run(|app, event| {
        if let tauri::RunEvent::Exit = event
            && let Some(core) = app.try_state::<Arc<AppCore>>()
        {
            core.shutdown();
        }
    });
}
