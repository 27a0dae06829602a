// End to end in the real app (issue 7): the desktop app built from this tree, driven by
// WebdriverIO through tauri-driver and WebKitWebDriver, under Xvfb (run it with
// `xvfb-run -a -s "-screen 0 1280x800x24" node ui/e2e/call.e2e.mjs`).
//
// It hosts the office (embedded engine + demo office on a loopback port it picked),
// registers a `vaxel` CLI phone as 4002 that auto-answers playing a tone, calls it from
// the dial field, waits for the call to be up and the speaker meter to move, sends a DTMF
// digit that Bo receives, mutes, holds, consults Dan (4004, a third CLI phone), swaps,
// merges the two calls into a conference, lets Dan leave, consults him again and
// completes the announced transfer (Bo and Dan then talk), finds the call in the
// history, takes an incoming call from a second CLI phone (4003) and declines it, sends
// one from 4005 to voicemail, switches presence and sees it in the directory and at a
// SIP watcher (`vaxel watch`, through the engine's presence server), sees Bo in a call
// (red) and Carla's own published presence (lunch, yellow) in the directory and back to
// available when it is removed, launches the app a second time with tel:4004 (the
// running app takes the link and calls), mutes and hangs up with the global hotkeys
// (xdotool). Screenshots of the
// main screens go to docs/screenshots/. Every process it starts is stopped by its pid.
//
// Environment: VAXEL_DESKTOP_BIN (the app), VAXEL_BIN (the `vaxel` CLI), both default to
// $CARGO_TARGET_DIR/debug/…; TAURI_DRIVER (default: tauri-driver on PATH or in ~/.cargo/bin).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir, homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache/vaxel/target');
const appBin = process.env.VAXEL_DESKTOP_BIN ?? join(target, 'debug/vaxel-desktop');
const vaxelBin = process.env.VAXEL_BIN ?? join(target, 'debug/vaxel');
const driverBin = process.env.TAURI_DRIVER ??
  (existsSync(join(homedir(), '.cargo/bin/tauri-driver')) ? join(homedir(), '.cargo/bin/tauri-driver') : 'tauri-driver');
const shots = join(root, 'docs/screenshots');
const work = mkdtempSync(join(tmpdir(), 'vaxel-e2e-'));
const children = [];
const log = (...a) => console.log('[e2e]', ...a);

function start(name, cmd, args, env = {}) {
  const out = [];
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => out.push(d.toString()));
  child.stderr.on('data', (d) => out.push(d.toString()));
  child.on('error', (e) => out.push(`spawn error: ${e}`));
  children.push({ name, child, out });
  return { child, text: () => out.join('') };
}

function stopAll() {
  for (const { child } of children.reverse()) {
    if (child.exitCode === null && child.pid) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  }
}

