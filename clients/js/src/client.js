// LimaoClient: a LiMaoIM v4 client over WebSocket, for browsers and Node 20
// (`node --experimental-websocket`).
//
//   const client = new LimaoClient();
//   client.on('message', (m) => console.log(m.from_uid, new TextDecoder().decode(m.payload)));
//   await client.connect('ws://127.0.0.1:2122', 'alice', 'token', 1);
//   const ack = await client.send('bob', 1, '{"type":1,"content":"hi"}');
//   // ack: { client_seq, client_msg_no, message_id, message_seq, reason_code }
//
// Events:
//   'connected'    { uid, version, time_diff }                 after every successful CONNACK
//   'disconnected' { reason, wasConnected, willReconnect, delayMs }   every time a socket ends
//   'reconnecting' { attempt, delayMs }                        a retry has been scheduled
//   'kicked'       { reason_code, reason }                     the server sent DISCONNECT
//   'message'      RECV fields with the decrypted payload      (already acknowledged by RECVACK)
//   'error'        Error                                       anything worth telling the app
//   'state'        'idle'|'connecting'|'connected'|'reconnecting'|'closed'
//
// The wire format is in codec.js, the security layer in crypto.js; this file is only
// the connection's state machine.

import { encodePacket, PacketSplitter, LATEST_VERSION, ReasonCode, SETTING_RECEIPT } from './codec.js';
import { CipherSession, generateKeyPair, base64Encode, hexEncode } from './crypto.js';
import { Emitter } from './emitter.js';

const textEncoder = new TextEncoder();

/** Defaults of every option of the constructor. */
export const DEFAULT_OPTIONS = Object.freeze({
  pingIntervalMs: 20_000, // the original Go client pings every 20 s (PROTOCOL.md §10)
  pongTimeoutMs: 10_000, // no packet at all this long after a PING: the link is dead
  connectTimeoutMs: 10_000, // WebSocket open + CONNECT → CONNACK
  sendTimeoutMs: 30_000, // SEND → SENDACK
  reconnect: true,
  initialDelayMs: 500, // first retry after a drop
  maxDelayMs: 30_000,
  backoffFactor: 2,
  jitter: 0.5, // each delay is drawn from [base·(1−jitter), base]
  deviceId: null, // null: a random id per client object
});

/** An error with a machine-readable `code` ('AUTH_FAILED', 'MSGKEY_MISMATCH', …). */
export class LimaoError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'LimaoError';
    this.code = code;
    Object.assign(this, details);
  }
}

/**
 * Delay before retry number `attempt` (0 = first retry): exponential growth capped at
 * maxDelayMs, then "jitter" so that many clients dropped at the same moment (a server
 * restart) do not all come back in the same millisecond.
 */
export function backoffDelay(attempt, opts = DEFAULT_OPTIONS, random = Math.random) {
  const base = Math.min(opts.maxDelayMs, opts.initialDelayMs * opts.backoffFactor ** attempt);
  return Math.round(base * (1 - opts.jitter * random()));
}

