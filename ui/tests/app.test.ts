import { render, screen, fireEvent, waitFor, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import App from '../src/App.svelte';
import { MockBackend } from '../src/lib/mock';
import { languages, missingKeys, translate, type Lang } from '../src/lib/i18n';

async function hosted() {
  const backend = new MockBackend();
  await backend.setupHost();
  backend.sent = [];
  render(App, { props: { backend } });
  await screen.findByTestId('me');
  return backend;
}

describe('first run', () => {
  it('offers both choices and hosting signs in as the demo user', async () => {
    const backend = new MockBackend();
    render(App, { props: { backend } });
    const host = await screen.findByRole('button', { name: /Host this office/ });
    expect(screen.getByRole('button', { name: /Connect to a server/ })).toBeInTheDocument();
    await fireEvent.click(host);
    expect(await screen.findByTestId('me')).toHaveTextContent('Alice Andersen · 4001');
    expect(backend.sent.map((s) => s.cmd)).toContain('setup_host');
  });

  it('connect to a server shows the backend error as code and message', async () => {
    const backend = new MockBackend();
    render(App, { props: { backend } });
    await fireEvent.click(await screen.findByRole('button', { name: /Connect to a server/ }));
    await fireEvent.input(screen.getByLabelText('SIP address'), { target: { value: 'nonsense' } });
    await fireEvent.submit(screen.getByRole('form', { name: 'Connect to a server' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('not a SIP URI: nonsense');
    expect(alert.querySelector('[data-code="bad_command"]')).not.toBeNull();
  });

  it('the optional control API field is labelled, sent with the account, and a refused login says so', async () => {
    const backend = new MockBackend();
    render(App, { props: { backend } });
    await fireEvent.click(await screen.findByRole('button', { name: /Connect to a server/ }));
    const api = screen.getByLabelText('Control API (Vaxel engine, optional)');
    expect(api).toHaveAccessibleDescription(/control API address/);
    expect(api).not.toBeRequired();
    await fireEvent.input(screen.getByLabelText('SIP address'), { target: { value: 'sip:4001@demo.vaxel.test' } });
    await fireEvent.input(api, { target: { value: '127.0.0.1:8080' } });
    await fireEvent.input(screen.getByLabelText('Password'), { target: { value: 'wrong' } });
    await fireEvent.submit(screen.getByRole('form', { name: 'Connect to a server' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('wrong username or password');
    expect(alert.querySelector('[data-code="bad_credentials"]')).not.toBeNull();
    await fireEvent.input(screen.getByLabelText('Password'), { target: { value: 'alice-4001' } });
    await fireEvent.submit(screen.getByRole('form', { name: 'Connect to a server' }));
    await waitFor(() => expect(backend.snap.mode).toBe('server'));
    const sent = backend.sent.filter((s) => s.cmd === 'setup_server').map((s) => s.args as { api: string });
    expect(sent.at(-1)?.api).toBe('127.0.0.1:8080');
    expect(backend.snap.controlApi).toBe('http://127.0.0.1:8080');
    // Connected to an engine: the directory tab lists the colleagues.
    await fireEvent.click(await screen.findByRole('button', { name: 'Directory' }));
    await waitFor(() => expect(document.querySelectorAll('#directory-list li')).toHaveLength(5));
  });
});

describe('dial and search', () => {
  it('every word must match, and Enter calls the first hit', async () => {
    const backend = await hosted();
    const input = screen.getByLabelText('Name, number or address');
    await fireEvent.input(input, { target: { value: 'sup da' } });
    await waitFor(() => expect(screen.getAllByRole('option')).toHaveLength(1));
    expect(screen.getByRole('option')).toHaveTextContent('Dan Dahl');
    await fireEvent.input(input, { target: { value: 'sup' } });
    await waitFor(() => expect(screen.getAllByRole('option')).toHaveLength(2));
    await fireEvent.keyDown(input, { key: 'Enter' });
    expect(backend.sent.find((s) => s.cmd === 'call')?.args).toBe('4004');
    const call = await screen.findByTestId('in-call');
    await waitFor(() => expect(call).toHaveAttribute('data-state', 'established'));
    expect(call).toHaveTextContent('Dan Dahl');
  });

  it('arrow keys choose another hit', async () => {
    const backend = await hosted();
    const input = screen.getByLabelText('Name, number or address');
    await fireEvent.input(input, { target: { value: 'support' } });
    await waitFor(() => expect(screen.getAllByRole('option')).toHaveLength(2));
    await fireEvent.keyDown(input, { key: 'ArrowDown' });
    expect(screen.getAllByRole('option')[1]).toHaveAttribute('aria-selected', 'true');
    await fireEvent.keyDown(input, { key: 'Enter' });
    expect(backend.sent.find((s) => s.cmd === 'call')?.args).toBe('4005');
  });
});

describe('calls', () => {
  it('an incoming call shows a banner; answer, mute, hold, DTMF, levels, hang up', async () => {
    const backend = await hosted();
    const id = backend.ring('sip:4002@demo.vaxel.test', 'Bo Berg');
    const banner = await screen.findByRole('alertdialog', { name: 'Incoming call' });
    expect(banner).toHaveTextContent('Bo Berg');
    const answer = within(banner).getByRole('button', { name: 'Answer' });
    expect(answer).toHaveFocus();
    await fireEvent.click(answer);
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    const panel = screen.getByTestId('in-call');
    expect(panel).toHaveAttribute('data-state', 'established');
    await fireEvent.click(screen.getByRole('button', { name: 'Mute' }));
    expect(await screen.findByRole('button', { name: 'Unmute' })).toHaveAttribute('aria-pressed', 'true');
    await fireEvent.click(screen.getByRole('button', { name: 'Hold' }));
    expect(await screen.findByRole('button', { name: 'Resume' })).toBeInTheDocument();
    await fireEvent.click(screen.getByRole('button', { name: 'Keypad' }));
    await fireEvent.click(screen.getByRole('button', { name: 'DTMF 5' }));
    expect(backend.sent).toContainEqual({ cmd: 'dtmf', args: { call: id, digits: '5' } });
    backend.emitMedia({ type: 'levels', call: id, input: -100, output: -12 });
    backend.emitMedia({ type: 'quality', call: id, codec: 'opus', lossPercent: 0.5, jitterMs: 3.2, rttMs: null });
    await tick();
    expect(screen.getByRole('meter', { name: 'Speaker' })).toHaveAttribute('aria-valuenow', '-12');
    expect(screen.getByText(/loss 0.5 %/)).toBeInTheDocument();
    await fireEvent.click(screen.getByRole('button', { name: 'Hang up' }));
    await waitFor(() => expect(screen.queryByTestId('in-call')).toBeNull());
  });

  it('blind transfer goes to the first hit of the typed name', async () => {
    const backend = await hosted();
    backend.ring('sip:4002@demo.vaxel.test', 'Bo Berg');
    await fireEvent.click(await screen.findByRole('button', { name: 'Answer' }));
    await fireEvent.click(await screen.findByRole('button', { name: 'Transfer' }));
    await fireEvent.input(screen.getByLabelText('Transfer to (name or number)'), { target: { value: 'carla' } });
    await fireEvent.submit(screen.getByLabelText('Transfer to (name or number)').closest('form')!);
    await waitFor(() => expect(backend.sent.find((s) => s.cmd === 'transfer')?.args).toEqual({ call: 1, target: '4003' }));
  });

  it('announced transfer: consult the first hit by Enter, then go back, then complete', async () => {
    const backend = await hosted();
    backend.ring('sip:4002@demo.vaxel.test', 'Bo Berg');
    await fireEvent.click(await screen.findByRole('button', { name: 'Answer' }));
    await fireEvent.click(await screen.findByRole('button', { name: 'Consult' }));
    const field = screen.getByLabelText('Consult (name or number)');
    await fireEvent.input(field, { target: { value: 'dan' } });
    await fireEvent.submit(field.closest('form')!);
    await waitFor(() => expect(backend.sent.find((s) => s.cmd === 'consult')?.args).toEqual({ call: 1, target: '4004' }));
    // The panel shows the consultation; Bo waits on hold in the other calls.
    await waitFor(() => expect(screen.getByTestId('in-call')).toHaveAttribute('data-call', '2'));
    expect(screen.getByText(/Consulting about Bo Berg/)).toBeInTheDocument();
    const bo = document.querySelector('#other-calls li[data-call="1"]') as HTMLElement;
    expect(bo).toHaveTextContent('On hold');
    // Back: Dan is hung up, Bo resumed.
    await fireEvent.click(screen.getByRole('button', { name: 'Back to the held call' }));
    await waitFor(() => expect(screen.getByTestId('in-call')).toHaveAttribute('data-call', '1'));
    expect(screen.queryByText(/Consulting about/)).toBeNull();
    // Again, and this time hand Bo over to Dan.
    await fireEvent.click(screen.getByRole('button', { name: 'Consult' }));
    await fireEvent.input(screen.getByLabelText('Consult (name or number)'), { target: { value: 'dan dahl' } });
    await fireEvent.submit(screen.getByLabelText('Consult (name or number)').closest('form')!);
    await fireEvent.click(await screen.findByRole('button', { name: 'Complete transfer' }));
    expect(backend.sent).toContainEqual({ cmd: 'complete_transfer', args: 3 });
    await waitFor(() => expect(screen.queryByTestId('in-call')).toBeNull());
  });

  it('a second call holds the first; swap goes back and forth; merge makes a conference', async () => {
    const backend = await hosted();
    backend.ring('sip:4002@demo.vaxel.test', 'Bo Berg');
    await fireEvent.click(await screen.findByRole('button', { name: 'Answer' }));
    // A second call from the dial field: Bo goes on hold.
    const input = screen.getByLabelText('Name, number or address');
    await fireEvent.input(input, { target: { value: 'eva' } });
    await waitFor(() => expect(screen.getAllByRole('option')).toHaveLength(1));
    await fireEvent.keyDown(input, { key: 'Enter' });
    await waitFor(() => expect(screen.getByTestId('in-call')).toHaveAttribute('data-call', '2'));
    expect(screen.getByTestId('in-call')).toHaveTextContent('Eva Eriksen');
    expect(document.querySelector('#other-calls li[data-call="1"]')).toHaveAttribute('data-held', 'true');
    // Swap by keyboard-reachable button with a spoken name.
    await fireEvent.click(screen.getByRole('button', { name: 'Switch to Bo Berg' }));
    expect(backend.sent).toContainEqual({ cmd: 'swap', args: 1 });
    await waitFor(() => expect(screen.getByTestId('in-call')).toHaveAttribute('data-call', '1'));
    expect(document.querySelector('#other-calls li[data-call="2"]')).toHaveAttribute('data-held', 'true');
    // Merge: both talk, the panel says Conference, no swap in a conference.
    await fireEvent.click(screen.getByRole('button', { name: 'Merge calls' }));
    await waitFor(() => expect(document.querySelector('#call-conference')).not.toBeNull());
    const bo = document.querySelector('#other-calls li[data-call="1"]') as HTMLElement;
    expect(bo).toHaveAttribute('data-conference', 'true');
    expect(within(bo).queryByRole('button', { name: /Switch to/ })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Merge calls' })).toBeNull();
    await fireEvent.click(within(bo).getByRole('button', { name: 'Hang up Bo Berg' }));
    await waitFor(() => expect(document.querySelector('#other-calls')).toBeNull());
    expect(document.querySelector('#call-conference')).toBeNull();
  });

  it('send to voicemail from the banner', async () => {
    const backend = await hosted();
    backend.ring('sip:4003@demo.vaxel.test', 'Carla Christensen');
    await fireEvent.click(await screen.findByRole('button', { name: 'Send the call to your voicemail' }));
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    expect(backend.sent).toContainEqual({ cmd: 'send_to_voicemail', args: 1 });
  });

  it('decline ends a ringing call', async () => {
    const backend = await hosted();
    backend.ring('sip:4003@demo.vaxel.test');
    await fireEvent.click(await screen.findByRole('button', { name: 'Decline' }));
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    expect(backend.sent.map((s) => s.cmd)).toContain('decline');
  });
});

describe('vCard through the file dialog', () => {
  it('import and export ask the OS dialog; a cancelled dialog does nothing', async () => {
    const backend = await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Contacts' }));
    await fireEvent.click(await screen.findByRole('button', { name: 'Export vCard…' }));
    expect(await screen.findByText('/home/me/contacts.vcf: 0')).toBeInTheDocument();
    expect(backend.sent).toContainEqual({ cmd: 'vcard_export_dialog', args: 'Export vCard' });
    backend.dialogPath = null;
    await fireEvent.click(screen.getByRole('button', { name: 'Import vCard…' }));
    await waitFor(() => expect(backend.sent).toContainEqual({ cmd: 'vcard_import_dialog', args: 'Import vCard' }));
    expect(screen.queryByRole('alert')).toBeNull();
  });
});

describe('notifications', () => {
  it('the core gets the notification words in the chosen language', async () => {
    const backend = await hosted();
    await waitFor(() => expect(backend.notificationText).toEqual({ incomingCall: 'Incoming call', via: 'via' }));
    await fireEvent.click(screen.getByRole('button', { name: /^Settings/ }));
    const lang = await screen.findByLabelText(/Language/);
    await fireEvent.change(lang, { target: { value: 'sv' } });
    await waitFor(() => expect(backend.notificationText?.incomingCall).toBe(translate('sv', 'incomingCall')));
    expect(translate('sv', 'incomingCall')).not.toBe('Incoming call');
  });
});

describe('history', () => {
  it('missed calls are highlighted with a badge, and call back dials the number', async () => {
    const backend = await hosted();
    const id = backend.ring('sip:4005@demo.vaxel.test', 'Eva Eriksen');
    await screen.findByRole('alertdialog');
    backend.callerGivesUp(id);
    expect(await screen.findByTestId('missed-badge')).toHaveTextContent('1');
    await fireEvent.click(screen.getByRole('button', { name: /^History/ }));
    const row = await waitFor(() => {
      const li = document.querySelector('#history-list li');
      expect(li).not.toBeNull();
      return li as HTMLElement;
    });
    expect(row).toHaveClass('missed');
    await fireEvent.click(within(row).getByRole('button', { name: 'Call back Eva Eriksen' }));
    expect(backend.sent.find((s) => s.cmd === 'call')?.args).toBe('4005');
    await fireEvent.click(screen.getByRole('button', { name: 'Mark all as seen' }));
    await waitFor(() => expect(screen.queryByTestId('missed-badge')).toBeNull());
  });
});

describe('calls through a group', () => {
  it('the banner and the history say "via Sales"', async () => {
    const backend = await hosted();
    const id = backend.ring('sip:4005@demo.vaxel.test', 'Eva Eriksen', 'Sales');
    const banner = await screen.findByRole('alertdialog', { name: 'Incoming call' });
    expect(banner).toHaveTextContent('Eva Eriksen');
    expect(banner).toHaveTextContent('via Sales');
    backend.callerGivesUp(id);
    await fireEvent.click(await screen.findByRole('button', { name: /^History/ }));
    const row = await waitFor(() => {
      const li = document.querySelector('#history-list li');
      expect(li).not.toBeNull();
      return li as HTMLElement;
    });
    expect(row).toHaveTextContent('via Sales');
  });

  it('a direct call shows no group', async () => {
    const backend = await hosted();
    backend.ring('sip:4005@demo.vaxel.test', 'Eva Eriksen');
    const banner = await screen.findByRole('alertdialog', { name: 'Incoming call' });
    expect(banner).not.toHaveTextContent('via');
  });
});

describe('directory and presence', () => {
  it('shows colleagues with presence colours and my own presence after I change it', async () => {
    const backend = await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Directory' }));
    await waitFor(() => expect(document.querySelectorAll('#directory-list li')).toHaveLength(5));
    const me = () => document.querySelector('#directory-list li[data-extension="4001"]') as HTMLElement;
    expect(me()).toHaveAttribute('data-colour', 'green');
    await fireEvent.click(screen.getByRole('button', { name: /Presence:/ }));
    await fireEvent.change(screen.getByLabelText('Presence', { selector: 'select' }), { target: { value: 'meeting' } });
    await fireEvent.input(screen.getByLabelText('Note'), { target: { value: 'board' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(me()).toHaveAttribute('data-colour', 'yellow'));
    expect(me()).toHaveTextContent(/Meeting.*board/);
    expect(backend.sent.find((s) => s.cmd === 'set_presence')?.args).toEqual({ activity: 'meeting', until: '', note: 'board' });
  });
});

describe('contacts', () => {
  it('adds and edits a contact, which search then finds', async () => {
    const backend = await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Contacts' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Add contact' }));
    await fireEvent.input(screen.getByLabelText('Name'), { target: { value: 'Anne Sällström' } });
    await fireEvent.input(screen.getByLabelText('Numbers (comma separated)'), { target: { value: '+46701234567' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByText('Anne Sällström')).toBeInTheDocument();
    await fireEvent.click(screen.getByRole('button', { name: 'Edit Anne Sällström' }));
    await fireEvent.input(screen.getByLabelText('Name'), { target: { value: 'Anne Sällström-Berg' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByText('Anne Sällström-Berg')).toBeInTheDocument();
    expect((await backend.search('anne berg'))[0].number).toBe('+46701234567');
  });
});

describe('settings and languages', () => {
  it('switches language and theme', async () => {
    await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Settings' }));
    await fireEvent.change(await screen.findByLabelText('Language'), { target: { value: 'da' } });
    expect(await screen.findByRole('button', { name: 'Indstillinger' })).toBeInTheDocument();
    await fireEvent.change(screen.getByLabelText('Tema'), { target: { value: 'dark' } });
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe('dark'));
  });

  it('microphone test shows a live level; test tones go to the speaker and the ringing device', async () => {
    const backend = await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Settings' }));
    await fireEvent.click(await screen.findByRole('button', { name: 'Test the microphone' }));
    const stop = await screen.findByRole('button', { name: 'Stop the microphone test' });
    expect(stop).toHaveAttribute('aria-pressed', 'true');
    await waitFor(() => expect(screen.getByRole('meter', { name: 'Microphone level' })).toHaveAttribute('aria-valuenow', '-18'));
    await fireEvent.click(stop);
    await waitFor(() => expect(screen.queryByRole('meter', { name: 'Microphone level' })).toBeNull());
    expect(backend.sent).toContainEqual({ cmd: 'mic_test', args: false });
    await fireEvent.click(screen.getByRole('button', { name: 'Play a test tone' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Test the ringing device' }));
    await waitFor(() => expect(backend.sent.filter((s) => s.cmd === 'test_tone').map((s) => s.args)).toEqual([false, true]));
  });

  it('hotkeys are set in the settings; one key for two actions is refused', async () => {
    const backend = await hosted();
    await fireEvent.click(screen.getByRole('button', { name: 'Settings' }));
    const group = (await screen.findByText('Global hotkeys')).closest('fieldset')!;
    const mute = within(group).getByLabelText('Mute');
    expect(mute).toHaveValue('Ctrl+Alt+M');
    expect(mute).toHaveAccessibleDescription(/another program has the focus/);
    await fireEvent.change(mute, { target: { value: 'Shift+F9' } });
    await waitFor(() => expect(backend.snap.settings.hotkeyMute).toBe('Shift+F9'));
    await fireEvent.change(within(group).getByLabelText('Hang up'), { target: { value: 'ctrl+alt+a' } });
    expect(await screen.findByRole('alert')).toHaveTextContent('two actions');
    expect(backend.snap.settings.hotkeyHangup).toBe('Ctrl+Alt+E');
  });

  it('every language has every text', () => {
    for (const lang of Object.keys(languages) as Lang[]) expect(missingKeys(lang)).toEqual([]);
    expect(translate('fi', 'answer')).toBe('Vastaa');
    expect(translate('xx', 'answer')).toBe('Answer');
  });

  it('screens switch with Alt+number', async () => {
    await hosted();
    await fireEvent.keyDown(window, { key: '3', altKey: true });
    expect(screen.getByRole('button', { name: 'Directory' })).toHaveAttribute('aria-current', 'page');
  });
});
