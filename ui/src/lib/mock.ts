// An in-memory backend that behaves like the app's: the demo office, search where every
// word must match, calls that get answered, history. Component tests drive it; `vite dev`
// in a browser uses it too.
import type { Backend } from './backend';
import type {
  AccountForm, AccountView, AudioDevice, CallView, ContactView, HistoryItem, HistoryPage,
  MediaUpdate, NotificationText, Person, Presence, SearchHit, Settings, Snapshot, UiError, UiEvent, VcardReport,
} from './bindings';

const people: Person[] = [
  ['4001', 'Alice Andersen', 'Management', 'Managing director'],
  ['4002', 'Bo Berg', 'Sales', 'Account manager'],
  ['4003', 'Carla Christensen', 'Reception', 'Receptionist'],
  ['4004', 'Dan Dahl', 'Support', 'Support engineer'],
  ['4005', 'Eva Eriksen', 'Support', 'Trainee'],
].map(([extension, name, department, title]) => ({
  extension, name, department, title, number: `+457010${extension}`, mobile: '', email: '',
  phone: 'idle', presence: { activity: 'available', until: '', note: '' },
}));

function err(code: UiError['code'], message: string): UiError {
  return { code, message };
}

export class MockBackend implements Backend {
  snap: Snapshot = {
    mode: 'unset', me: null, accounts: [], calls: [], unseenMissed: 0,
    presence: { activity: 'available', until: '', note: '' },
    settings: {
      theme: 'system', language: 'en', echoCancellation: true, inputDevice: '', outputDevice: '',
      ringDevice: '', startMinimised: false, notifications: true,
      hotkeyAnswer: 'Ctrl+Alt+A', hotkeyHangup: 'Ctrl+Alt+E', hotkeyMute: 'Ctrl+Alt+M',
    },
    engine: null, controlApi: '', version: '0.1.0',
  };
  contactList: ContactView[] = [];
  historyList: HistoryItem[] = [];
  nextCall = 1;
  nextId = 1;
  sent: { cmd: string; args: unknown }[] = [];
  /** Calls to these numbers are answered. */
  answering = true;
  private handlers: ((e: UiEvent) => void)[] = [];
  private media: ((m: MediaUpdate) => void)[] = [];

  emit(e: UiEvent) { for (const h of this.handlers) h(e); }
  emitMedia(m: MediaUpdate) { for (const h of this.media) h(m); }
  private log(cmd: string, args: unknown = null) { this.sent.push({ cmd, args }); }
  private find(call: number): CallView {
    const c = this.snap.calls.find((c) => c.call === call);
    if (!c) throw err('bad_command', `no call ${call}`);
    return c;
  }
  private update(c: CallView) {
    this.snap.calls = this.snap.calls.map((x) => (x.call === c.call ? c : x));
    this.emit({ type: 'call', call: { ...c } });
  }
  private end(c: CallView, outcome: string, cause: string) {
    this.snap.calls = this.snap.calls.filter((x) => x.call !== c.call);
    const number = c.remote.replace(/^sip:/, '').split('@')[0];
    this.historyList.unshift({
      id: this.nextId++, direction: c.direction, outcome, remote: c.remote, name: c.remoteName,
      number, startedAt: Date.now(), durationS: c.answeredAt ? 1 : null, seen: outcome !== 'missed',
      via: this.viaOf.get(c.call) ?? '',
    });
    if (outcome === 'missed') this.snap.unseenMissed += 1;
    this.emit({ type: 'ended', call: c.call, cause });
    this.emit({ type: 'history', unseenMissed: this.snap.unseenMissed });
    // With one member left the conference is over, as the phone says.
    const members = this.snap.calls.filter((x) => x.conference);
    if (members.length === 1) this.update({ ...members[0], conference: false });
  }

  /** The group each incoming call came through ("via Sales"). */
  private viaOf = new Map<number, string>();
  /** A call comes in (tests), through group `via` when given. */
  ring(from: string, name = '', via = ''): number {
    const c: CallView = {
      call: this.nextCall++, remote: from, remoteName: name, direction: 'incoming', state: 'ringing',
      held: false, remoteHeld: false, muted: false, codec: '', answeredAt: null, consultOf: null,
      conference: false,
    };
    this.snap.calls.push(c);
    if (via) this.viaOf.set(c.call, via);
    this.emit({ type: 'incoming', call: { ...c }, via });
    return c.call;
  }
  /** The caller gives up (tests). */
  callerGivesUp(call: number) { this.end(this.find(call), 'missed', 'remote_cancelled'); }