/** 32 lowercase hex characters: a fresh client_msg_no (the server de-duplicates on it). */
export function newClientMsgNo() {
  return hexEncode(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

const defaultTimers = {
  // Wrapped so that browsers call them with the right `this`.
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (id) => globalThis.clearInterval(id),
};

export class LimaoClient extends Emitter {
  /**
   * @param {object} [options] see DEFAULT_OPTIONS; also, for tests:
   *   WebSocket (constructor, default globalThis.WebSocket), timers
   *   ({setTimeout, clearTimeout, setInterval, clearInterval}), random (() => [0,1)).
   */
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.timers = options.timers ?? defaultTimers;
    this.random = options.random ?? Math.random;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.deviceId = this.options.deviceId ?? `js-${newClientMsgNo().slice(0, 12)}`;
    this.version = LATEST_VERSION;

    this.state = 'idle';
    this.conn = null; // the current socket and its per-connection state, see #open()
    this.login = null; // { url, uid, token, deviceFlag }
    this.failures = 0; // consecutive failed attempts: the backoff exponent
    this.retryTimer = null;
    this.nextClientSeq = 1;
    this.pendingSends = new Map(); // client_seq -> { resolve, reject, timer, client_msg_no }
    this.firstConnect = null; // { resolve, reject } of connect()'s promise until it settles
  }

  // -------------------------------------------------------------------------
  // Public API

  /**
   * Opens the connection and logs in. Resolves after the first successful CONNACK
   * with `{ uid, version, time_diff }`. Rejects when the server refuses the login
   * (no retry: the token will not get better) or when close() is called first.
   * Network failures are retried with backoff while `reconnect` is on; with it off,
   * the first failure rejects.
   */
  connect(url, uid, token, deviceFlag = 1) {
    if (this.state !== 'idle' && this.state !== 'closed') {
      return Promise.reject(new LimaoError('BUSY', `connect() while ${this.state}`));
    }
    if (!this.WebSocket) {
      return Promise.reject(new LimaoError('NO_WEBSOCKET', 'no WebSocket implementation (Node 20 needs --experimental-websocket)'));
    }
    this.login = { url, uid, token, deviceFlag };
    this.failures = 0;
    return new Promise((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.#open();
    });
  }

  /**
   * Sends a message. Resolves with the SENDACK whatever its reason code
   * (`{ client_seq, client_msg_no, message_id, message_seq, reason_code }`, reason 1 =
   * stored and delivered); rejects when not connected, on timeout, or when the
   * connection drops first (then the message may or may not have arrived: resend with
   * the same `clientMsgNo` and `dup: true`, the server de-duplicates).
   *
   * @param {string} channelId a uid (channelType 1) or a group id (2)
   * @param {number} channelType
   * @param {Uint8Array|string} payload plaintext; strings are sent as UTF-8
   * @param {object} [opts] clientMsgNo, redDot (default true), syncOnce, noPersist,
   *   dup, receipt (setting bit 7), timeoutMs
   */
  send(channelId, channelType, payload, opts = {}) {
    const conn = this.conn;
    if (this.state !== 'connected' || !conn?.cipher) {
      return Promise.reject(new LimaoError('NOT_CONNECTED', `cannot send while ${this.state}`));
    }
    const client_seq = this.#takeClientSeq();
    const client_msg_no = opts.clientMsgNo ?? newClientMsgNo();
    const plain = typeof payload === 'string' ? textEncoder.encode(payload) : payload;

    return new Promise((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.pendingSends.delete(client_seq);
        reject(new LimaoError('SEND_TIMEOUT', `no SENDACK for client_seq ${client_seq}`, { client_seq, client_msg_no }));
      }, opts.timeoutMs ?? this.options.sendTimeoutMs);
      this.pendingSends.set(client_seq, { resolve, reject, timer, client_msg_no });

      // Encryption is asynchronous; the chain keeps packets in the order send() was called.
      conn.outbound = conn.outbound.then(async () => {
        const packet = await this.#sealSend(conn.cipher, {
          type: 'SEND',
          flags: { dup: !!opts.dup, sync_once: !!opts.syncOnce, red_dot: opts.redDot ?? true, no_persist: !!opts.noPersist },
          setting: opts.receipt ? SETTING_RECEIPT : 0,
          client_seq,
          client_msg_no,
          channel_id: String(channelId),
          channel_type: channelType,
          payload: plain,
        });
        this.#write(conn, packet);
      }).catch((err) => this.#settleSend(client_seq, null, err));
    });
  }

  /** Closes for good: no more reconnects; pending sends are rejected. */
  close() {
    const wasConnected = this.state === 'connected';
    this.#setState('closed');
    this.#cancelRetry();
    this.#rejectFirstConnect(new LimaoError('CLOSED', 'close() was called'));
    if (this.conn) this.#drop(this.conn, 'closed by client', { retry: false, wasConnected });
  }

  // -------------------------------------------------------------------------
  // Connection attempts

  /** Starts one attempt: a new socket and its own state, forgotten when it ends. */
  #open() {
    this.retryTimer = null;
    this.#setState(this.failures === 0 ? 'connecting' : 'reconnecting');
    let ws;
    try {
      ws = new this.WebSocket(this.login.url);
    } catch (err) {
      // A malformed URL throws synchronously: retrying the same URL cannot help.
      this.#fail(new LimaoError('BAD_URL', `cannot open ${this.login.url}: ${err.message}`));
      return;
    }
    ws.binaryType = 'arraybuffer';
    const conn = {
      ws,
      authenticated: false,
      splitter: new PacketSplitter(this.version),
      cipher: null,
      keyPair: null,
      inbound: Promise.resolve(), // received data is handled strictly in order
      outbound: Promise.resolve(), // sent packets are written in the order they were made
      connectTimer: null,
      pingTimer: null,
      pongTimer: null,
    };
    this.conn = conn;

    conn.connectTimer = this.timers.setTimeout(
      () => this.#drop(conn, 'connect timeout'),
      this.options.connectTimeoutMs,
    );
    ws.onopen = () => this.#sendConnect(conn);
    ws.onmessage = (ev) => this.#onData(conn, ev.data);
    ws.onerror = () => this.#drop(conn, 'websocket error');
    ws.onclose = (ev) => this.#drop(conn, `websocket closed (code ${ev?.code ?? '?'}${ev?.reason ? `: ${ev.reason}` : ''})`);
  }

  /** CONNECT with a fresh X25519 public key (PROTOCOL.md §4.1, §5.1). */
  async #sendConnect(conn) {
    try {
      conn.keyPair = await generateKeyPair();
      if (this.conn !== conn) return; // dropped while we were generating the key
      this.#write(conn, {
        type: 'CONNECT',
        version: this.version,
        client_key: base64Encode(conn.keyPair.publicKey),
        device_flag: this.login.deviceFlag,
        device_id: this.deviceId,
        client_timestamp: Date.now(), // milliseconds, as the spec says (the Go client sends seconds, Q6)
        uid: this.login.uid,
        token: this.login.token,
      });
    } catch (err) {
      // No WebCrypto or no X25519 in it: no point in retrying.
      this.#fail(new LimaoError('CRYPTO', `cannot make the key pair: ${err.message}`));
    }
  }

  /** Every WebSocket message: bytes in, packets out, handled one at a time. */
  #onData(conn, data) {
    conn.inbound = conn.inbound.then(async () => {
      if (this.conn !== conn) return;
      if (typeof data === 'string') {
        this.emit('error', new LimaoError('TEXT_FRAME', 'ignored a text WebSocket message: LiMaoIM uses binary messages'));
        return;
      }
      const bytes = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : await data.arrayBuffer(); // Blob
      const packets = conn.splitter.push(ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes);
      for (const packet of packets) {
        if (this.conn !== conn) return;
        this.#clearPongTimer(conn); // any packet proves the link is alive
        await this.#handle(conn, packet);
      }
    }).catch((err) => {
      // A framing error leaves the stream unusable: start over on a new connection.
      this.emit('error', err);
      this.#drop(conn, `protocol error: ${err.message}`);
    });
  }

  async #handle(conn, packet) {
    if (!conn.authenticated && packet.type !== 'CONNACK') {
      throw new LimaoError('PROTOCOL', `${packet.type} before CONNACK`);
    }
    switch (packet.type) {
      case 'CONNACK':
        return this.#onConnack(conn, packet);
      case 'SENDACK':
        return this.#settleSend(packet.client_seq, packet);
      case 'RECV':
        return this.#onRecv(conn, packet);
      case 'PONG':
        return undefined; // #onData already cleared the pong timer
      case 'DISCONNECT':
        return this.#onDisconnect(conn, packet);
      default:
        // CONNECT, SEND, RECVACK, PING are client → server only.
        this.emit('error', new LimaoError('PROTOCOL', `unexpected ${packet.type} from the server`));
        return undefined;
    }
  }

  async #onConnack(conn, p) {
    if (conn.authenticated) throw new LimaoError('PROTOCOL', 'second CONNACK');
    if (p.reason_code !== ReasonCode.Success) {
      // A refused login is final: retrying with the same token would be refused again.
      this.#fail(new LimaoError('AUTH_FAILED', `login refused, CONNACK reason ${p.reason_code}`, { reason_code: p.reason_code }));
      return;
    }
    conn.cipher = await CipherSession.fromHandshake(conn.keyPair.privateKey, p.server_key, p.salt);
    if (this.conn !== conn) return;
    conn.authenticated = true;
    this.timers.clearTimeout(conn.connectTimer);
    this.failures = 0;
    conn.pingTimer = this.timers.setInterval(() => this.#ping(conn), this.options.pingIntervalMs);
    this.#setState('connected');

    const info = { uid: this.login.uid, version: this.version, time_diff: p.time_diff };
    this.emit('connected', info);
    const first = this.firstConnect;
    this.firstConnect = null;
    first?.resolve(info);
  }

  /**
   * A RECV: check the MsgKey, decrypt, hand it to the app, acknowledge. A message whose
   * MsgKey or payload does not check out is NOT acknowledged — acknowledging would
   * tell the server a forged or corrupted message was delivered.
   */
  async #onRecv(conn, p) {
    if (!(await conn.cipher.checkRecvMsgKey(p))) {
      this.emit('error', new LimaoError('MSGKEY_MISMATCH', `RECV ${p.message_id} has a bad MsgKey; not acknowledged`, { packet: p }));
      return;
    }
    let payload;
    try {
      payload = await conn.cipher.decryptPayload(p.payload);
    } catch (err) {
      this.emit('error', new LimaoError('PAYLOAD_DECODE', `RECV ${p.message_id}: payload does not decrypt (${err.message}); not acknowledged`, { packet: p }));
      return;
    }
    if (this.conn !== conn) return;
    const { type, msg_key, ...fields } = p; // eslint-disable-line no-unused-vars
    this.emit('message', { ...fields, payload });
    if (this.conn !== conn) return; // a listener closed the client
    // Echo the RECV's header flags: the server reads SyncOnce/NoPersist on the RECVACK (§4.6).
    this.#write(conn, { type: 'RECVACK', flags: p.flags, message_id: p.message_id, message_seq: p.message_seq });
  }

  /** The server replaced this session (another login of the same uid and device flag). */
  #onDisconnect(conn, p) {
    this.emit('kicked', { reason_code: p.reason_code, reason: p.reason });
    // Reconnecting would kick the other session in turn, forever: stop here.
    this.#rejectFirstConnect(new LimaoError('KICKED', p.reason));
    this.#setState('closed');
    this.#drop(conn, `kicked: ${p.reason}`, { retry: false });
  }

  // -------------------------------------------------------------------------
  // Heartbeat

  #ping(conn) {
    if (this.conn !== conn || conn.pongTimer) return; // still waiting for an answer to the last one
    this.#write(conn, { type: 'PING' });
    conn.pongTimer = this.timers.setTimeout(() => {
      conn.pongTimer = null;
      this.#drop(conn, 'pong timeout');
    }, this.options.pongTimeoutMs);
  }

  #clearPongTimer(conn) {
    if (conn.pongTimer) this.timers.clearTimeout(conn.pongTimer);
    conn.pongTimer = null;
  }

  // -------------------------------------------------------------------------
  // Ending a connection, retrying

  /**
   * The one place a connection ends, whatever the cause. Idempotent: the socket's
   * error and close events, timers and close() may all call it.
   */
  #drop(conn, reason, { retry = true, wasConnected = conn.authenticated } = {}) {
    if (this.conn !== conn) return;
    this.conn = null;
    this.timers.clearTimeout(conn.connectTimer);
    this.timers.clearInterval(conn.pingTimer);
    this.#clearPongTimer(conn);
    const ws = conn.ws;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(1000);
    } catch {
      // already closed or closing
    }
    for (const seq of [...this.pendingSends.keys()]) {
      this.#settleSend(seq, null, new LimaoError('DISCONNECTED', `connection lost before the SENDACK (${reason})`));
    }

    const willRetry = retry && this.options.reconnect && this.state !== 'closed';
    const delayMs = willRetry ? backoffDelay(this.failures, this.options, this.random) : null;
    this.emit('disconnected', { reason, wasConnected, willReconnect: willRetry, delayMs });
    if (!willRetry) {
      if (this.state !== 'closed') this.#setState('closed');
      this.#rejectFirstConnect(new LimaoError('CONNECT_FAILED', reason));
      return;
    }
    this.failures += 1;
    this.#setState('reconnecting');
    this.emit('reconnecting', { attempt: this.failures, delayMs });
    this.retryTimer = this.timers.setTimeout(() => this.#open(), delayMs);
  }

  /** A failure that retrying cannot fix: report it and stop. */
  #fail(err) {
    this.emit('error', err);
    this.#rejectFirstConnect(err);
    this.#setState('closed');
    if (this.conn) this.#drop(this.conn, err.message, { retry: false });
  }

  #cancelRetry() {
    if (this.retryTimer) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  #rejectFirstConnect(err) {
    const first = this.firstConnect;
    this.firstConnect = null;
    first?.reject(err);
  }

  // -------------------------------------------------------------------------
  // Helpers

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** client_seq is a u32 on the wire (Q5): wrap before 2^32, skip 0. */
  #takeClientSeq() {
    const seq = this.nextClientSeq;
    this.nextClientSeq = seq >= 0xffffffff ? 1 : seq + 1;
    return seq;
  }

  /** Encrypts the payload and signs the SEND (PROTOCOL.md §5.3, §5.4). */
  async #sealSend(cipher, packet) {
    packet.payload = await cipher.encryptPayload(packet.payload);
    packet.msg_key = await cipher.sendMsgKey(packet);
    return packet;
  }

  #settleSend(clientSeq, ack, err) {
    const pending = this.pendingSends.get(clientSeq);
    if (!pending) return; // a late SENDACK after a timeout, or not ours
    this.pendingSends.delete(clientSeq);
    this.timers.clearTimeout(pending.timer);
    if (err) pending.reject(err);
    else {
      pending.resolve({
        client_seq: ack.client_seq,
        client_msg_no: pending.client_msg_no,
        message_id: ack.message_id,
        message_seq: ack.message_seq,
        reason_code: ack.reason_code,
      });
    }
  }

  #write(conn, packet) {
    if (this.conn !== conn) throw new LimaoError('DISCONNECTED', 'the connection is gone');
    conn.ws.send(encodePacket(packet, this.version));
  }
}
