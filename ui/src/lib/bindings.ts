// Generated from src-tauri/src/dto.rs by ts-rs; do not edit.
// Regenerate: VAXEL_BLESS=1 cargo test -p vaxel-desktop bindings

export type UiError = { 
/**
 * Whose fault.
 */
code: ErrorCode, 
/**
 * For people.
 */
message: string, };

export type ErrorCode = "bad_command" | "network" | "environment" | "not_ready" | "timeout" | "bad_credentials";

export type Mode = "unset" | "host" | "server";

export type AccountForm = { 
/**
 * A short name ("work").
 */
name: string, 
/**
 * Address-of-record: `sip:user@domain` or `user@domain`.
 */
uri: string, 
/**
 * Outbound proxy (`sip:host:port`), empty for none.
 */
proxy: string, 
/**
 * `udp`, `tcp` or `tls`.
 */
transport: string, 
/**
 * The password; empty keeps the stored one.
 */
password: string, 
/**
 * A Vaxel engine's control API (`http://host:port`), empty for none: the
 * directory, colleagues' presence and the call history come from it (R-315).
 */
api: string, };

export type AccountView = { 
/**
 * Its name.
 */
name: string, 
/**
 * Its address-of-record.
 */
uri: string, 
/**
 * Outbound proxy.
 */
proxy: string, 
/**
 * `idle`, `registering`, `registered`, `failed`, `unregistering`, `none`.
 */
registration: string, 
/**
 * Why it failed, when it did.
 */
reason: string, };

export type Me = { 
/**
 * Extension (or the account's user part).
 */
extension: string, 
/**
 * Name.
 */
name: string, 
/**
 * Address-of-record.
 */
uri: string, };

export type EngineInfo = { 
/**
 * Where phones register (`127.0.0.1:5060`).
 */
sip: string, 
/**
 * The office's SIP domain.
 */
domain: string, 
/**
 * The office's name.
 */
name: string, };

export type CallView = { 
/**
 * The call's handle.
 */
call: number, 
/**
 * The far end's URI.
 */
remote: string, 
/**
 * The far end's name, when the directory or contacts know it.
 */
remoteName: string, 
/**
 * `outgoing` or `incoming`.
 */
direction: string, 
/**
 * `calling`, `ringing`, `early`, `established`, `ended`.
 */
state: string, 
/**
 * We hold it.
 */
held: boolean, 
/**
 * The far end holds it.
 */
remoteHeld: boolean, 
/**
 * We muted it.
 */
muted: boolean, 
/**
 * The codec, once established.
 */
codec: string, 
/**
 * When it was answered (ms since the Unix epoch), for the call timer.
 */
answeredAt: number | null, 
/**
 * This call consults a colleague about that (held) call: an announced transfer
 * can hand that call over to this one's far end.
 */
consultOf: number | null, 
/**
 * The call is in the local conference (merged).
 */
conference: boolean, };

export type Snapshot = { 
/**
 * The first-run choice.
 */
mode: Mode, 
/**
 * The user.
 */
me: Me | null, 
/**
 * Accounts and their registration.
 */
accounts: Array<AccountView>, 
/**
 * Calls in progress.
 */
calls: Array<CallView>, 
/**
 * Missed calls not seen yet (the badge).
 */
unseenMissed: number, 
/**
 * The user's presence.
 */
presence: Presence, 
/**
 * Settings.
 */
settings: Settings, 
/**
 * The embedded engine, when hosting.
 */
engine: EngineInfo | null, 
/**
 * The remote engine's control API the directory comes from, when connected to
 * one (`http://host:port`); empty otherwise.
 */
controlApi: string, 
/**
 * The app's version.
 */
version: string, };

export type HistoryItem = { 
/**
 * Its id.
 */
id: number, 
/**
 * `outgoing` or `incoming`.
 */
direction: string, 
/**
 * `answered`, `missed`, `declined`, `failed`, `cancelled`, `in_progress`.
 */
outcome: string, 
/**
 * The far end's URI.
 */
remote: string, 
/**
 * The far end's name, when known.
 */
name: string, 
/**
 * What to dial to call back.
 */
number: string, 
/**
 * Start, ms since the Unix epoch.
 */
startedAt: number, 
/**
 * Talk time in seconds, when answered.
 */
durationS: number | null, 
/**
 * A missed call the user has seen.
 */
seen: boolean, 
/**
 * The group it came in through ("Sales"), else empty: shown as "via Sales".
 */
via: string, };

export type HistoryPage = { 
/**
 * Newest first.
 */
calls: Array<HistoryItem>, 
/**
 * Missed calls not seen yet.
 */
unseenMissed: number, };

export type SearchHit = { 
/**
 * `contact`, `history` or `directory`.
 */
kind: string, 
/**
 * The record's id in its source.
 */
id: number, 
/**
 * The name shown.
 */
display: string, 
/**
 * A second line.
 */
detail: string, 
/**
 * What to dial.
 */
number: string, 
/**
 * A favourite contact.
 */
favourite: boolean, };