  async snapshot() { return structuredClone(this.snap); }
  async setupHost() {
    this.log('setup_host');
    this.snap.mode = 'host';
    this.snap.me = { extension: '4001', name: 'Alice Andersen', uri: 'sip:4001@demo.vaxel.test' };
    this.snap.engine = { sip: '127.0.0.1:5060', domain: 'demo.vaxel.test', name: 'Vaxel Demo A/S' };
    this.snap.accounts = [{ name: 'office', uri: 'sip:4001@demo.vaxel.test', proxy: 'sip:127.0.0.1:5060', registration: 'registered', reason: '' }];
    return this.snapshot();
  }
  async setupServer(account: AccountForm) {
    this.log('setup_server', account);
    if (!account.uri.includes('@')) throw err('bad_command', `not a SIP URI: ${account.uri}`);
    // A Vaxel engine's control API: the demo office's password, as the engine checks it.
    if (account.api.trim() && account.password !== 'alice-4001') {
      throw err('bad_credentials', `the engine at ${account.api} refused the login: wrong username or password`);
    }
    this.snap.mode = 'server';
    this.snap.controlApi = account.api.trim() ? (account.api.includes('://') ? account.api : `http://${account.api}`) : '';
    this.snap.accounts = [{ name: account.name, uri: account.uri, proxy: account.proxy, registration: 'registering', reason: '' }];
    return this.snapshot();
  }
  /** Holds every call that is up and not `except`, as the app's core does. */
  private holdOthers(except: number | null) {
    for (const c of this.snap.calls) {
      if (c.state === 'established' && !c.held && c.call !== except) this.update({ ...c, held: true, conference: false });
    }
  }
  async call(target: string, consultOf: number | null = null) {
    this.log('call', target);
    if (!target.trim()) throw err('bad_command', 'nothing to call');
    this.holdOthers(null);
    const p = people.find((p) => p.extension === target || p.number === target);
    const c: CallView = {
      call: this.nextCall++, remote: `sip:${target}@demo.vaxel.test`, remoteName: p?.name ?? '',
      direction: 'outgoing', state: 'calling', held: false, remoteHeld: false, muted: false,
      codec: '', answeredAt: null, consultOf, conference: false,
    };
    this.snap.calls.push(c);
    this.emit({ type: 'call', call: { ...c } });
    if (this.answering) {
      queueMicrotask(() => this.update({ ...c, state: 'established', codec: 'opus', answeredAt: Date.now() }));
    }
  }
  async answer(call: number) {
    this.log('answer', call);
    const c = this.find(call);
    this.holdOthers(call);
    this.update({ ...c, state: 'established', codec: 'opus', answeredAt: Date.now() });
  }
  async decline(call: number) {
    this.log('decline', call);
    this.end(this.find(call), 'declined', 'local_rejected 603');
  }
  async hangup(call: number) {
    this.log('hangup', call);
    const c = this.find(call);
    this.end(c, c.answeredAt ? 'answered' : 'cancelled', 'local_hangup');
  }
  async hold(call: number, hold: boolean) { this.log('hold', { call, hold }); this.update({ ...this.find(call), held: hold }); }
  async mute(call: number, muted: boolean) { this.log('mute', { call, muted }); this.update({ ...this.find(call), muted }); }
  async dtmf(call: number, digits: string) { this.find(call); this.log('dtmf', { call, digits }); }
  async transfer(call: number, target: string) {
    this.log('transfer', { call, target });
    this.end(this.find(call), 'answered', 'transferred');
  }
  async consult(call: number, target: string) {
    this.find(call);
    this.log('consult', { call, target });
    await this.call(target, call);
  }
  async completeTransfer(call: number) {
    const c = this.find(call);
    if (c.consultOf == null) throw err('bad_command', `call ${call} is no consultation`);
    this.log('complete_transfer', call);
    this.end(this.find(c.consultOf), 'answered', 'transferred');
    this.end(c, 'answered', 'transferred');
  }
  async cancelConsult(call: number) {
    const c = this.find(call);
    if (c.consultOf == null) throw err('bad_command', `call ${call} is no consultation`);
    this.log('cancel_consult', call);
    const held = this.find(c.consultOf);
    this.end(c, 'answered', 'local_hangup');
    this.update({ ...held, held: false });
  }
  async swap(call: number) {
    this.log('swap', call);
    const c = this.find(call);
    this.holdOthers(call);
    this.update({ ...c, held: false });
  }
  async merge() {
    const up = this.snap.calls.filter((c) => c.state === 'established');
    if (up.length < 2) throw err('bad_command', 'merge needs two calls that are up');
    this.log('merge');
    for (const c of up) this.update({ ...c, held: false, conference: true, consultOf: null });
  }
  /** The notifications' words the UI sent last. */
  notificationText: NotificationText | null = null;
  async setNotificationText(text: NotificationText) { this.notificationText = text; }
  async sendToVoicemail(call: number) {
    this.log('send_to_voicemail', call);
    this.end(this.find(call), 'declined', 'local_rejected 302');
  }
  async search(query: string): Promise<SearchHit[]> {
    this.log('search', query);
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const matches = (fields: string[]) =>
      words.every((w) => fields.some((f) => f.toLowerCase().split(/[\s,.-]+/).some((t) => t.startsWith(w)) || f.startsWith(w)));
    const hits: SearchHit[] = [];
    for (const c of this.contactList) {
      if (matches([c.name, c.organisation, ...c.numbers]))
        hits.push({ kind: 'contact', id: c.id ?? 0, display: c.name, detail: c.organisation, number: c.numbers[0] ?? c.sipUris[0] ?? '', favourite: c.favourite });
    }
    for (const p of people) {
      if (matches([p.name, p.extension, p.number, p.department, p.title]))
        hits.push({ kind: 'directory', id: Number(p.extension), display: p.name, detail: `${p.department} · ${p.title}`, number: p.extension, favourite: false });
    }
    return hits;
  }
  async history(): Promise<HistoryPage> { return { calls: structuredClone(this.historyList), unseenMissed: this.snap.unseenMissed }; }
  async markMissedSeen() {
    this.historyList = this.historyList.map((h) => ({ ...h, seen: true }));
    this.snap.unseenMissed = 0;
    this.emit({ type: 'history', unseenMissed: 0 });
  }
  async directory() {
    // Only an engine (hosted, or a remote one's control API) has a directory.
    if (!this.snap.engine && !this.snap.controlApi) return [];
    return people.map((p) => (p.extension === this.snap.me?.extension ? { ...p, presence: { ...this.snap.presence } } : { ...p }));
  }
  async contacts() { return structuredClone(this.contactList); }
  async saveContact(c: ContactView) {
    if (!c.name.trim()) throw err('bad_command', 'a contact needs a name');
    if (c.id == null) {
      const saved = { ...c, id: this.nextId++ };
      this.contactList.push(saved);
      return saved;
    }
    this.contactList = this.contactList.map((x) => (x.id === c.id ? c : x));
    return c;
  }
  async vcardImport(path: string): Promise<VcardReport> { return { path, contacts: 0, errors: [] }; }
  async vcardExport(path: string): Promise<VcardReport> { return { path, contacts: this.contactList.length, errors: [] }; }
  /** What the next file dialog answers (null: cancelled). */
  dialogPath: string | null = '/home/me/contacts.vcf';
  async vcardImportDialog(title: string) {
    this.log('vcard_import_dialog', title);
    return this.dialogPath == null ? null : this.vcardImport(this.dialogPath);
  }
  async vcardExportDialog(title: string) {
    this.log('vcard_export_dialog', title);
    return this.dialogPath == null ? null : this.vcardExport(this.dialogPath);
  }
  async setPresence(presence: Presence) {
    this.log('set_presence', presence);
    this.snap.presence = presence;
    this.emit({ type: 'presence', presence });
    this.emit({ type: 'directory' });
  }
  async setSettings(settings: Settings) {
    this.log('set_settings', settings);
    const keys = [settings.hotkeyAnswer, settings.hotkeyHangup, settings.hotkeyMute].filter((k) => k.trim()).map((k) => k.toLowerCase());
    if (new Set(keys).size !== keys.length) throw err('bad_command', 'a hotkey is set for two actions');
    this.snap.settings = settings;
    return settings;
  }
  async accounts(): Promise<AccountView[]> { return structuredClone(this.snap.accounts); }
  async saveAccount(a: AccountForm): Promise<AccountView> {
    const v = { name: a.name, uri: a.uri, proxy: a.proxy, registration: 'registering', reason: '' };
    this.snap.accounts = [...this.snap.accounts.filter((x) => x.name !== a.name), v];
    return v;
  }
  async audioDevices(): Promise<AudioDevice[]> {
    return [
      { id: 'mock:mic', name: 'Built-in microphone', direction: 'input', isDefault: true },
      { id: 'mock:speaker', name: 'Built-in speaker', direction: 'output', isDefault: true },
    ];
  }
  async testTone(ringing: boolean) { this.log('test_tone', ringing); }
  async micTest(on: boolean) {
    this.log('mic_test', on);
    // A talking microphone while the test runs.
    if (on) queueMicrotask(() => this.emitMedia({ type: 'mic_level', dbfs: -18 }));
  }
  async registerLinks() { return 'registered'; }
  async uiReady() { this.log('ui_ready'); }
  async onEvent(h: (e: UiEvent) => void) {
    this.handlers.push(h);
    return () => { this.handlers = this.handlers.filter((x) => x !== h); };
  }
  async onMedia(h: (m: MediaUpdate) => void) { this.media.push(h); }
}
