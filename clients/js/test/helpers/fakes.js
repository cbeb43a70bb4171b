// Test doubles for LimaoClient: a fake clock (timers that only run when the test
// says so), a fake WebSocket, and a fake server that speaks real v4 (X25519, AES,
// MsgKeys) on top of it — so the client's whole state machine runs without a network.

import { PacketSplitter, encodePacket } from '../../src/codec.js';
import { CipherSession, generateKeyPair, deriveSharedSecret, deriveAesKey, base64Encode, base64Decode } from '../../src/crypto.js';

/** Timers driven by advance(): what the client schedules, and when. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.timers = new Map(); // id -> { at, fn, every }
    this.log = []; // every setTimeout delay asked for, in order
  }

  get api() {
    return {
      setTimeout: (fn, ms) => this.#add(fn, ms, null),
      clearTimeout: (id) => this.timers.delete(id),
      setInterval: (fn, ms) => this.#add(fn, ms, ms),
      clearInterval: (id) => this.timers.delete(id),
    };
  }

  #add(fn, ms, every) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn, every });
    if (every === null) this.log.push(ms);
    return id;
  }

  /** Runs every timer due within `ms`, in time order. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      const [id, t] = next;
      this.now = t.at;
      if (t.every) t.at += t.every;
      else this.timers.delete(id);
      t.fn();
    }
    this.now = end;
  }

  /** Delays of the pending one-shot timers. */
  pending() {
    return [...this.timers.values()].filter((t) => !t.every).map((t) => t.at - this.now);
  }
}

/**
 * Makes a WebSocket class whose instances are handed to `onSocket(ws)` when created.
 * The test decides what happens: ws.open(), ws.deliver(bytes), ws.fail().
 */
export function fakeWebSocketClass(onSocket) {
  return class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.peer = null; // who receives what the client sends
      onSocket(this);
    }

    send(bytes) {
      if (this.readyState !== 1) throw new Error(`send in readyState ${this.readyState}`);
      this.sent.push(bytes);
      this.peer?.(bytes);
    }

    close(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedWith = code;
      queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: '' }));
    }

    // Test side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    deliver(bytes) {
      // A WebSocket with binaryType 'arraybuffer' delivers a fresh ArrayBuffer.
      this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    }

    fail() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: '' });
    }
  };
}

/**
 * The server side of one fake connection: answers CONNECT with a real key exchange,
 * SEND with SENDACK (after checking the MsgKey and decrypting), PING with PONG, and
 * can push RECVs sealed with this connection's key.
 */
export class FakeServer {
  constructor(ws, { connackReason = 1, answerPings = true } = {}) {
    this.ws = ws;
    this.connackReason = connackReason;
    this.answerPings = answerPings;
    this.splitter = new PacketSplitter(4);
    this.received = []; // every packet from the client, decoded
    this.sends = []; // { packet, plaintext, msgKeyOk }
    this.recvacks = [];
    this.cipher = null;
    this.nextSeq = 1;
    this.work = Promise.resolve();
    ws.peer = (bytes) => {
      for (const p of this.splitter.push(bytes)) {
        this.received.push(p);
        this.work = this.work.then(() => this.#handle(p));
      }
    };
  }

  /** Resolves when everything received so far has been handled. */
  settle() {
    return this.work;
  }

  async #handle(p) {
    switch (p.type) {
      case 'CONNECT': {
        if (this.connackReason !== 1) {
          this.reply({ type: 'CONNACK', server_key: '', salt: '', time_diff: 0, reason_code: this.connackReason });
          return;
        }
        const pair = await generateKeyPair();
        const secret = await deriveSharedSecret(pair.privateKey, base64Decode(p.client_key));
        const salt = 'a1B2c3D4e5F6g7H8';
        this.cipher = await CipherSession.create(deriveAesKey(secret), salt);
        this.connect = p;
        this.reply({ type: 'CONNACK', server_key: base64Encode(pair.publicKey), salt, time_diff: 42, reason_code: 1 });
        return;
      }
      case 'SEND': {
        const msgKeyOk = (await this.cipher.sendMsgKey(p)) === p.msg_key;
        const plaintext = msgKeyOk ? await this.cipher.decryptPayload(p.payload) : null;
        this.sends.push({ packet: p, plaintext, msgKeyOk });
        if (this.holdSendacks) return;
        const seq = msgKeyOk ? this.nextSeq++ : 0;
        this.reply({ type: 'SENDACK', client_seq: p.client_seq, message_id: 1000n + BigInt(seq), message_seq: seq, reason_code: msgKeyOk ? 1 : 8 });
        return;
      }
      case 'PING':
        if (this.answerPings) this.reply({ type: 'PONG' });
        return;
      case 'RECVACK':
        this.recvacks.push(p);
        return;
      default:
    }
  }

  reply(packet) {
    this.ws.deliver(encodePacket(packet, 4));
  }

  /** A RECV sealed for this connection; `tamper` changes a field after signing. */
  async pushRecv({ from_uid = 'bob', channel_id = 'bob', text = 'hi', message_seq = 1, flags, tamper } = {}) {
    const p = {
      type: 'RECV',
      flags: flags ?? { dup: false, sync_once: false, red_dot: true, no_persist: false },
      setting: 0,
      message_id: 1724551110972149765n + BigInt(message_seq),
      message_seq,
      client_msg_no: 'd00dfeedd00dfeedd00dfeedd00dfeed',
      timestamp: 1700000000,
      channel_id,
      channel_type: 1,
      from_uid,
      payload: await this.cipher.encryptPayload(text),
    };
    p.msg_key = await this.cipher.recvMsgKey(p);
    Object.assign(p, tamper ?? {});
    this.reply(p);
    return p;
  }
}

/** Waits for `event` on an emitter (real time), failing the test after `ms`. */
export function waitFor(emitter, event, ms = 2000, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for '${event}'`));
    }, ms);
    const off = emitter.on(event, (value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Lets pending promise chains (including WebCrypto jobs) run. */
export function tick(ms = 20) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
