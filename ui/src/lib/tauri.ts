import { invoke, Channel } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import type { Backend } from './backend';
import type {
  AccountForm, AccountView, AudioDevice, ContactView, HistoryPage, MediaUpdate, NotificationText, Person,
  Presence, SearchHit, Settings, Snapshot, UiEvent, VcardReport,
} from './bindings';

/** The app's backend: Tauri commands, the `vaxel://event` event and a media channel. */
export class TauriBackend implements Backend {
  snapshot() { return invoke<Snapshot>('snapshot'); }
  setupHost() { return invoke<Snapshot>('setup_host'); }
  setupServer(account: AccountForm) { return invoke<Snapshot>('setup_server', { account }); }
  call(target: string) { return invoke<void>('call', { target }); }
  answer(call: number) { return invoke<void>('answer', { call }); }
  decline(call: number) { return invoke<void>('decline', { call }); }
  hangup(call: number) { return invoke<void>('hangup', { call }); }
  hold(call: number, hold: boolean) { return invoke<void>('hold', { call, hold }); }
  mute(call: number, muted: boolean) { return invoke<void>('mute', { call, muted }); }
  dtmf(call: number, digits: string) { return invoke<void>('dtmf', { call, digits }); }
  transfer(call: number, target: string) { return invoke<void>('transfer', { call, target }); }
  consult(call: number, target: string) { return invoke<void>('consult', { call, target }); }
  completeTransfer(call: number) { return invoke<void>('complete_transfer', { call }); }
  cancelConsult(call: number) { return invoke<void>('cancel_consult', { call }); }
  swap(call: number) { return invoke<void>('swap', { call }); }
  merge() { return invoke<void>('merge'); }
  setNotificationText(text: NotificationText) { return invoke<void>('set_notification_text', { text }); }
  sendToVoicemail(call: number) { return invoke<void>('send_to_voicemail', { call }); }
  search(query: string) { return invoke<SearchHit[]>('search', { query }); }
  history(limit?: number) { return invoke<HistoryPage>('history', { limit: limit ?? null }); }
  markMissedSeen() { return invoke<void>('mark_missed_seen'); }
  directory() { return invoke<Person[]>('directory'); }
  contacts() { return invoke<ContactView[]>('contacts'); }
  saveContact(contact: ContactView) { return invoke<ContactView>('save_contact', { contact }); }
  vcardImport(path: string) { return invoke<VcardReport>('vcard_import', { path }); }
  vcardExport(path: string) { return invoke<VcardReport>('vcard_export', { path }); }
  vcardImportDialog(title: string) { return invoke<VcardReport | null>('vcard_import_dialog', { title }); }
  vcardExportDialog(title: string) { return invoke<VcardReport | null>('vcard_export_dialog', { title }); }
  setPresence(presence: Presence) { return invoke<void>('set_presence', { presence }); }
  setSettings(settings: Settings) { return invoke<Settings>('set_settings', { settings }); }
  accounts() { return invoke<AccountView[]>('accounts'); }
  saveAccount(account: AccountForm) { return invoke<AccountView>('save_account', { account }); }
  audioDevices() { return invoke<AudioDevice[]>('audio_devices'); }
  testTone(ringing: boolean) { return invoke<void>('test_tone', { ringing }); }
  micTest(on: boolean) { return invoke<void>('mic_test', { on }); }
  registerLinks() { return invoke<string>('register_links'); }
  uiReady() { return invoke<void>('ui_ready'); }
  async onEvent(handler: (e: UiEvent) => void) {
    return listen<UiEvent>('vaxel://event', (e) => handler(e.payload));
  }
  async onMedia(handler: (m: MediaUpdate) => void) {
    const channel = new Channel<MediaUpdate>();
    channel.onmessage = handler;
    await invoke('media_channel', { channel });
  }
}
