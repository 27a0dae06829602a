//! Global hotkeys (answer, hang up, mute) from the settings, registered with
//! tauri-plugin-global-shortcut so they work while another program has the focus. A key
//! another program holds is reported to the UI as an error naming the key and action.

use std::str::FromStr;
use std::sync::Arc;

use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Shortcut, ShortcutState};

use crate::core::AppCore;
use crate::dto::{ErrorCode, Settings, UiError, UiEvent};

/// The settings' hotkeys as (action, key), empty keys left out.
pub fn of(s: &Settings) -> Vec<(&'static str, String)> {
    [
        ("answer", &s.hotkey_answer),
        ("hangup", &s.hotkey_hangup),
        ("mute", &s.hotkey_mute),
    ]
    .into_iter()
    .filter(|(_, k)| !k.trim().is_empty())
    .map(|(a, k)| (a, k.trim().to_string()))
    .collect()
}

/// Refuses a key that is not one ("Ctrl+Alt+A", "Shift+F9"…) or one given to two
/// actions (the caller's fault).
pub fn check(s: &Settings) -> Result<(), UiError> {
    let mut seen: Vec<(Shortcut, &str)> = Vec::new();
    for (action, key) in of(s) {
        let k = Shortcut::from_str(&key).map_err(|e| {
            UiError::new(
                ErrorCode::BadCommand,
                format!("hotkey for {action}: {key:?} is not a key ({e})"),
            )
        })?;
        if let Some((_, other)) = seen.iter().find(|(o, _)| *o == k) {
            return Err(UiError::new(
                ErrorCode::BadCommand,
                format!("hotkey {key} is set for both {other} and {action}"),
            ));
        }
        seen.push((k, action));
    }
    Ok(())
}

/// Registers the settings' hotkeys in place of the ones before. Does nothing where the
/// plugin is not installed (the mock runtime).
pub fn apply<R: Runtime>(app: &AppHandle<R>, s: &Settings) {
    if app
        .try_state::<tauri_plugin_global_shortcut::GlobalShortcut<R>>()
        .is_none()
    {
        return;
    }
    let gs = app.global_shortcut();
    if let Err(e) = gs.unregister_all() {
        tracing::debug!("hotkeys: {e}");
    }
    for (action, key) in of(s) {
        let r = gs.on_shortcut(key.as_str(), move |app, _, event| {
            if event.state != ShortcutState::Pressed {
                return;
            }
            if let Some(core) = app.try_state::<Arc<AppCore>>()
                && let Err(error) = core.hotkey(action)
            {
                let _ = tauri::Emitter::emit(app, crate::EVENT, UiEvent::Error { error });
            }
        });
        match r {
            Ok(()) => tracing::info!("hotkey {key}: {action}"),
            Err(e) => {
                let error = UiError::new(
                    ErrorCode::Environment,
                    format!("hotkey {key} for {action} is taken by another program ({e})"),
                );
                let _ = tauri::Emitter::emit(app, crate::EVENT, UiEvent::Error { error });
            }
        }
    }
}
