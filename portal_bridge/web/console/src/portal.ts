// A Portal operator in the browser: joins the room with the operator role, decodes the robot's
// state and frame video, shows its WebRTC tracks, answers and sends RTT pings, sends actions and
// calls the robot's RPCs. No ROS, no sync buffer: the page shows each stream as it arrives.
import {
  type ByteStreamReader,
  DisconnectReason,
  type Participant,
  type RemoteParticipant,
  type RemoteTrack,
  type RemoteTrackPublication,
  Room,
  RoomEvent,
  RpcError,
  Track,
} from 'livekit-client';

import type { ContractInfo, TokenGrant } from './config';
import {
  ACTIVE_OPERATOR_ATTR,
  EMERGENCY_STOP_RPC,
  type FrameHeader,
  ROLE_ATTR,
  RTT_PING,
  RTT_PONG,
  SET_ACTIVE_OPERATOR_RPC,
  type State,
  TOPIC_ACTION,
  TOPIC_ACTION_CHUNK,
  TOPIC_EXECUTED_CHUNK,
  TOPIC_FRAME_VIDEO,
  TOPIC_RTT,
  TOPIC_STATE,
  actionFingerprint,
  decodeState,
  encodeAction,
  hex,
  nowUs,
  parseFrame,
  parseRtt,
  rttPacket,
  stateFingerprint,
} from './wire';

const MAX_FRAME_BYTES = 64 * 2 ** 20; // as the bridges cap streams other than chunks

/** Reads a stream to its end without keeping it. */
async function drain(reader: ByteStreamReader): Promise<void> {
  for await (const _ of reader) {
    // discard
  }
}

export interface PortalEvents {
  state(state: State): void;
  frame(frame: FrameHeader): void;
  track(name: string, track: RemoteTrack | null): void;
  roster(): void;
  connection(status: string): void;
  problem(message: string): void;
}

export class PortalPage {
  readonly room = new Room({ adaptiveStream: false, dynacast: false });
  readonly stateFp: number;
  readonly actionFp: number;
  identity = '';
  robot: RemoteParticipant | null = null;
  activeOperator = '';
  rttMs: number | null = null;
  counts: Record<string, number> = {};
  foreignStateFp: number | null = null;
  lastAction: number[] | null = null;
  private pings = new Map<number, number>();
  private pingTimer: number | undefined;

  constructor(
    readonly contract: ContractInfo,
    private readonly preferredRobot: string,
    private readonly on: PortalEvents,
  ) {
    this.stateFp = stateFingerprint(contract.state);
    this.actionFp = actionFingerprint(contract.action);
  }

