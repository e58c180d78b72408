// Driving from the keyboard and a gamepad, under the dead-man rule: an action goes out only while
// a bound key or the gamepad's enable button is held. Releasing sends nothing: the robot's action
// watchdog then holds or stops it, as it would for any operator that goes quiet.
import type { Binding, Keymap } from './config';
import type { Field } from './wire';

export interface DriveInput {
  held: ReadonlySet<string>; // KeyboardEvent.code values held now
  gamepad: Gamepad | null;
}

export class Driver {
  private targets: number[] | null = null; // while driving: the targets being integrated
  private lastSent: number[] | null = null; // what the robot holds from us, while we stay in control
  private readonly index: Map<string, number>;
  private readonly valueFields: Set<number>;

  constructor(
    private readonly keymap: Keymap,
    private readonly fields: Field[],
  ) {
    this.index = new Map(fields.map((f, i) => [f.name, i]));
    const all = [...keymap.keyboard, ...(keymap.gamepad?.axes ?? []), ...(keymap.gamepad?.buttons ?? [])];
    this.valueFields = new Set(all.filter((b) => b.value !== undefined).map((b) => this.index.get(b.field)!));
  }

  get boundKeys(): Set<string> {
    return new Set(this.keymap.keyboard.map((b) => b.key!));
  }

  /** Whether the dead-man rule allows sending now. */
  enabled(input: DriveInput): boolean {
    if (this.keymap.keyboard.some((b) => input.held.has(b.key!))) return true;
    const pad = this.keymap.gamepad;
    return !!(pad && input.gamepad && input.gamepad.buttons[pad.enable_button]?.pressed);
  }

  /** Control was lost: the robot no longer holds our last action, so start again from its state. */
  forget(): void {
    this.lastSent = null;
  }

  /**
   * The action to send after `dtS` seconds of driving, or null (nothing held: send nothing).
   * A drive starts from our last action while the robot still holds it (so a field no key moves
   * keeps its target, e.g. a closed gripper), else from the robot's state (`state` maps state
   * field names to its latest values).
   */
  step(input: DriveInput, dtS: number, state: Map<string, number>): number[] | null {
    if (!this.enabled(input)) {
      this.targets = null;
      return null;
    }
    if (this.targets === null) this.targets = this.lastSent ? [...this.lastSent] : this.fields.map((f) => state.get(f.name) ?? 0);
    const targets = this.targets;
    for (const i of this.valueFields) targets[i] = 0;
    const apply = (b: Binding, amount: number): void => {
      const i = this.index.get(b.field);
      if (i === undefined || amount === 0) return;
      if (b.rate !== undefined) targets[i] += b.rate * amount * dtS;
      else targets[i] = (b.value ?? 0) * amount;
    };
    for (const b of this.keymap.keyboard) if (input.held.has(b.key!)) apply(b, 1);
    const pad = this.keymap.gamepad;
    if (pad && input.gamepad && input.gamepad.buttons[pad.enable_button]?.pressed) {
      for (const b of pad.axes) {
        const v = input.gamepad.axes[b.axis!] ?? 0;
        apply(b, Math.abs(v) < pad.deadzone ? 0 : v);
      }
      for (const b of pad.buttons) if (input.gamepad.buttons[b.button!]?.pressed) apply(b, 1);
    }
    this.lastSent = [...targets];
    return [...targets];
  }

  /** "Q / A: shoulder_pan ±0.6/s" lines for the help panel. */
  describe(): string[] {
    const lines = this.keymap.keyboard.map((b) =>
      b.rate !== undefined ? `${b.key}: ${b.field} ${b.rate > 0 ? '+' : ''}${b.rate}/s` : `${b.key}: ${b.field} = ${b.value}`,
    );
    const pad = this.keymap.gamepad;
    if (pad) {
      lines.push(`gamepad: hold button ${pad.enable_button} to drive`);
      for (const b of pad.axes) lines.push(`  axis ${b.axis}: ${b.field} ${b.rate !== undefined ? `${b.rate}/s` : `× ${b.value}`}`);
      for (const b of pad.buttons) lines.push(`  button ${b.button}: ${b.field} ${b.rate !== undefined ? `${b.rate}/s` : `= ${b.value}`}`);
    }
    return lines;
  }
}