export type ContactView = { 
/**
 * Its id; `null` for a new contact.
 */
id: number | null, 
/**
 * Name.
 */
name: string, 
/**
 * Company.
 */
organisation: string, 
/**
 * Phone numbers.
 */
numbers: Array<string>, 
/**
 * SIP addresses.
 */
sipUris: Array<string>, 
/**
 * E-mail addresses.
 */
emails: Array<string>, 
/**
 * A favourite.
 */
favourite: boolean, };

export type VcardReport = { 
/**
 * The file.
 */
path: string, 
/**
 * Contacts read or written.
 */
contacts: number, 
/**
 * Cards that could not be read.
 */
errors: Array<string>, };

export type Activity = "available" | "in_office" | "remote" | "busy" | "meeting" | "lunch" | "sick" | "off" | "vacation" | "unknown";

export type Presence = { 
/**
 * The activity.
 */
activity: Activity, 
/**
 * Until when (`HH:MM` or an ISO date-time), empty for until further notice.
 */
until: string, 
/**
 * A note.
 */
note: string, };

export type NotificationText = { 
/**
 * The title of an incoming call's notification ("Incoming call").
 */
incomingCall: string, 
/**
 * The word before a group's name ("via" Sales).
 */
via: string, };

export type Person = { 
/**
 * Extension.
 */
extension: string, 
/**
 * Name.
 */
name: string, 
/**
 * Long number.
 */
number: string, 
/**
 * Mobile.
 */
mobile: string, 
/**
 * E-mail.
 */
email: string, 
/**
 * Department.
 */
department: string, 
/**
 * Title.
 */
title: string, 
/**
 * `idle`, `ringing`, `busy`, or `offline` (no device registered).
 */
phone: string, 
/**
 * Presence.
 */
presence: Presence, };

export type Theme = "system" | "light" | "dark";

export type Settings = { 
/**
 * Theme.
 */
theme: Theme, 
/**
 * UI language: `en`, `da`, `sv`, `nb`, `fi`.
 */
language: string, 
/**
 * Echo cancellation.
 */
echoCancellation: boolean, 
/**
 * Microphone device id, empty for the OS default.
 */
inputDevice: string, 
/**
 * Speaker device id, empty for the OS default.
 */
outputDevice: string, 
/**
 * Ringing device id, empty for the speaker.
 */
ringDevice: string, 
/**
 * Start minimised to the tray.
 */
startMinimised: boolean, 
/**
 * Show OS notifications for incoming calls.
 */
notifications: boolean, 
/**
 * Global hotkey that answers a ringing call ("Ctrl+Alt+A"; empty: none). Works
 * while another program has the focus.
 */
hotkeyAnswer: string, 
/**
 * Global hotkey that hangs up the call in progress.
 */
hotkeyHangup: string, 
/**
 * Global hotkey that mutes or unmutes the call in progress.
 */
hotkeyMute: string, };

export type AudioDevice = { 
/**
 * Stable id to store in settings.
 */
id: string, 
/**
 * Name for people.
 */
name: string, 
/**
 * `input` or `output`.
 */
direction: string, 
/**
 * The OS default of its direction.
 */
isDefault: boolean, };

export type MediaUpdate = { "type": "levels", 
/**
 * The call.
 */
call: number, 
/**
 * Microphone.
 */
input: number, 
/**
 * Speaker (the far end).
 */
output: number, } | { "type": "quality", 
/**
 * The call.
 */
call: number, 
/**
 * Codec.
 */
codec: string, 
/**
 * Loss in percent.
 */
lossPercent: number, 
/**
 * Jitter in ms.
 */
jitterMs: number, 
/**
 * Round trip in ms.
 */
rttMs: number | null, } | { "type": "mic_level", 
/**
 * RMS over the last 100 ms (−100 silence … 0 full scale).
 */
dbfs: number, };

export type UiEvent = { "type": "reset" } | { "type": "account", 
/**
 * The account.
 */
account: AccountView, } | { "type": "call", 
/**
 * The call.
 */
call: CallView, } | { "type": "incoming", 
/**
 * The call.
 */
call: CallView, 
/**
 * "via group X" when it came through a group, else empty.
 */
via: string, } | { "type": "ended", 
/**
 * The call.
 */
call: number, 
/**
 * Why, for people (`remote_hangup`, `rejected 486`…).
 */
cause: string, } | { "type": "dtmf", 
/**
 * The call.
 */
call: number, 
/**
 * The digit.
 */
digit: string, } | { "type": "message", 
/**
 * From whom.
 */
from: string, 
/**
 * The text.
 */
text: string, } | { "type": "history", 
/**
 * Missed calls not seen yet.
 */
unseenMissed: number, } | { "type": "directory" } | { "type": "presence", 
/**
 * The presence.
 */
presence: Presence, } | { "type": "dial", 
/**
 * The address.
 */
uri: string, } | { "type": "error", 
/**
 * The error.
 */
error: UiError, };
