//! The Tauri commands: one thin function per request the UI makes, each a call into
//! [`AppCore`]. Errors reach the UI as `{ code, message }` ([`UiError`]).

use std::sync::{Arc, Mutex};

use tauri::State;
use tauri::ipc::Channel;

use crate::core::AppCore;
use crate::dto::*;

/// The core, as Tauri manages it.
pub type Core<'a> = State<'a, Arc<AppCore>>;

/// Where levels and quality go: the channel the UI opened last.
#[derive(Default)]
pub struct MediaChannel(pub Mutex<Option<Channel<MediaUpdate>>>);

type R<T> = Result<T, UiError>;

/// The state to draw from; events keep it current.
#[tauri::command]
pub fn snapshot(core: Core<'_>) -> Snapshot {
    core.snapshot()
}

/// First run: host the office's switchboard on this computer.
#[tauri::command]
pub async fn setup_host(core: Core<'_>) -> R<Snapshot> {
    core.inner().clone().setup_host().await
}

/// First run: connect to a server with a SIP account, and a Vaxel engine's control API
/// when the form names one.
#[tauri::command]
pub async fn setup_server(core: Core<'_>, account: AccountForm) -> R<Snapshot> {
    core.inner().clone().setup_server(account).await
}

/// Places a call.
#[tauri::command]
pub fn call(core: Core<'_>, target: String) -> R<()> {
    core.call(&target)
}

/// Answers.
#[tauri::command]
pub fn answer(core: Core<'_>, call: u64) -> R<()> {
    core.answer(call)
}

/// Declines.
#[tauri::command]
pub fn decline(core: Core<'_>, call: u64) -> R<()> {
    core.decline(call)
}

/// Hangs up.
#[tauri::command]
pub fn hangup(core: Core<'_>, call: u64) -> R<()> {
    core.hangup(call)
}

/// Holds or resumes.
#[tauri::command]
pub fn hold(core: Core<'_>, call: u64, hold: bool) -> R<()> {
    core.hold(call, hold)
}

/// Mutes or unmutes.
#[tauri::command]
pub fn mute(core: Core<'_>, call: u64, muted: bool) -> R<()> {
    core.mute(call, muted)
}

/// Sends DTMF.
#[tauri::command]
pub fn dtmf(core: Core<'_>, call: u64, digits: String) -> R<()> {
    core.dtmf(call, &digits)
}

/// Blind transfer.
#[tauri::command]
pub fn transfer(core: Core<'_>, call: u64, target: String) -> R<()> {
    core.transfer(call, &target)
}

/// Announced transfer: hold `call` and consult `target`.
#[tauri::command]
pub fn consult(core: Core<'_>, call: u64, target: String) -> R<()> {
    core.consult(call, &target)
}

/// Announced transfer: hand the held call to the consulted colleague.
#[tauri::command]
pub fn complete_transfer(core: Core<'_>, call: u64) -> R<()> {
    core.complete_transfer(call)
}

/// Announced transfer: hang up the consultation, take the held call back.
#[tauri::command]
pub fn cancel_consult(core: Core<'_>, call: u64) -> R<()> {
    core.cancel_consult(call)
}

/// Swap to another call.
#[tauri::command]
pub fn swap(core: Core<'_>, call: u64) -> R<()> {
    core.swap(call)
}

/// Merge the calls into a local conference.
#[tauri::command]
pub fn merge(core: Core<'_>) -> R<()> {
    core.merge()
}

/// Send a ringing call to voicemail.
#[tauri::command]
pub fn send_to_voicemail(core: Core<'_>, call: u64) -> R<()> {
    core.send_to_voicemail(call)
}

/// The OS notifications' words in the UI's language (sent at start and on a change).
#[tauri::command]
pub fn set_notification_text(core: Core<'_>, text: NotificationText) {
    core.set_notification_text(text)
}

/// Search as you type.
#[tauri::command]
pub async fn search(core: Core<'_>, query: String) -> R<Vec<SearchHit>> {
    core.search(&query).await
}

/// The history.
#[tauri::command]
pub async fn history(core: Core<'_>, limit: Option<u32>) -> R<HistoryPage> {
    core.history(limit.unwrap_or(100)).await
}

/// Clears the missed-call badge.
#[tauri::command]
pub async fn mark_missed_seen(core: Core<'_>) -> R<()> {
    core.mark_missed_seen().await
}

/// The office directory.
#[tauri::command]
pub async fn directory(core: Core<'_>) -> R<Vec<Person>> {
    core.directory().await
}

/// Personal contacts.
#[tauri::command]
pub async fn contacts(core: Core<'_>) -> R<Vec<ContactView>> {
    core.contacts().await
}

/// Adds or changes a contact.
#[tauri::command]
pub async fn save_contact(core: Core<'_>, contact: ContactView) -> R<ContactView> {
    core.save_contact(contact).await
}

/// Imports a vCard file.
#[tauri::command]
pub async fn vcard_import(core: Core<'_>, path: String) -> R<VcardReport> {
    core.vcard_import(&path).await
}

