//! The tray icon: presence in its tooltip, and quick actions —
//! show the window, set available or busy, quit.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

use crate::dto::{Activity, Presence};

const TRAY_ID: &str = "vaxel";

/// Builds the tray icon. A desktop without a tray (or a headless test display) makes
/// this fail; the app then runs without one.
pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show Vaxel", true, None::<&str>)?;
    let available = MenuItem::with_id(app, "available", "Available", true, None::<&str>)?;
    let busy = MenuItem::with_id(app, "busy", "Busy", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &available, &busy, &sep, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip("Vaxel")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "show" => {
                if let Some(w) = app.get_webview_window("main") {
                    let _ = w.show();
                    let _ = w.unminimize();
                    let _ = w.set_focus();
                }
            }
            "available" | "busy" => {
                if let Some(core) = app.try_state::<std::sync::Arc<crate::core::AppCore>>() {
                    let activity = if event.id().as_ref() == "busy" {
                        Activity::Busy
                    } else {
                        Activity::Available
                    };
                    let _ = core.set_presence(Presence {
                        activity,
                        ..Presence::default()
                    });
                }
            }
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

/// Shows the presence in the tray's tooltip.
pub fn show_presence<R: Runtime>(app: &AppHandle<R>, presence: &Presence) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let what = serde_json::to_value(presence.activity)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default();
        let _ = tray.set_tooltip(Some(format!("Vaxel — {what}")));
    }
}
