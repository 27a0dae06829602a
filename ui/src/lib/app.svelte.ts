// The UI's state: seeded from the backend's snapshot, kept current by its events
// (ARCHITECTURE.md §3.4), plus levels and quality from the media channel.
import type { Backend } from './backend';
import { asUiError } from './backend';
import type { CallView, Person, Presence, Snapshot, UiError, UiEvent } from './bindings';
import { translate, type Key } from './i18n';

export type Screen = 'dial' | 'history' | 'directory' | 'contacts' | 'settings';

export interface Quality { codec: string; lossPercent: number; jitterMs: number; rttMs: number | null }

export class AppState {
  snap = $state<Snapshot | null>(null);
  screen = $state<Screen>('dial');
  incoming = $state<{ call: CallView; via: string } | null>(null);
  levels = $state<Record<number, { input: number; output: number }>>({});
  quality = $state<Record<number, Quality>>({});
  errors = $state<UiError[]>([]);
  directory = $state<Person[]>([]);
  historyVersion = $state(0);
  dialText = $state('');
  /** The settings' microphone test, dBFS. */
  micLevel = $state(-100);

  constructor(public backend: Backend) {}

  t = (key: Key) => translate(this.snap?.settings.language ?? 'en', key);

  get calls(): CallView[] { return this.snap?.calls ?? []; }
  /** Calls past ringing in (placed, up, held), oldest first. */
  get liveCalls(): CallView[] {
    return this.calls.filter((c) => !(c.direction === 'incoming' && c.state === 'ringing'));
  }
  /** The call the in-call panel shows: the newest one not on hold, else the newest. */
  get activeCall(): CallView | undefined {
    const live = this.liveCalls;
    return [...live].reverse().find((c) => !c.held) ?? live[live.length - 1];
  }
  /** The other calls (on hold, or in the conference with the active one). */
  get otherCalls(): CallView[] {
    const a = this.activeCall;
    return this.liveCalls.filter((c) => c.call !== a?.call);
  }

  async init() {
    await this.backend.onEvent((e) => this.apply(e));
    await this.backend.onMedia((m) => {
      if (m.type === 'levels') this.levels[m.call] = { input: m.input, output: m.output };
      else if (m.type === 'mic_level') this.micLevel = m.dbfs;
      else this.quality[m.call] = { codec: m.codec, lossPercent: m.lossPercent, jitterMs: m.jitterMs, rttMs: m.rttMs };
    });
    this.snap = await this.backend.snapshot();
    if (this.snap.mode !== 'unset') void this.refreshDirectory();
    // After the first paint with the snapshot.
    requestAnimationFrame(() => void this.backend.uiReady().catch(() => {}));
  }

  async refreshDirectory() {
    try { this.directory = await this.backend.directory(); } catch (e) { this.fail(e); }
  }

  fail(e: unknown) { this.errors = [...this.errors, asUiError(e)]; }

  /** Runs a backend request; errors are shown, not thrown. */
  async run<T>(f: () => Promise<T>): Promise<T | undefined> {
    try { return await f(); } catch (e) { this.fail(e); return undefined; }
  }

  apply(e: UiEvent) {
    const s = this.snap;
    if (!s) return;
    switch (e.type) {
      case 'reset':
        void this.backend.snapshot().then((n) => { this.snap = n; void this.refreshDirectory(); });
        break;
      case 'account':
        s.accounts = [...s.accounts.filter((a) => a.name !== e.account.name), e.account];
        break;
      case 'incoming':
        s.calls = [...s.calls.filter((c) => c.call !== e.call.call), e.call];
        this.incoming = { call: e.call, via: e.via };
        break;
      case 'call':
        s.calls = s.calls.some((c) => c.call === e.call.call)
          ? s.calls.map((c) => (c.call === e.call.call ? e.call : c))
          : [...s.calls, e.call];
        if (this.incoming?.call.call === e.call.call && e.call.state !== 'ringing') this.incoming = null;
        break;
      case 'ended':
        s.calls = s.calls.filter((c) => c.call !== e.call);
        if (this.incoming?.call.call === e.call) this.incoming = null;
        delete this.levels[e.call];
        break;
      case 'history':
        s.unseenMissed = e.unseenMissed;
        this.historyVersion += 1;
        break;
      case 'directory':
        void this.refreshDirectory();
        break;
      case 'presence':
        s.presence = e.presence;
        break;
      case 'dial':
        this.screen = 'dial';
        break;
      case 'error':
        this.errors = [...this.errors, e.error];
        break;
      case 'dtmf':
      case 'message':
        break;
    }
  }

  async setPresence(p: Presence) {
    await this.run(() => this.backend.setPresence(p));
    if (this.snap) this.snap.presence = p;
  }
}