/// Exports the contacts to a vCard file.
#[tauri::command]
pub async fn vcard_export(core: Core<'_>, path: String) -> R<VcardReport> {
    core.vcard_export(&path).await
}

/// Imports a vCard file the user picks in the OS file dialog; `None` when cancelled.
#[tauri::command]
pub async fn vcard_import_dialog<Rt: tauri::Runtime>(
    app: tauri::AppHandle<Rt>,
    core: Core<'_>,
    title: String,
) -> R<Option<VcardReport>> {
    match pick_file(&app, title, false).await? {
        Some(path) => core.vcard_import(&path).await.map(Some),
        None => Ok(None),
    }
}

/// Exports the contacts to a vCard file the user names in the OS file dialog; `None`
/// when cancelled.
#[tauri::command]
pub async fn vcard_export_dialog<Rt: tauri::Runtime>(
    app: tauri::AppHandle<Rt>,
    core: Core<'_>,
    title: String,
) -> R<Option<VcardReport>> {
    match pick_file(&app, title, true).await? {
        Some(path) => core.vcard_export(&path).await.map(Some),
        None => Ok(None),
    }
}

/// The OS file dialog (open, or save as `contacts.vcf`), vCard files first.
async fn pick_file<Rt: tauri::Runtime>(
    app: &tauri::AppHandle<Rt>,
    title: String,
    save: bool,
) -> R<Option<String>> {
    use tauri::Manager;
    use tauri_plugin_dialog::DialogExt;
    if app.try_state::<tauri_plugin_dialog::Dialog<Rt>>().is_none() {
        return Err(UiError::new(ErrorCode::NotReady, "no file dialogs here"));
    }
    let dialog = app
        .dialog()
        .file()
        .set_title(title)
        .add_filter("vCard", &["vcf", "vcard"]);
    let picked = tauri::async_runtime::spawn_blocking(move || {
        if save {
            dialog.set_file_name("contacts.vcf").blocking_save_file()
        } else {
            dialog.blocking_pick_file()
        }
    })
    .await
    .map_err(|e| UiError::new(ErrorCode::Environment, e.to_string()))?;
    picked
        .map(|p| {
            p.into_path()
                .map(|p| p.display().to_string())
                .map_err(|e| UiError::new(ErrorCode::Environment, e.to_string()))
        })
        .transpose()
}

/// Sets the user's presence (the tray shows it too).
#[tauri::command]
pub fn set_presence(core: Core<'_>, presence: Presence) -> R<()> {
    core.set_presence(presence)
}

/// Changes the settings. Hotkeys that cannot be parsed or are given twice are refused
/// (nothing saved); one another program holds is saved and reported as an error event.
#[tauri::command]
pub async fn set_settings<Rt: tauri::Runtime>(
    app: tauri::AppHandle<Rt>,
    core: Core<'_>,
    settings: Settings,
) -> R<Settings> {
    crate::hotkeys::check(&settings)?;
    let hotkeys_changed =
        crate::hotkeys::of(&core.snapshot().settings) != crate::hotkeys::of(&settings);
    let saved = core.inner().clone().set_settings(settings).await?;
    if hotkeys_changed {
        crate::hotkeys::apply(&app, &saved);
    }
    Ok(saved)
}

/// The accounts.
#[tauri::command]
pub fn accounts(core: Core<'_>) -> Vec<AccountView> {
    core.accounts()
}

/// Adds or changes an account (password to the OS keychain).
#[tauri::command]
pub async fn save_account(core: Core<'_>, account: AccountForm) -> R<AccountView> {
    core.inner().clone().save_account(account).await
}

/// Plays a test tone on the chosen speaker (or ringing device).
#[tauri::command]
pub async fn test_tone(core: Core<'_>, ringing: bool) -> R<()> {
    core.test_tone(ringing).await
}

/// Starts or stops the microphone test (levels over the media channel).
#[tauri::command]
pub fn mic_test(core: Core<'_>, on: bool) -> R<()> {
    core.mic_test(on)
}

/// The sound devices.
#[tauri::command]
pub async fn audio_devices() -> R<Vec<AudioDevice>> {
    tauri::async_runtime::spawn_blocking(crate::core::audio_devices)
        .await
        .map_err(|e| UiError::new(ErrorCode::Environment, e.to_string()))?
}

/// Where levels and quality of calls go from now on.
#[tauri::command]
pub fn media_channel(media: State<'_, MediaChannel>, channel: Channel<MediaUpdate>) {
    *media.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(channel);
}

/// Registers Vaxel as the handler of `tel:` and `sip:` links (Linux: a desktop entry
/// and `xdg-mime`; the bundlers do it on macOS and Windows).
#[tauri::command]
pub fn register_links() -> R<String> {
    crate::links::register().map_err(|e| UiError::new(ErrorCode::Environment, e))
}

/// The UI has drawn itself from the first snapshot: the start-up figure's end point.
#[tauri::command]
pub fn ui_ready() {
    eprintln!("vaxel-desktop ui ready ms={:.0}", crate::since_start_ms());
}
