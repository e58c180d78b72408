// The Portal wire protocol, byte for byte: dtypes, schema fingerprints, state/action packets,
// RTT packets and the frame-video header. Same layouts as livekit-portal and portal_bridge's
// Python core (portal/wire); the test vectors of the Portal reference are checked in
// portal_bridge/test/test_console_browser.py through this module.

export type DType = 'f64' | 'f32' | 'i32' | 'i16' | 'i8' | 'u32' | 'u16' | 'u8' | 'bool';

export interface Field {
  name: string;
  dtype: DType;
}

const TAG: Record<DType, number> = { f64: 1, f32: 2, i32: 3, i16: 4, i8: 5, u32: 6, u16: 7, u8: 8, bool: 9 };
const WIDTH: Record<DType, number> = { f64: 8, f32: 4, i32: 4, i16: 2, i8: 1, u32: 4, u16: 2, u8: 1, bool: 1 };
const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  i32: [-(2 ** 31), 2 ** 31 - 1],
  i16: [-(2 ** 15), 2 ** 15 - 1],
  i8: [-128, 127],
  u32: [0, 2 ** 32 - 1],
  u16: [0, 65535],
  u8: [0, 255],
};

export const STATE_HEADER = 12;
export const ACTION_HEADER = 20;
const ACTION_XOR = 0xa1c0b001;

export const TOPIC_STATE = 'portal_state';
export const TOPIC_ACTION = 'portal_action';
export const TOPIC_ACTION_CHUNK = 'portal_action_chunk';
export const TOPIC_FRAME_VIDEO = 'portal_frame_video';
export const TOPIC_RTT = 'portal_rtt';
export const TOPIC_EXECUTED_CHUNK = 'portal_bridge_executed_chunk';
export const ROLE_ATTR = 'lk.portal.role';
export const ACTIVE_OPERATOR_ATTR = 'lk.portal.active_operator';
export const SET_ACTIVE_OPERATOR_RPC = 'portal.set_active_operator';
export const EMERGENCY_STOP_RPC = 'portal_bridge.emergency_stop';

const utf8 = new TextEncoder();

function mix(h: number, byte: number): number {
  return Math.imul((h ^ byte) >>> 0, 0x01000193) >>> 0;
}

/** 32-bit FNV-1a over each field's UTF-8 name, 0xFF, its dtype tag, 0xFF. */
export function schemaFingerprint(fields: Field[]): number {
  let h = 0x811c9dc5;
  for (const f of fields) {
    for (const b of utf8.encode(f.name)) h = mix(h, b);
    h = mix(h, 0xff);
    h = mix(h, TAG[f.dtype]);
    h = mix(h, 0xff);
  }
  return h >>> 0;
}

export const stateFingerprint = (fields: Field[]): number => schemaFingerprint(fields);
export const actionFingerprint = (fields: Field[]): number => (schemaFingerprint(fields) ^ ACTION_XOR) >>> 0;

export function hex(fp: number): string {
  return '0x' + (fp >>> 0).toString(16).padStart(8, '0');
}

export const rowBytes = (fields: Field[]): number => fields.reduce((n, f) => n + WIDTH[f.dtype], 0);

/** One value as the wire carries it: saturating integer casts, truncation toward zero, f32 rounding. */
function writeValue(view: DataView, offset: number, dtype: DType, v: number): number {
  switch (dtype) {
    case 'f64':
      view.setFloat64(offset, v, true);
      break;
    case 'f32':
      view.setFloat32(offset, v, true);
      break;
    case 'bool':
      view.setUint8(offset, v !== 0 && !Number.isNaN(v) ? 1 : 0);
      break;
    default: {
      const [lo, hi] = INT_RANGE[dtype]!;
      const x = Number.isNaN(v) ? 0 : v > hi ? hi : v < lo ? lo : Math.trunc(v);
      if (dtype === 'i32') view.setInt32(offset, x, true);
      else if (dtype === 'i16') view.setInt16(offset, x, true);
      else if (dtype === 'i8') view.setInt8(offset, x);
      else if (dtype === 'u32') view.setUint32(offset, x, true);
      else if (dtype === 'u16') view.setUint16(offset, x, true);
      else view.setUint8(offset, x);
    }
  }
  return offset + WIDTH[dtype];
}

