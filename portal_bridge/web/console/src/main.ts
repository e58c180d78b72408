// The console page: fetches its config and a token from the console node, joins the room as a
// Portal operator and shows cameras, joints, control and metrics. `window.portalConsole` exposes
// the page's numbers (and a frame grab) to the tests and the benchmark.
import type { RemoteTrack } from 'livekit-client';

import type { PageConfig, TokenGrant } from './config';
import { Driver } from './drive';
import { RollingPlot } from './plot';
import { PortalPage } from './portal';
import * as wire from './wire';
import { type FrameHeader, type State, hex, nowUs } from './wire';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

interface CameraView {
  name: string;
  element: HTMLVideoElement | HTMLCanvasElement;
  caption: HTMLElement;
  frames: number[]; // display times (ms) of the last second's frames
  lastUs: number; // frame video: timestamp of the newest frame taken
  paintedUs: number; // frame video: timestamp of the frame on the canvas
  counting: boolean; // video: its frame-counting loop runs
}

class ConsolePage {
  private portal!: PortalPage;
  private driver!: Driver;
  private plot!: RollingPlot;
  private cameras = new Map<string, CameraView>();
  private latest: State | null = null;
  private shown: State | null = null;
  private stateTimes: number[] = [];
  private latencies: number[] = [];
  private held = new Set<string>();
  private driving = false;
  private inhibited = false; // after the page's e-stop, until Take control
  private focused = true;
  private latestAt = 0; // performance.now() when the latest state arrived
  private lastDrive = 0;
  private jointCells: HTMLElement[] = [];
  problem = '';

  constructor(readonly config: PageConfig) {}

  async start(): Promise<void> {
    const c = this.config.contract;
    this.portal = new PortalPage(c, this.config.robot_identity, {
      state: (s) => this.onState(s),
      frame: (f) => void this.onFrame(f),
      track: (name, track) => this.onTrack(name, track),
      roster: () => this.renderRoster(),
      connection: (status) => this.setConnection(status),
      problem: (message) => this.showProblem(message),
    });
    this.driver = new Driver(this.config.keymap, c.action);
    this.buildViews();
    const grant = await this.token();
    $('who').textContent = `${grant.identity} in room ${grant.room} · contract ${this.config.contract_name} (state ${hex(this.portal.stateFp)})`;
    await this.portal.connect(grant);
    this.bindControls();
    requestAnimationFrame(() => this.render());
    window.setInterval(() => this.drive(), 1000 / this.config.keymap.rate_hz);
  }

