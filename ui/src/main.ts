import { mount } from 'svelte';
import App from './App.svelte';
import { TauriBackend } from './lib/tauri';
import { MockBackend } from './lib/mock';

// In the Tauri web view the real backend; in a plain browser (`vite dev`) the mock,
// so the UI can be worked on without the app.
const inTauri = '__TAURI_INTERNALS__' in window;
const backend = inTauri ? new TauriBackend() : new MockBackend();
mount(App, { target: document.getElementById('app')!, props: { backend } });