function readValue(view: DataView, offset: number, dtype: DType): number {
  switch (dtype) {
    case 'f64':
      return view.getFloat64(offset, true);
    case 'f32':
      return view.getFloat32(offset, true);
    case 'i32':
      return view.getInt32(offset, true);
    case 'i16':
      return view.getInt16(offset, true);
    case 'i8':
      return view.getInt8(offset);
    case 'u32':
      return view.getUint32(offset, true);
    case 'u16':
      return view.getUint16(offset, true);
    case 'u8':
      return view.getUint8(offset);
    case 'bool':
      return view.getUint8(offset) !== 0 ? 1 : 0;
  }
}

export interface State {
  timestampUs: number;
  values: number[];
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: 'bad-payload' | 'schema-mismatch'; fingerprint?: number };

/** A `portal_state` packet: [u32 fp][u64 ts][fields...], checked against this schema. */
export function decodeState(data: Uint8Array, fields: Field[], fingerprint: number): Decoded<State> {
  if (data.byteLength < STATE_HEADER) return { ok: false, reason: 'bad-payload' };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const fp = view.getUint32(0, true);
  if (fp !== fingerprint) return { ok: false, reason: 'schema-mismatch', fingerprint: fp };
  if (data.byteLength !== STATE_HEADER + rowBytes(fields)) return { ok: false, reason: 'bad-payload' };
  const values: number[] = [];
  let offset = STATE_HEADER;
  for (const f of fields) {
    values.push(readValue(view, offset, f.dtype));
    offset += WIDTH[f.dtype];
  }
  return { ok: true, value: { timestampUs: Number(view.getBigUint64(4, true)), values } };
}

/** A packet: [u32 fp][u64 ts][u64 in_reply_to if an action][fields...]; every field is written. */
function encodeFlat(header: number, values: number[], fields: Field[], fingerprint: number, ts: number[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(header + rowBytes(fields));
  const view = new DataView(out.buffer);
  view.setUint32(0, fingerprint, true);
  ts.forEach((t, i) => view.setBigUint64(4 + 8 * i, BigInt(Math.trunc(t)), true));
  let offset = header;
  fields.forEach((f, i) => {
    offset = writeValue(view, offset, f.dtype, values[i] ?? 0);
  });
  return out;
}

/** A `portal_action` packet: [u32 fp][u64 ts][u64 in_reply_to][fields...]. */
export function encodeAction(
  values: number[],
  fields: Field[],
  fingerprint: number,
  timestampUs: number,
  inReplyToUs = 0,
): Uint8Array<ArrayBuffer> {
  return encodeFlat(ACTION_HEADER, values, fields, fingerprint, [timestampUs, inReplyToUs]);
}

/** A `portal_state` packet (the browser never sends one; used by the wire tests). */
export function encodeState(values: number[], fields: Field[], fingerprint: number, timestampUs: number): Uint8Array {
  return encodeFlat(STATE_HEADER, values, fields, fingerprint, [timestampUs]);
}

export const RTT_PING = 0;
export const RTT_PONG = 1;

export function rttPacket(kind: number, timestampUs: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(9);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setBigUint64(1, BigInt(Math.trunc(timestampUs)), true);
  return out;
}

export function parseRtt(data: Uint8Array): { kind: number; timestampUs: number } | null {
  if (data.byteLength !== 9) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { kind: view.getUint8(0), timestampUs: Number(view.getBigUint64(1, true)) };
}

export const FRAME_CODECS: Record<number, string> = { 0: 'raw', 1: 'png', 2: 'mjpeg' };

export interface FrameHeader {
  codec: string;
  width: number;
  height: number;
  timestampUs: number;
  name: string;
  payload: Uint8Array;
}

/** The 16-byte frame-video header plus the track name; null for anything malformed. */
export function parseFrame(data: Uint8Array): FrameHeader | null {
  if (data.byteLength < 16) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const codec = FRAME_CODECS[view.getUint8(1)];
  const nameLen = view.getUint16(14, true);
  if (view.getUint8(0) !== 1 || codec === undefined || nameLen > 256 || data.byteLength < 16 + nameLen) return null;
  let name: string;
  try {
    name = new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(16, 16 + nameLen));
  } catch {
    return null;
  }
  return {
    codec,
    width: view.getUint16(2, true),
    height: view.getUint16(4, true),
    timestampUs: Number(view.getBigUint64(6, true)),
    name,
    payload: data.subarray(16 + nameLen),
  };
}

export const nowUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);
