// What the console node serves as /config.json (portal_bridge/console/page_config.py).
import type { Field } from './wire';

export interface VideoInfo {
  name: string;
  codec: string;
  webrtc: boolean;
}

export interface ContractInfo {
  fps: number;
  ping_ms: number;
  state_reliable: boolean;
  action_reliable: boolean;
  state: Field[];
  action: Field[];
  videos: VideoInfo[];
  action_chunks: { name: string; horizon: number; fields: Field[] }[];
  fingerprints: { state: number; action: number; chunks: Record<string, number> };
}

export interface Binding {
  key?: string;
  axis?: number;
  button?: number;
  field: string;
  rate?: number;
  value?: number;
}

export interface Keymap {
  version: number;
  rate_hz: number;
  keyboard: Binding[];
  gamepad: { enable_button: number; deadzone: number; axes: Binding[]; buttons: Binding[] } | null;
}

export interface PageConfig {
  livekit_url: string;
  room: string;
  role: string;
  robot_identity: string;
  contract_name: string;
  contract: ContractInfo;
  keymap: Keymap;
  auth: { needs_secret: boolean; logins: boolean };
}

export interface TokenGrant {
  token: string;
  identity: string;
  ttl_s: number;
  livekit_url: string;
  room: string;
}