  count(reason: string): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
  }

  async connect(grant: TokenGrant): Promise<void> {
    this.identity = grant.identity;
    const room = this.room;
    room.on(RoomEvent.DataReceived, (payload, participant, _kind, topic) => this.onData(payload, participant, topic));
    room.on(RoomEvent.TrackSubscribed, (track, pub, participant) => this.onTrack(track, pub, participant));
    room.on(RoomEvent.TrackUnsubscribed, (_track, pub, participant) => {
      if (participant === this.robot) this.on.track(pub.trackName, null);
    });
    room.on(RoomEvent.ParticipantAttributesChanged, () => this.refreshRoster());
    room.on(RoomEvent.ParticipantConnected, () => this.refreshRoster());
    room.on(RoomEvent.ParticipantDisconnected, () => this.refreshRoster());
    room.on(RoomEvent.Reconnecting, () => this.on.connection('reconnecting'));
    room.on(RoomEvent.Reconnected, () => {
      this.on.connection('connected');
      void room.localParticipant.setAttributes({ [ROLE_ATTR]: 'operator' });
    });
    room.on(RoomEvent.Disconnected, (reason) => {
      const why = reason === undefined ? 'closed' : (DisconnectReason[reason] ?? String(reason));
      const hint = reason === DisconnectReason.DUPLICATE_IDENTITY ? ': another page joined with the same identity' : '';
      this.on.connection(`disconnected (${why}${hint})`);
    });
    room.registerByteStreamHandler(TOPIC_FRAME_VIDEO, (reader, info) =>
      void this.onFrame(reader, info.identity).catch(() => this.count('bad-stream')),
    );
    // chunks are for robots and recorders: read to the end so the SDK frees them, keeping nothing
    for (const topic of [TOPIC_ACTION_CHUNK, TOPIC_EXECUTED_CHUNK]) {
      room.registerByteStreamHandler(topic, (reader) => void drain(reader).catch(() => this.count('bad-stream')));
    }
    this.on.connection('connecting');
    await room.connect(grant.livekit_url, grant.token, { autoSubscribe: true });
    await room.localParticipant.setAttributes({ [ROLE_ATTR]: 'operator' });
    this.refreshRoster();
    this.on.connection('connected');
    this.ping();
    this.pingTimer = window.setInterval(() => this.ping(), Math.max(this.contract.ping_ms, 100));
  }

  async disconnect(): Promise<void> {
    window.clearInterval(this.pingTimer);
    await this.room.disconnect();
  }

  /** Portal peers in the room by role, the robot first. */
  peers(): { identity: string; role: string }[] {
    const out: { identity: string; role: string }[] = [];
    for (const p of this.room.remoteParticipants.values()) {
      const role = p.attributes[ROLE_ATTR];
      if (role === 'robot' || role === 'operator') out.push({ identity: p.identity, role });
    }
    out.push({ identity: this.identity, role: 'operator, this page' });
    return out.sort((a, b) => (a.role === 'robot' ? -1 : b.role === 'robot' ? 1 : a.identity.localeCompare(b.identity)));
  }

  private refreshRoster(): void {
    const robots = [...this.room.remoteParticipants.values()].filter((p) => p.attributes[ROLE_ATTR] === 'robot');
    const chosen = this.preferredRobot
      ? robots.find((p) => p.identity === this.preferredRobot)
      : (robots.find((p) => p === this.robot) ?? robots[0]);
    if (chosen !== this.robot) {
      this.robot = chosen ?? null;
      if (this.robot) {
        // tracks subscribed before the robot was known
        for (const pub of this.robot.videoTrackPublications.values()) {
          if (pub.track) this.onTrack(pub.track as RemoteTrack, pub, this.robot);
        }
      }
    }
    this.activeOperator = this.robot?.attributes[ACTIVE_OPERATOR_ATTR] ?? '';
    this.on.roster();
  }

  private isRobot(participant?: Participant): boolean {
    if (!participant) return false;
    if (!this.robot) this.refreshRoster();
    return participant === this.robot;
  }

  private onData(payload: Uint8Array, participant?: RemoteParticipant, topic?: string): void {
    if (topic === TOPIC_STATE) {
      if (!this.isRobot(participant)) {
        this.count('not-robot');
        return;
      }
      const decoded = decodeState(payload, this.contract.state, this.stateFp);
      if (decoded.ok) {
        this.on.state(decoded.value);
      } else {
        this.count(decoded.reason);
        if (decoded.reason === 'schema-mismatch' && this.foreignStateFp !== decoded.fingerprint) {
          this.foreignStateFp = decoded.fingerprint ?? null;
          this.on.problem(
            `The robot sends states with fingerprint ${hex(decoded.fingerprint ?? 0)}; this page's contract expects ` +
              `${hex(this.stateFp)}. The robot and this console use different wire contracts, so no values are shown. ` +
              'Serve the console the robot\'s portal.yaml (compare with `ros2 run portal_bridge contract`).',
          );
        }
      }
    } else if (topic === TOPIC_RTT) {
      const rtt = parseRtt(payload);
      if (!rtt) return;
      if (rtt.kind === RTT_PING && participant) {
        void this.room.localParticipant.publishData(rttPacket(RTT_PONG, rtt.timestampUs), {
          reliable: false,
          topic: TOPIC_RTT,
          destinationIdentities: [participant.identity],
        });
      } else if (rtt.kind === RTT_PONG && participant === this.robot && this.pings.has(rtt.timestampUs)) {
        // only the robot's pong: another operator answering our ping would measure the wrong link
        this.pings.delete(rtt.timestampUs);
        this.rttMs = Math.max(0, nowUs() - rtt.timestampUs) / 1000;
      }
    }
  }

  private ping(): void {
    const ts = nowUs();
    this.pings.set(ts, ts);
    if (this.pings.size > 64) this.pings.delete(this.pings.keys().next().value as number);
    void this.room.localParticipant
      .publishData(rttPacket(RTT_PING, ts), { reliable: false, topic: TOPIC_RTT })
      .catch(() => this.count('ping-failed'));
  }

  private async onFrame(reader: ByteStreamReader, sender: string): Promise<void> {
    if (!this.robot || sender !== this.robot.identity) {
      this.count('not-robot'); // decided before reading: a stranger's stream is drained, not kept
      await drain(reader);
      return;
    }
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const part of reader) {
      size += part.byteLength;
      if (size > MAX_FRAME_BYTES) {
        this.count('oversized-stream');
        await drain(reader);
        return;
      }
      parts.push(part);
    }
    const data = new Uint8Array(size);
    let offset = 0;
    for (const p of parts) {
      data.set(p, offset);
      offset += p.byteLength;
    }
    const frame = parseFrame(data);
    const declared = frame && this.contract.videos.find((v) => v.name === frame.name && !v.webrtc);
    if (!frame) this.count('bad-payload');
    else if (!declared) this.count('unknown-track');
    else if (declared.codec !== frame.codec) this.count('codec-mismatch');
    else this.on.frame(frame);
  }

  private onTrack(track: RemoteTrack, pub: RemoteTrackPublication, participant: RemoteParticipant): void {
    if (track.kind !== Track.Kind.Video) return;
    if (!this.isRobot(participant)) return;
    if (!this.contract.videos.some((v) => v.webrtc && v.name === pub.trackName)) {
      this.count('unknown-track');
      return;
    }
    this.on.track(pub.trackName, track);
  }

  sendAction(values: number[], inReplyToUs = 0): void {
    this.lastAction = values;
    const packet = encodeAction(values, this.contract.action, this.actionFp, nowUs(), inReplyToUs);
    void this.room.localParticipant
      .publishData(packet, { reliable: this.contract.action_reliable, topic: TOPIC_ACTION })
      .catch(() => this.count('publish-failed'));
    this.count('actions-sent');
  }

  /** Calls an RPC on the robot; resolves to an error message, or null on success. */
  private async callRobot(method: string, payload: string): Promise<string | null> {
    if (!this.robot) return 'no robot in the room';
    try {
      await this.room.localParticipant.performRpc({
        destinationIdentity: this.robot.identity,
        method,
        payload,
        responseTimeout: 5000,
      });
      return null;
    } catch (err) {
      return err instanceof RpcError ? `${err.message} (${err.code})` : String(err);
    }
  }

  takeControl(): Promise<string | null> {
    return this.callRobot(SET_ACTIVE_OPERATOR_RPC, this.identity);
  }

  release(): Promise<string | null> {
    return this.callRobot(SET_ACTIVE_OPERATOR_RPC, '');
  }

  emergencyStop(): Promise<string | null> {
    return this.callRobot(EMERGENCY_STOP_RPC, `browser console ${this.identity}: emergency stop button`);
  }
}