  // -- token ----------------------------------------------------------------------------------
  private async token(): Promise<TokenGrant> {
    let body: Record<string, string> = {};
    for (;;) {
      const response = await fetch('token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const answer = await response.json();
      if (response.ok) {
        $('login').hidden = true;
        this.showProblem('');
        return answer as TokenGrant;
      }
      if (response.status !== 401) throw new Error(answer.error ?? `token request failed (${response.status})`);
      this.showProblem(answer.error);
      body = await this.askLogin();
    }
  }

  private askLogin(): Promise<Record<string, string>> {
    const form = $<HTMLFormElement>('login');
    form.hidden = false;
    $('login-identity-row').hidden = !this.config.auth.logins;
    return new Promise((resolve) => {
      form.onsubmit = (e) => {
        e.preventDefault();
        const secret = $<HTMLInputElement>('login-secret').value;
        resolve(this.config.auth.logins ? { identity: $<HTMLInputElement>('login-identity').value, password: secret } : { secret });
      };
    });
  }

  // -- views ----------------------------------------------------------------------------------
  private buildViews(): void {
    const c = this.config.contract;
    for (const v of c.videos) {
      const figure = document.createElement('figure');
      const element = v.webrtc ? document.createElement('video') : document.createElement('canvas');
      if (element instanceof HTMLVideoElement) {
        element.autoplay = true;
        element.muted = true;
        element.playsInline = true;
      }
      element.dataset.camera = v.name;
      const caption = document.createElement('figcaption');
      caption.textContent = `${v.name} (${v.codec}) · waiting`;
      figure.append(element, caption);
      $('cameras').append(figure);
      this.cameras.set(v.name, { name: v.name, element, caption, frames: [], lastUs: 0, paintedUs: 0, counting: false });
    }
    const table = $('joints');
    this.jointCells = c.state.map((f) => {
      const row = document.createElement('tr');
      const name = document.createElement('td');
      name.textContent = f.name;
      const value = document.createElement('td');
      value.className = 'v';
      value.dataset.field = f.name;
      value.textContent = '–';
      row.append(name, value);
      table.append(row);
      return value;
    });
    this.plot = new RollingPlot($<HTMLCanvasElement>('plot'), c.state.map((f) => f.name));
    const keys = $('keys');
    const lines = this.driver.describe();
    for (const line of lines.length ? lines : ['no keymap: give the console a keymap_file to drive']) {
      const li = document.createElement('li');
      li.textContent = line;
      keys.append(li);
    }
  }

  private bindControls(): void {
    const say = (what: string) => (error: string | null) => ($('message').textContent = error ? `${what}: ${error}` : '');
    $('take').onclick = () => {
      this.inhibited = false; // taking control again is how the page is re-armed after its e-stop
      void this.portal.takeControl().then(say('take control'));
    };
    $('release').onclick = () => void this.portal.release().then(say('release'));
    $('estop').onclick = () => {
      // Locally first: the page stops sending now, whatever the network does, until Take control.
      this.inhibited = true;
      this.held.clear();
      void this.portal.emergencyStop().then((error) => {
        if (!error) {
          $('message').textContent = 'emergency stop latched on the robot (reset it there)';
          return;
        }
        $('message').textContent = `EMERGENCY STOP FAILED: ${error}. This page stopped sending and releases control.`;
        void this.portal.release();
      });
    };
    const bound = this.driver.boundKeys;
    const releaseAll = (): void => this.held.clear();
    window.addEventListener('keydown', (e) => {
      if (e.metaKey || e.key === 'Meta') {
        releaseAll(); // with Cmd down, macOS browsers drop the other keys' keyup events
        return;
      }
      // a field keeps its keys, and a focused button its activation keys (Space or Enter on
      // EMERGENCY STOP must press it, even when the keymap binds them)
      const activates = e.target instanceof HTMLButtonElement && ['Space', 'Enter', 'NumpadEnter'].includes(e.code);
      if (!bound.has(e.code) || e.target instanceof HTMLInputElement || activates) return;
      e.preventDefault();
      this.held.add(e.code);
    });
    window.addEventListener('keyup', (e) => (e.metaKey || e.key === 'Meta' ? releaseAll() : this.held.delete(e.code)));
    // losing focus or the page releases every key (the gamepad too: see drive())
    window.addEventListener('blur', () => {
      this.focused = false;
      releaseAll();
    });
    window.addEventListener('focus', () => (this.focused = true));
    window.addEventListener('contextmenu', releaseAll);
    window.addEventListener('pagehide', releaseAll);
    document.addEventListener('visibilitychange', releaseAll);
  }

  private setConnection(status: string): void {
    const pill = $('connection');
    pill.textContent = status;
    pill.className = `pill ${status === 'connected' ? 'ok' : status.startsWith('disconnected') ? 'bad' : 'warn'}`;
    if (status.startsWith('disconnected')) this.showProblem(`Left the room: ${status}. Reload the page to join again.`);
  }

  showProblem(message: string): void {
    this.problem = message;
    const box = $('problem');
    box.textContent = message;
    box.hidden = !message;
  }

  private renderRoster(): void {
    const active = this.portal.activeOperator;
    const pill = $('control');
    pill.textContent = `in control: ${active || 'nobody'}`;
    pill.className = `pill ${active === this.portal.identity ? 'ok' : ''}`;
    const list = $('peers');
    list.replaceChildren(
      ...this.portal.peers().map((p) => {
        const li = document.createElement('li');
        li.textContent = `${p.identity} (${p.role})${p.identity === active ? ' · in control' : ''}`;
        return li;
      }),
    );
    if (!this.portal.robot) $('message').textContent = 'waiting for a robot (a participant with the robot role) to join';
    else if ($('message').textContent?.startsWith('waiting for a robot')) $('message').textContent = '';
  }

  // -- streams --------------------------------------------------------------------------------
  private onState(state: State): void {
    const now = performance.now();
    this.latest = state;
    this.latestAt = now;
    this.stateTimes.push(now);
    while (this.stateTimes.length && this.stateTimes[0] < now - 1000) this.stateTimes.shift(); // also while hidden
    this.plot.add(state.timestampUs / 1e6, state.values);
  }

  private onTrack(name: string, track: RemoteTrack | null): void {
    const view = this.cameras.get(name);
    if (!view || !(view.element instanceof HTMLVideoElement)) return;
    if (!track) {
      view.caption.textContent = `${name} · track ended`;
      return;
    }
    track.attach(view.element);
    const video = view.element;
    if (view.counting || !('requestVideoFrameCallback' in video)) return; // one counting loop per view
    view.counting = true;
    const count = (): void => {
      view.frames.push(performance.now());
      if (view.frames.length > 240) view.frames.splice(0, view.frames.length - 240);
      video.requestVideoFrameCallback(count);
    };
    video.requestVideoFrameCallback(count);
  }

  private async onFrame(frame: FrameHeader): Promise<void> {
    const view = this.cameras.get(frame.name);
    if (!view || !(view.element instanceof HTMLCanvasElement)) return;
    if (!frame.width || !frame.height) {
      this.portal.count('bad-payload');
      return;
    }
    // each frame is its own stream, and streams can complete out of order: never paint an older
    // one (a robot clock stepped back by more than 5 s starts the order again)
    if (frame.timestampUs <= view.lastUs && view.lastUs - frame.timestampUs < 5_000_000) {
      this.portal.count('late-frame');
      return;
    }
    if (frame.timestampUs < view.lastUs) view.paintedUs = 0;
    view.lastUs = frame.timestampUs;
    const canvas = view.element;
    const fit = (): void => {
      if (canvas.width !== frame.width || canvas.height !== frame.height) {
        canvas.width = frame.width; // resizing clears the canvas: only once a frame is ready
        canvas.height = frame.height;
      }
    };
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    if (frame.codec === 'raw') {
      const pixels = frame.width * frame.height;
      if (frame.payload.byteLength !== pixels * 3) {
        this.portal.count('decode-failed');
        return;
      }
      fit();
      const image = ctx.createImageData(frame.width, frame.height);
      for (let i = 0, j = 0; i < pixels; i++, j += 3) {
        image.data[i * 4] = frame.payload[j];
        image.data[i * 4 + 1] = frame.payload[j + 1];
        image.data[i * 4 + 2] = frame.payload[j + 2];
        image.data[i * 4 + 3] = 255;
      }
      ctx.putImageData(image, 0, 0);
    } else {
      try {
        const type = frame.codec === 'png' ? 'image/png' : 'image/jpeg';
        const bitmap = await createImageBitmap(new Blob([frame.payload as Uint8Array<ArrayBuffer>], { type }));
        if (bitmap.width !== frame.width || bitmap.height !== frame.height) {
          this.portal.count('decode-failed');
          bitmap.close();
          return;
        }
        if (frame.timestampUs < view.paintedUs) {
          bitmap.close(); // a newer frame finished decoding first
          return;
        }
        fit();
        ctx.drawImage(bitmap, 0, 0);
        bitmap.close();
      } catch {
        this.portal.count('decode-failed');
        return;
      }
    }
    view.paintedUs = frame.timestampUs;
    view.frames.push(performance.now());
    if (view.frames.length > 240) view.frames.splice(0, view.frames.length - 240);
  }

  // -- per display frame and per drive tick ---------------------------------------------------
  private render(): void {
    const now = performance.now();
    const state = this.latest;
    if (state && state !== this.shown) {
      this.shown = state;
      state.values.forEach((v, i) => (this.jointCells[i].textContent = v.toFixed(4)));
      this.latencies.push((nowUs() - state.timestampUs) / 1000);
      if (this.latencies.length > 300) this.latencies.splice(0, this.latencies.length - 300);
      this.plot.draw();
    }
    while (this.stateTimes.length && this.stateTimes[0] < now - 1000) this.stateTimes.shift();
    for (const view of this.cameras.values()) {
      while (view.frames.length && view.frames[0] < now - 1000) view.frames.shift();
      const el = view.element;
      const size = el instanceof HTMLVideoElement ? `${el.videoWidth}x${el.videoHeight}` : `${el.width}x${el.height}`;
      view.caption.textContent = `${view.name} · ${size} · ${view.frames.length} fps`;
    }
    const stats = this.stats();
    $('rtt').textContent = stats.rttMs === null ? '–' : `${stats.rttMs.toFixed(1)} ms`;
    $('rate').textContent = `${stats.stateRateHz} /s`;
    $('latency').textContent = stats.latencyP50Ms === null ? '–' : `${stats.latencyP50Ms.toFixed(1)} ms (p95 ${stats.latencyP95Ms!.toFixed(1)})`;
    $('sent').textContent = String(stats.actionsSent);
    requestAnimationFrame(() => this.render());
  }

  private drive(): void {
    const now = performance.now();
    const dt = this.lastDrive ? Math.min((now - this.lastDrive) / 1000, 0.2) : 1 / this.config.keymap.rate_hz;
    this.lastDrive = now;
    const pads = navigator.getGamepads ? navigator.getGamepads() : [];
    // a hidden or unfocused page drives with nothing (a hidden tab may report a stale gamepad)
    const gamepad = this.focused && !document.hidden ? (pads.find((p) => p !== null) ?? null) : null;
    const input = { held: document.hidden ? new Set<string>() : this.held, gamepad };
    const inControl = this.portal.activeOperator === this.portal.identity && this.portal.identity !== '';
    const wants = this.driver.enabled(input);
    // Rate fields integrate from the robot's state: only while the link is up and the state fresh.
    const staleAfterMs = Math.max(3000 / this.config.contract.fps, 300);
    const fresh = this.latest !== null && now - this.latestAt < staleAfterMs;
    const connected = this.portal.room.state === 'connected';
    const ok = inControl && connected && fresh && !this.inhibited;
    const state = new Map<string, number>();
    if (this.latest) this.config.contract.state.forEach((f, i) => state.set(f.name, this.latest!.values[i]));
    if (!inControl) this.driver.forget(); // another operator may have moved the robot meanwhile
    const values = this.driver.step(ok ? input : { held: new Set(), gamepad: null }, dt, state);
    if (values && values.every(Number.isFinite)) this.portal.sendAction(values, this.latest?.timestampUs ?? 0);
    else if (values) this.portal.count('non-finite-action');
    this.driving = values !== null;
    const why = this.inhibited
      ? 'stopped here: Take control to drive again'
      : !inControl
        ? 'take control to drive'
        : !connected
          ? 'not driving: reconnecting'
          : 'not driving: no fresh robot state';
    const pill = $('driving');
    pill.textContent = this.driving ? 'driving' : wants ? why : 'not driving';
    pill.className = `pill ${this.driving ? 'ok' : wants ? 'warn' : ''}`;
  }

  // -- for tests and benchmarks ---------------------------------------------------------------
  /** Start a fresh latency window (the benchmark measures from here). */
  resetStats(): void {
    this.latencies.length = 0;
  }

  stats() {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const pct = (q: number): number | null => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
    const cameras: Record<string, { fps: number; width: number; height: number }> = {};
    for (const view of this.cameras.values()) {
      const el = view.element;
      cameras[view.name] = {
        fps: view.frames.length,
        width: el instanceof HTMLVideoElement ? el.videoWidth : el.width,
        height: el instanceof HTMLVideoElement ? el.videoHeight : el.height,
      };
    }
    return {
      identity: this.portal?.identity ?? '',
      connected: this.portal?.room.state === 'connected',
      robot: this.portal?.robot?.identity ?? '',
      activeOperator: this.portal?.activeOperator ?? '',
      driving: this.driving,
      state: this.shown ? { timestampUs: this.shown.timestampUs, values: this.shown.values } : null,
      stateRateHz: this.stateTimes.filter((t) => t >= performance.now() - 1000).length,
      inhibited: this.inhibited,
      latencyP50Ms: pct(0.5),
      latencyP95Ms: pct(0.95),
      latencySamples: sorted.length,
      rttMs: this.portal?.rttMs ?? null,
      actionsSent: this.portal?.counts['actions-sent'] ?? 0,
      lastAction: this.portal?.lastAction ?? null,
      counts: { ...(this.portal?.counts ?? {}) },
      cameras,
      problem: this.problem,
      message: $('message').textContent ?? '',
      fingerprints: { state: this.portal?.stateFp, action: this.portal?.actionFp },
    };
  }

  /** The first `rows` rows of a camera's current picture, RGB, row-major (frame-number checks). */
  grab(camera: string, rows = 16): { width: number; height: number; rgb: number[] } | null {
    const view = this.cameras.get(camera);
    if (!view) return null;
    const el = view.element;
    const width = el instanceof HTMLVideoElement ? el.videoWidth : el.width;
    const height = el instanceof HTMLVideoElement ? el.videoHeight : el.height;
    if (!width || !height) return null;
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
    ctx.drawImage(el, 0, 0);
    const data = ctx.getImageData(0, 0, width, Math.min(rows, height)).data;
    const rgb: number[] = [];
    for (let i = 0; i < data.length; i += 4) rgb.push(data[i], data[i + 1], data[i + 2]);
    return { width, height, rgb };
  }
}

declare global {
  interface Window {
    portalConsole?: ConsolePage;
    portalWire?: typeof wire; // the page's wire codec, for the reference test vectors
  }
}

async function main(): Promise<void> {
  const response = await fetch('config.json');
  const config = (await response.json()) as PageConfig;
  const page = new ConsolePage(config);
  window.portalConsole = page;
  window.portalWire = wire;
  try {
    await page.start();
  } catch (err) {
    page.showProblem(`cannot join: ${err instanceof Error ? err.message : String(err)}`);
  }
}

void main();
