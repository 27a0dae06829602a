// The one interface the UI talks to (ARCHITECTURE.md §7): the Tauri implementation in
// the app (tauri.ts), an in-memory one for component tests and `vite dev` (mock.ts).
import type {
  AccountForm, AccountView, AudioDevice, ContactView, HistoryPage, MediaUpdate, NotificationText, Person,
  Presence, SearchHit, Settings, Snapshot, UiError, UiEvent, VcardReport,
} from './bindings';

export interface Backend {
  snapshot(): Promise<Snapshot>;
  setupHost(): Promise<Snapshot>;
  setupServer(account: AccountForm): Promise<Snapshot>;
  call(target: string): Promise<void>;
  answer(call: number): Promise<void>;
  decline(call: number): Promise<void>;
  hangup(call: number): Promise<void>;
  hold(call: number, hold: boolean): Promise<void>;
  mute(call: number, muted: boolean): Promise<void>;
  dtmf(call: number, digits: string): Promise<void>;
  transfer(call: number, target: string): Promise<void>;
  /** Announced transfer: hold `call` and call `target` to consult them. */
  consult(call: number, target: string): Promise<void>;
  /** Hand the held call over to the consulted colleague (`call` is the consultation). */
  completeTransfer(call: number): Promise<void>;
  /** Hang up the consultation and take the held call back. */
  cancelConsult(call: number): Promise<void>;
  /** Hold the other calls and talk to `call`. */
  swap(call: number): Promise<void>;
  /** Merge the calls that are up into a local conference. */
  merge(): Promise<void>;
  /** The OS notifications' words in the UI's language. */
  setNotificationText(text: NotificationText): Promise<void>;
  /** Send a ringing call to voicemail. */
  sendToVoicemail(call: number): Promise<void>;
  search(query: string): Promise<SearchHit[]>;
  history(limit?: number): Promise<HistoryPage>;
  markMissedSeen(): Promise<void>;
  directory(): Promise<Person[]>;
  contacts(): Promise<ContactView[]>;
  saveContact(contact: ContactView): Promise<ContactView>;
  vcardImport(path: string): Promise<VcardReport>;
  vcardExport(path: string): Promise<VcardReport>;
  /** Import / export through the OS file dialog (titled `title`); null when cancelled. */
  vcardImportDialog(title: string): Promise<VcardReport | null>;
  vcardExportDialog(title: string): Promise<VcardReport | null>;
  setPresence(presence: Presence): Promise<void>;
  setSettings(settings: Settings): Promise<Settings>;
  accounts(): Promise<AccountView[]>;
  saveAccount(account: AccountForm): Promise<AccountView>;
  audioDevices(): Promise<AudioDevice[]>;
  /** Plays a one-second test tone on the chosen speaker (or the ringing device). */
  testTone(ringing: boolean): Promise<void>;
  /** Starts or stops the microphone test (levels come as `mic_level` media updates). */
  micTest(on: boolean): Promise<void>;
  registerLinks(): Promise<string>;
  /** State changes; returns a function that stops listening. */
  onEvent(handler: (e: UiEvent) => void): Promise<() => void>;
  /** The UI has drawn itself from the first snapshot (the start-up figure's end point). */
  uiReady(): Promise<void>;
  /** Levels (ten a second) and call quality. */
  onMedia(handler: (m: MediaUpdate) => void): Promise<void>;
}

/** Whatever a backend rejected with, as `{ code, message }`. */
export function asUiError(e: unknown): UiError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) return e as UiError;
  return { code: 'environment', message: String(e) };
}