async function freeTcpPort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}
async function freeUdpPort() {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

async function until(what, f, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { const v = await f(); if (v) return v; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

// A 440 Hz tone at −12 dBFS, 1 s, 48 kHz mono 16-bit.
function toneWav(path) {
  const rate = 48000, n = rate;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 0.25 * 32767), 44 + i * 2);
  writeFileSync(path, buf);
}

// A private PulseAudio with a null sink: the app's clocked sound card (as vaxel-testkit does).
async function pulse() {
  const dir = join(work, 'pulse');
  mkdirSync(join(dir, 'state'), { recursive: true });
  const script = join(dir, 'test.pa');
  writeFileSync(script, `load-module module-native-protocol-unix auth-anonymous=1 socket=${dir}/native\n` +
    'load-module module-null-sink sink_name=speaker\nset-default-sink speaker\nset-default-source speaker.monitor\n');
  start('pulseaudio', 'pulseaudio', ['-n', '--daemonize=no', '--exit-idle-time=-1', '--use-pid-file=no',
    '--log-target=stderr', '--log-level=warn', '-F', script],
  { HOME: dir, XDG_RUNTIME_DIR: dir, PULSE_RUNTIME_PATH: dir, PULSE_STATE_PATH: join(dir, 'state'), PULSE_SERVER: '' });
  await until('pulseaudio', () => existsSync(join(dir, 'native')), 10000);
  return { PULSE_SERVER: `unix:${dir}/native`, PULSE_RUNTIME_PATH: dir };
}

async function cliPhone(name, ext, password, enginePort, args, wantLine) {
  const profile = join(work, name);
  execFileSync(vaxelBin, ['--profile', profile, 'account', 'add', '--name', name,
    '--uri', `sip:${ext}@demo.vaxel.test`, '--proxy', `sip:127.0.0.1:${enginePort}`], { stdio: 'pipe' });
  const p = start(name, vaxelBin, ['--profile', profile, ...args], { VAXEL_PASSWORD: password });
  if (wantLine) await until(`${name}: ${wantLine}`, () => p.text().includes(wantLine), 15000);
  return p;
}

let browser;
let ok = false;
try {
  for (const [what, path] of [['app', appBin], ['vaxel CLI', vaxelBin]]) {
    if (!existsSync(path)) throw new Error(`${what} not built: ${path}`);
  }
  mkdirSync(shots, { recursive: true });
  const tone = join(work, 'tone.wav');
  toneWav(tone);
  const enginePort = await freeUdpPort();
  const driverPort = await freeTcpPort();
  const nativePort = await freeTcpPort();
  const pulseEnv = await pulse();
  // A private D-Bus session bus: the single-instance plugin keeps its name there, so a
  // second launch finds this app.
  const bus = join(work, 'bus');
  start('dbus', 'dbus-daemon', ['--session', '--nofork', `--address=unix:path=${bus}`]);
  await until('dbus-daemon', () => existsSync(bus), 10000);
  const appEnv = {
    ...pulseEnv,
    DBUS_SESSION_BUS_ADDRESS: `unix:path=${bus}`,
    VAXEL_DESKTOP_DIR: join(work, 'app'),
    VAXEL_ENGINE_SIP: `127.0.0.1:${enginePort}`,
    WEBKIT_DISABLE_COMPOSITING_MODE: '1',
    WEBKIT_DISABLE_DMABUF_RENDERER: '1',
    VAXEL_LOG: process.env.VAXEL_LOG ?? 'info',
  };
  // tauri-driver starts WebKitWebDriver, which starts the app with this environment.
  const driver = start('tauri-driver', driverBin, ['--port', String(driverPort), '--native-port', String(nativePort)], appEnv);
  await until('tauri-driver', async () => {
    const r = await fetch(`http://127.0.0.1:${driverPort}/status`).catch(() => null);
    return r && r.ok;
  }, 15000).catch((e) => { throw new Error(`${e.message}\n${driver.text()}`); });

  browser = await remote({
    hostname: '127.0.0.1', port: driverPort, logLevel: 'warn', connectionRetryCount: 0,
    capabilities: { 'tauri:options': { application: appBin }, 'wdio:enforceWebDriverClassic': true, browserName: 'wry' },
  });
  const $ = (sel) => browser.$(sel);
  // Screenshots come from the X server (ImageMagick's `import`): WebKitWebDriver's own
  // screenshot command hangs when compositing is off (WEBKIT_DISABLE_COMPOSITING_MODE=1).
  const shot = async (name) => {
    await new Promise((r) => setTimeout(r, 400));
    execFileSync('import', ['-window', 'Vaxel', join(shots, `${name}.png`)]);
    log('screenshot', name);
  };
  const text = async (sel) => (await $(sel)).getText();

  // First run.
  await (await $('#choose-host')).waitForDisplayed({ timeout: 20000 });
  await shot('first-run');
  await (await $('#choose-host')).click();
  await until('the demo user to register', async () => (await text('[data-testid="registration"]')) === 'Registered', 30000);
  log('registered as', await text('[data-testid="me"]'));

  // Bo (4002) on the command line: registered to the embedded engine, answers with a tone.
  const bo = await cliPhone('bo', '4002', 'bo-4002', enginePort,
    ['listen', '--auto-answer', '--play', tone, '--record', join(work, 'bo-heard.wav')], '"event":"registered"');

  // Dial by name: type, see the hit, Enter calls the first hit.
  const dial = await $('#dial-input');
  await dial.click();
  await dial.setValue('bo berg');
  await until('a search hit', async () => (await browser.$$('#dial-hits li')).length > 0);
  await shot('dial-search');
  await browser.keys('Enter');
  const panel = await $('[data-testid="in-call"]');
  await panel.waitForExist({ timeout: 15000 });
  await until('the call to be established', async () => (await panel.getAttribute('data-state')) === 'established', 20000);
  const level = await until('the speaker meter to move', async () => {
    const l = Number(await (await $('#meter-out')).getAttribute('data-level'));
    return l > -40 ? l : false;
  }, 20000);
  log('speaker level', level, 'dBFS');
  await until('call quality', async () => (await text('#call-quality')).includes('jitter'), 10000);
  await shot('in-call');
  // In-call controls against the real far end: DTMF reaches Bo, mute, hold and resume.
  await (await $('#keypad-toggle')).click();
  await (await $('button[aria-label="DTMF 5"]')).click();
  await until('Bo to receive the digit', () => /"event":"dtmf"[^\n]*"digit":"5"/.test(bo.text()), 10000);
  await (await $('#mute')).click();
  await until('mute', async () => (await (await $('#mute')).getAttribute('aria-pressed')) === 'true', 10000);
  await (await $('#mute')).click();
  await (await $('#hold')).click();
  await until('hold', async () => (await (await $('#hold')).getAttribute('aria-pressed')) === 'true', 10000);
  await until('Bo to see the hold', () => bo.text().includes('"event":"held"'), 10000);
  await (await $('#hold')).click();
  await until('resume', async () => (await (await $('#hold')).getAttribute('aria-pressed')) === 'false', 10000);
  await until('Bo to see the resume', () => bo.text().includes('"event":"resumed"'), 10000);
  const count = (p, re) => (p.text().match(re) ?? []).length;
  const boCall = await panel.getAttribute('data-call');

  // Announced transfer with Dan (4004), another CLI phone that auto-answers: consult him
  // (search + Enter), swap between the two calls, merge them into a conference, leave it,
  // consult again and hand Bo over to Dan.
  const dan = await cliPhone('dan', '4004', 'dan-4004', enginePort,
    ['listen', '--auto-answer', '--play', tone, '--record', join(work, 'dan-heard.wav')], '"event":"registered"');
  const consult = async () => {
    const heldBefore = count(bo, /"event":"held"/g);
    await (await $('#consult-toggle')).click();
    await (await $('#consult-input')).setValue('dan dahl');
    await browser.keys('Enter');
    await until('the consultation to be up', async () =>
      (await panel.getAttribute('data-call')) !== boCall && (await panel.getAttribute('data-state')) === 'established', 20000);
    await until('Bo on hold while we consult', () => count(bo, /"event":"held"/g) > heldBefore, 10000);
    if (!(await text('#consulting')).includes('Bo Berg')) throw new Error(`consulting: ${await text('#consulting')}`);
  };
  await consult();
  await shot('consult');
  // Swap back to Bo: Dan waits on hold.
  await (await $('button[aria-label="Switch to Bo Berg"]')).click();
  await until('Bo back in the panel', async () => (await panel.getAttribute('data-call')) === boCall, 10000);
  await until('Dan to see the hold', () => dan.text().includes('"event":"held"'), 10000);
  // Merge: both far ends hear each other through the app's mixer.
  await (await $('#merge')).click();
  await until('the conference', async () => (await browser.$$('#call-conference')).length > 0, 10000);
  await until('Dan to see the resume', () => dan.text().includes('"event":"resumed"'), 10000);
  await shot('conference');
  // Dan leaves (hung up from his row or the panel): the conference ends, Bo stays.
  const danRow = await $('#other-calls li:not([data-call="' + boCall + '"]) button.danger');
  if (await danRow.isExisting()) await danRow.click(); else await (await $('#hangup')).click();
  await until('Dan to see the end', () => dan.text().includes('"event":"ended"'), 10000);
  await until('only Bo left', async () =>
    (await panel.getAttribute('data-call')) === boCall && (await browser.$$('#other-calls li')).length === 0, 10000);
  // Resume Bo if the conference's end left him held, then consult again and complete.
  if ((await (await $('#hold')).getAttribute('aria-pressed')) === 'true') await (await $('#hold')).click();
  await consult();
  const resumedBefore = count(bo, /"event":"resumed"/g);
  await (await $('#complete-transfer')).click();
  // Our two calls end; the engine (a B2BUA) takes the REFER itself and joins Bo's leg to
  // Dan's (Bo sees a re-INVITE: resumed); a plain proxy would pass the REFER on to Bo.
  await panel.waitForExist({ timeout: 20000, reverse: true });
  await until('Bo to be handed to Dan', () =>
    bo.text().includes('"event":"transfer_requested"') || count(bo, /"event":"resumed"/g) > resumedBefore, 15000);
  await new Promise((r) => setTimeout(r, 1500));
  if (/"event":"ended"/.test(bo.text()) || count(dan, /"event":"ended"/g) > 1) {
    throw new Error('Bo or Dan was hung up instead of being connected to each other');
  }
  log('announced transfer: Bo and Dan talk, without us');

  // History.
  await (await $('#tab-history')).click();
  await until('the call in the history', async () =>
    (await browser.$$('#history-list li[data-number="4002"][data-outcome="answered"]')).length > 0, 15000);
  await shot('history');

  // An incoming call from Carla (4003): banner, decline; it shows in history.
  await cliPhone('carla', '4003', 'carla-4003', enginePort,
    ['call', 'sip:4001@demo.vaxel.test', '--play', tone, '--record', join(work, 'carla-heard.wav'), '--timeout', '30']);
  const banner = await $('[data-testid="incoming"]');
  await banner.waitForDisplayed({ timeout: 20000 });
  if (!(await banner.getText()).includes('Carla Christensen')) throw new Error(`banner: ${await banner.getText()}`);
  await shot('incoming');
  await (await $('#decline')).click();
  await banner.waitForExist({ timeout: 10000, reverse: true });

  // Eva (4005) calls; sent to voicemail from the banner: the app redirects the call
  // (302 to *59*4001) and the engine follows it: Eva is answered by Alice's mailbox.
  const eva = await cliPhone('eva', '4005', 'eva-4005', enginePort,
    ['call', 'sip:4001@demo.vaxel.test', '--play', tone, '--timeout', '30']);
  await banner.waitForDisplayed({ timeout: 20000 });
  await (await $('#voicemail')).click();
  await banner.waitForExist({ timeout: 10000, reverse: true });
  await until('Eva to be answered by the voicemail', () => /"event":"established"/.test(eva.text()), 15000);
  log('voicemail: Eva saw', (eva.text().match(/"event":"(ended|established)"[^\n]*/) ?? [''])[0]);

  // Presence: Meeting until 14:00, seen in the directory.
  await (await $('#presence-button')).click();
  await (await $('#presence-select')).selectByAttribute('value', 'meeting');
  await (await $('#presence-note')).setValue('Board meeting');
  await (await $('#presence-save')).click();
  await (await $('#tab-directory')).click();
  await until('my presence in the directory', async () =>
    (await browser.$$('#directory-list li[data-extension="4001"][data-presence="meeting"]')).length > 0, 10000);
  // Bo is registered and still talking to Dan since the transfer: red (in a call).
  await until('Bo in a call in the directory', async () =>
    (await (await $('#directory-list li[data-extension="4002"]')).getAttribute('data-colour')) === 'red', 10000);
  // The engine is the presence server: a SIP watcher (`vaxel watch` on Carla's account)
  // sees the meeting the app published, and Carla's own PUBLISH (`vaxel presence set
  // lunch`) reaches the app's directory through its subscription to the engine.
  const carlaPhone = await cliPhone('carla-phone', '4003', 'carla-4003', enginePort,
    ['listen'], '"event":"registered"');
  await until('Carla registered in the directory', async () =>
    (await (await $('#directory-list li[data-extension="4003"]')).getAttribute('data-colour')) === 'green', 10000);
  const watcher = await cliPhone('carla-watch', '4003', 'carla-4003', enginePort,
    ['--listen', '127.0.0.1', 'watch', '4001', '--presence-only']);
  await until('a SIP watcher to see my meeting', () =>
    /"event":"presence_changed"[^\n]*"activity":"meeting"[^\n]*"note":"Board meeting"/.test(watcher.text())
    || /"event":"presence_changed"[^\n]*"note":"Board meeting"[^\n]*"activity":"meeting"/.test(watcher.text()), 15000);
  const lunch = await cliPhone('carla-lunch', '4003', 'carla-4003', enginePort,
    ['--listen', '127.0.0.1', 'presence', 'set', 'lunch', '--note', 'back at one'], '"event":"presence_published"');
  await until('Carla at lunch in the directory (yellow)', async () => {
    const li = await $('#directory-list li[data-extension="4003"]');
    return (await li.getAttribute('data-presence')) === 'lunch' && (await li.getAttribute('data-colour')) === 'yellow';
  }, 15000);
  if (!(await (await $('#directory-list li[data-extension="4003"]')).getText()).includes('back at one')) {
    throw new Error('the note of Carla\'s presence is not shown');
  }
  await shot('directory');
  process.kill(lunch.child.pid, 'SIGINT');
  process.kill(watcher.child.pid, 'SIGINT');
  await until('Carla back to available (green)', async () =>
    (await (await $('#directory-list li[data-extension="4003"]')).getAttribute('data-colour')) === 'green', 15000);
  process.kill(carlaPhone.child.pid, 'SIGINT');

  // (Before the contacts' file dialogs: after GTK's file chooser has run, the link's
  // call sometimes did not show in the page.)
  await (await $('#tab-dial')).click();
  // A second launch with a link (as a clicked tel: link does): it hands the link to
  // this app and exits; this app calls Dan (4004, still auto-answering).
  const second = start('second-launch', appBin, ['tel:4004'], appEnv);
  await until('the second launch to exit', () => second.child.exitCode !== null, 20000);
  if (second.child.exitCode !== 0) throw new Error(`second launch exit ${second.child.exitCode}: ${second.text()}`);
  const linkCall = await $('[data-testid="in-call"]');
  await linkCall.waitForExist({ timeout: 15000 });
  await until('the link\'s call to Dan', async () => (await linkCall.getText()).includes('Dan Dahl'), 15000);
  await until('the link\'s call to be up', async () => (await linkCall.getAttribute('data-state')) === 'established', 15000);
  log('a second launch with tel:4004 called Dan in the running app');
  // Global hotkeys, pressed at the X server (xdotool), not in the page: Ctrl+Alt+M mutes,
  // Ctrl+Alt+E hangs up.
  execFileSync('xdotool', ['key', 'ctrl+alt+m']);
  await until('the mute hotkey', async () => (await (await $('#mute')).getAttribute('aria-pressed')) === 'true', 10000);
  execFileSync('xdotool', ['key', 'ctrl+alt+e']);
  await linkCall.waitForExist({ timeout: 15000, reverse: true });
  log('global hotkeys muted and hung up');

  // Focuses the file dialog titled `name`. xdotool finds a window as soon as it
  // exists; focusing it before it is mapped fails with BadMatch (X_SetInputFocus),
  // so only visible windows are searched and a failed focus is tried again.
  const focusWindow = async (name) => {
    for (let attempt = 1; ; attempt++) {
      try {
        execFileSync('xdotool', ['search', '--sync', '--onlyvisible', '--name', name, 'windowfocus', '--sync'], { stdio: 'pipe' });
        return;
      } catch (e) {
        if (attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };
  // Contacts and settings, for the README.
  await (await $('#tab-contacts')).click();
  await (await $('#contact-add')).click();
  await (await $('#contact-name')).setValue('Anne Sällström');
  await (await $('#contact-numbers')).setValue('+46701234567');
  await (await $('#contact-save')).click();
  await until('the new contact', async () => (await text('#contact-list')).includes('Anne Sällström'), 10000);
  // vCard export through the OS file dialog (GTK's file chooser, typed into with xdotool).
  const vcf = join(work, 'anne.vcf');
  await (await $('#vcard-export-dialog')).click();
  await focusWindow('Export vCard');
  await new Promise((r) => setTimeout(r, 500));
  execFileSync('xdotool', ['key', 'ctrl+a']);
  execFileSync('xdotool', ['type', '--delay', '20', vcf]);
  execFileSync('xdotool', ['key', 'Return']);
  await until('the vCard file', () => existsSync(vcf) && readFileSync(vcf, 'utf8').includes('Sällström'), 15000);
  // And back in through the open dialog (a typed "/" opens GTK's location field).
  await (await $('#vcard-import-dialog')).click();
  await focusWindow('Import vCard');
  await new Promise((r) => setTimeout(r, 500));
  execFileSync('xdotool', ['type', '--delay', '20', vcf]);
  await new Promise((r) => setTimeout(r, 300));
  execFileSync('xdotool', ['key', 'Return']);
  await until('the import report', async () => (await text('section[aria-labelledby="contacts-title"]')).includes(`${vcf}: 1`), 15000);
  log('vCard exported and imported through the file dialogs');
  await shot('contacts');
  await (await $('#tab-settings')).click();
  await (await $('#theme-select')).waitForDisplayed();
  await shot('settings');
  await (await $('#theme-select')).selectByAttribute('value', 'dark');
  await (await $('#tab-dial')).click();
  await shot('dial-dark');

  ok = true;
  log('passed');
} catch (e) {
  console.error('[e2e] FAILED:', e?.stack ?? e);
  if (browser) {
    const errors = await browser.$('.errors').getText().catch(() => '');
    if (errors) console.error('[e2e] errors shown in the app:', errors);
  }
  for (const { name, out } of children) {
    writeFileSync(join(work, `${name}.log`), out.join(''));
    const lines = out.join('').split('\n').filter((l) => !l.includes('"event":"levels"'));
    console.error(`----- ${name} (all of it in ${work}/${name}.log) -----\n${lines.slice(-40).join('\n')}`);
  }
} finally {
  if (browser) await browser.deleteSession().catch(() => {});
  stopAll();
  await new Promise((r) => setTimeout(r, 300));
  if (ok) rmSync(work, { recursive: true, force: true });
  else console.error(`[e2e] work folder kept: ${work}`);
  process.exit(ok ? 0 : 1);
}
