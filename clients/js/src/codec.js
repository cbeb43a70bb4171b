// LiMaoIM packet codec, protocol versions 1–4 (PROTOCOL.md §2–§4).
//
// A packet is a plain object `{ type, flags, ...fields }` whose field names are
// exactly the names used in PROTOCOL.md (snake_case), so the spec tables, the test
// vectors and this code can be read side by side:
//
//   { type: 'SEND', flags: { dup, sync_once, red_dot, no_persist },
//     setting, msg_key, client_seq, client_msg_no, channel_id, channel_type, payload }
//
// Value types: u8/u16/u32 fields are Numbers, i64 fields (message_id,
// client_timestamp, time_diff) are BigInts on decode (message ids exceed 2^53) and
// may be Number or BigInt on encode, strings are JS strings (UTF-8 on the wire),
// `payload` is a Uint8Array.
//
// This module is pure: no I/O, no crypto. Encryption of payloads and MsgKeys lives
// in crypto.js; the client fills in `msg_key` and the encrypted payload before it
// calls encodePacket().

/** Packet type numbers (PROTOCOL.md §3.1). */
export const PacketType = Object.freeze({
  CONNECT: 1,
  CONNACK: 2,
  SEND: 3,
  SENDACK: 4,
  RECV: 5,
  RECVACK: 6,
  PING: 7,
  PONG: 8,
  DISCONNECT: 9,
});

const TYPE_NAMES = Object.fromEntries(Object.entries(PacketType).map(([name, n]) => [n, name]));

/** Reason codes (PROTOCOL.md §6). */
export const ReasonCode = Object.freeze({
  Error: 0,
  Success: 1,
  AuthFail: 2,
  SubscriberNotExist: 3,
  InBlacklist: 4,
  ChannelNotExist: 5,
  UserNotOnNode: 6,
  SenderOffline: 7,
  MsgKeyError: 8,
  PayloadDecodeError: 9,
  ForwardSendPacketError: 10,
  NotAllowSend: 11,
});

/** Newest protocol version; the one this client speaks. */
export const LATEST_VERSION = 4;

/** The original server's limit on the remaining length (1 MiB, inclusive; §3.2). */
export const DEFAULT_MAX_REMAINING_LENGTH = 1024 * 1024;

/** Setting byte bit 7 (§4.8): the sender wants read receipts. */
export const SETTING_RECEIPT = 0x80;

/** Thrown for input that can never become a valid packet (§3.3). */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder(); // lenient: strings are UTF-8 "by convention" only

/** Flags with every bit clear; used when a packet object has no `flags`. */
export function noFlags() {
  return { dup: false, sync_once: false, red_dot: false, no_persist: false };
}

// ---------------------------------------------------------------------------
// Writing

/** A growable big-endian byte buffer. */
class Writer {
  constructor(initial = 64) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }

  u8(v) {
    this.reserve(1);
    this.view.setUint8(this.len, checkInt(v, 0, 0xff, 'u8'));
    this.len += 1;
  }

  u16(v) {
    this.reserve(2);
    this.view.setUint16(this.len, checkInt(v, 0, 0xffff, 'u16'));
    this.len += 2;
  }

  u32(v) {
    this.reserve(4);
    this.view.setUint32(this.len, checkInt(v, 0, 0xffffffff, 'u32'));
    this.len += 4;
  }

  i32(v) {
    this.reserve(4);
    this.view.setInt32(this.len, checkInt(v, -0x80000000, 0x7fffffff, 'i32'));
    this.len += 4;
  }

  i64(v) {
    this.reserve(8);
    // BigInt.asIntN wraps; a value outside the i64 range is a caller bug, so refuse it.
    const big = BigInt(v ?? 0);
    if (BigInt.asIntN(64, big) !== big) throw new RangeError(`i64 out of range: ${v}`);
    this.view.setBigInt64(this.len, big);
    this.len += 8;
  }

  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** u16 length + UTF-8 bytes. Longer than 65535 bytes is refused (Q4). */
  string(s) {
    const b = typeof s === 'string' ? textEncoder.encode(s) : (s ?? new Uint8Array(0));
    if (b.length > 0xffff) throw new RangeError(`string of ${b.length} bytes exceeds 65535`);
    this.u16(b.length);
    this.bytes(b);
  }

  result() {
    return this.buf.slice(0, this.len);
  }
}

function checkInt(v, min, max, what) {
  const n = v ?? 0;
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`${what} out of range: ${v}`);
  return n;
}

/** Remaining length as a varint, least significant 7 bits first (§3.2). */
export function encodeVarint(value) {
  if (!Number.isInteger(value) || value < 0 || value > 268435455) {
    throw new RangeError(`remaining length out of range: ${value}`);
  }
  const out = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return Uint8Array.from(out);
}

function flagBits(flags = {}) {
  return (flags.dup ? 8 : 0) | (flags.sync_once ? 4 : 0) | (flags.red_dot ? 2 : 0) | (flags.no_persist ? 1 : 0);
}

function payloadBytes(p) {
  if (p == null) return new Uint8Array(0);
  return typeof p === 'string' ? textEncoder.encode(p) : p;
}

// One body writer per packet type. `v` is the connection's protocol version,
// except for CONNECT whose own version byte decides (§4.1).
const BODY_WRITERS = {
  CONNECT(w, p) {
    const v = p.version;
    w.u8(v);
    if (v > 2) w.string(p.client_key);
    w.u8(p.device_flag);
    w.string(p.device_id);
    w.i64(p.client_timestamp);
    w.string(p.uid);
    w.string(p.token);
  },
  CONNACK(w, p, v) {
    if (v > 2) {
      w.string(p.server_key);
      w.string(p.salt);
    }
    w.i64(p.time_diff);
    w.u8(p.reason_code);
  },
  SEND(w, p, v) {
    if (v > 3) w.u8(p.setting);
    if (v > 2) w.string(p.msg_key);
    w.u32(p.client_seq);
    if (v > 1) w.string(p.client_msg_no);
    w.string(p.channel_id);
    w.u8(p.channel_type);
    w.bytes(payloadBytes(p.payload));
  },
  SENDACK(w, p) {
    w.u32(p.client_seq);
    w.i64(p.message_id);
    w.u32(p.message_seq);
    w.u8(p.reason_code);
  },
  RECV(w, p, v) {
    if (v > 3) w.u8(p.setting);
    if (v > 2) w.string(p.msg_key);
    w.i64(p.message_id);
    w.u32(p.message_seq);
    if (v > 1) w.string(p.client_msg_no);
    w.i32(p.timestamp);
    w.string(p.channel_id);
    w.u8(p.channel_type);
    w.string(p.from_uid);
    w.bytes(payloadBytes(p.payload));
  },
  RECVACK(w, p) {
    w.i64(p.message_id);
    w.u32(p.message_seq);
  },
  DISCONNECT(w, p) {
    w.u8(p.reason_code);
    w.string(p.reason);
  },
};

/**
 * Encodes one packet. `version` is the connection's protocol version (ignored for
 * CONNECT, which carries its own).
 * @returns {Uint8Array} the complete packet: byte 0, remaining length, body.
 */
export function encodePacket(packet, version = LATEST_VERSION) {
  const typeNum = PacketType[packet.type];
  if (!typeNum) throw new TypeError(`unknown packet type: ${packet.type}`);

  // PING and PONG are one byte with no length (Q1).
  if (packet.type === 'PING') return Uint8Array.of(0x70);
  if (packet.type === 'PONG') return Uint8Array.of(0x80);

  const body = new Writer();
  BODY_WRITERS[packet.type](body, packet, version);
  const bodyBytes = body.result();

  // A zero-length body is written as one 00 byte (Q2), which encodeVarint does.
  const out = new Writer(bodyBytes.length + 5);
  out.u8((typeNum << 4) | flagBits(packet.flags));
  out.bytes(encodeVarint(bodyBytes.length));
  out.bytes(bodyBytes);
  return out.result();
}

// ---------------------------------------------------------------------------
// Reading

/** Reads fields from one packet body; running past its end is a ProtocolError. */
class Reader {
  constructor(body) {
    this.body = body;
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    this.pos = 0;
  }

  need(n, what) {
    if (this.pos + n > this.body.length) throw new ProtocolError(`truncated packet: ${what} runs past the body`);
  }

  u8(what) {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }

  u16(what) {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what) {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  i32(what) {
    this.need(4, what);
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  i64(what) {
    this.need(8, what);
    const v = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return v;
  }

  /** u16 length (unsigned, Q4) then that many bytes, decoded as UTF-8. */
  string(what) {
    const n = this.u16(what);
    this.need(n, what);
    const s = textDecoder.decode(this.body.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }

  /** The rest of the body (the payload), copied so it outlives the input buffer. */
  rest() {
    const b = this.body.slice(this.pos);
    this.pos = this.body.length;
    return b;
  }
}

// One body reader per type; extra bytes after the last field of the fixed-layout
// packets are ignored, as the original does (Q8).
const BODY_READERS = {
  CONNECT(r) {
    const p = { version: r.u8('version') };
    if (p.version > 2) p.client_key = r.string('client_key');
    p.device_flag = r.u8('device_flag');
    p.device_id = r.string('device_id');
    p.client_timestamp = r.i64('client_timestamp');
    p.uid = r.string('uid');
    p.token = r.string('token');
    return p;
  },
  CONNACK(r, v) {
    const p = {};
    if (v > 2) {
      p.server_key = r.string('server_key');
      p.salt = r.string('salt');
    }
    p.time_diff = r.i64('time_diff');
    p.reason_code = r.u8('reason_code');
    return p;
  },
  SEND(r, v) {
    const p = {};
    if (v > 3) p.setting = r.u8('setting');
    if (v > 2) p.msg_key = r.string('msg_key');
    p.client_seq = r.u32('client_seq');
    if (v > 1) p.client_msg_no = r.string('client_msg_no');
    p.channel_id = r.string('channel_id');
    p.channel_type = r.u8('channel_type');
    p.payload = r.rest();
    return p;
  },
  SENDACK(r) {
    return {
      client_seq: r.u32('client_seq'),
      message_id: r.i64('message_id'),
      message_seq: r.u32('message_seq'),
      reason_code: r.u8('reason_code'),
    };
  },
  RECV(r, v) {
    const p = {};
    if (v > 3) p.setting = r.u8('setting');
    if (v > 2) p.msg_key = r.string('msg_key');
    p.message_id = r.i64('message_id');
    p.message_seq = r.u32('message_seq');
    if (v > 1) p.client_msg_no = r.string('client_msg_no');
    p.timestamp = r.i32('timestamp');
    p.channel_id = r.string('channel_id');
    p.channel_type = r.u8('channel_type');
    p.from_uid = r.string('from_uid');
    p.payload = r.rest();
    return p;
  },
  RECVACK(r) {
    return { message_id: r.i64('message_id'), message_seq: r.u32('message_seq') };
  },
  DISCONNECT(r) {
    return { reason_code: r.u8('reason_code'), reason: r.string('reason') };
  },
};

function decodeFlags(byte0) {
  return {
    dup: (byte0 & 8) !== 0,
    sync_once: (byte0 & 4) !== 0,
    red_dot: (byte0 & 2) !== 0,
    no_persist: (byte0 & 1) !== 0,
  };
}

/**
 * Reads the remaining-length varint that starts at `buf[start]`.
 * @returns {{value:number, size:number}|null} null when the buffer ends inside it.
 * @throws {ProtocolError} a 4th byte with its continuation bit set, or a value over `max`.
 */
export function decodeVarint(buf, start, max = DEFAULT_MAX_REMAINING_LENGTH) {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    if (start + i >= buf.length) return null;
    const byte = buf[start + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      // Check the limit as soon as the varint is complete, before any body arrives.
      if (value > max) throw new ProtocolError(`remaining length ${value} exceeds the limit ${max}`);
      return { value, size: i + 1 };
    }
  }
  throw new ProtocolError('remaining length longer than 4 bytes');
}

/**
 * Decodes the first packet in `buf`.
 * @param {Uint8Array} buf bytes received so far
 * @param {number} version the connection's protocol version (CONNECT uses its own)
 * @returns {{packet:object, consumed:number}|null} null when more bytes are needed
 * @throws {ProtocolError} when the bytes can never form a valid packet
 */
export function decodePacket(buf, version = LATEST_VERSION, { maxRemainingLength = DEFAULT_MAX_REMAINING_LENGTH } = {}) {
  if (buf.length === 0) return null;
  const byte0 = buf[0];
  const name = TYPE_NAMES[byte0 >> 4];
  // Fail on the first byte: waiting for a body of an unknown type would be pointless.
  if (!name) throw new ProtocolError(`invalid packet type ${byte0 >> 4}`);

  // PING and PONG: one byte, the flag nibble ignored (Q1).
  if (name === 'PING' || name === 'PONG') return { packet: { type: name }, consumed: 1 };

  const len = decodeVarint(buf, 1, maxRemainingLength);
  if (!len) return null;
  const bodyStart = 1 + len.size;
  const end = bodyStart + len.value;
  if (buf.length < end) return null;

  const reader = new Reader(buf.subarray(bodyStart, end));
  const fields = BODY_READERS[name](reader, version);
  return { packet: { type: name, flags: decodeFlags(byte0), ...fields }, consumed: end };
}

// ---------------------------------------------------------------------------
// Stream splitting

/**
 * Turns a byte stream into packets. WebSocket messages (or TCP reads) are pushed in
 * as they come; whole packets come out. A packet may be split over several pushes,
 * and one push may hold several packets (§1) — the server sends one packet per
 * WebSocket message today, but nothing in the protocol promises it.
 *
 * After a ProtocolError the stream is unusable (the connection must be closed): the
 * bytes that follow the bad packet cannot be framed.
 */
export class PacketSplitter {
  constructor(version = LATEST_VERSION, { maxRemainingLength = DEFAULT_MAX_REMAINING_LENGTH } = {}) {
    this.version = version;
    this.maxRemainingLength = maxRemainingLength;
    this.pending = new Uint8Array(0); // bytes of an incomplete packet
    this.failed = null;
  }

  /**
   * @param {Uint8Array|ArrayBuffer} chunk newly received bytes
   * @returns {object[]} the packets completed by this chunk, in order
   */
  push(chunk) {
    if (this.failed) throw this.failed;
    const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
    let buf = this.pending.length === 0 ? bytes : concat(this.pending, bytes);
    const packets = [];
    try {
      for (;;) {
        const got = decodePacket(buf, this.version, { maxRemainingLength: this.maxRemainingLength });
        if (!got) break;
        packets.push(got.packet);
        buf = buf.subarray(got.consumed);
      }
    } catch (err) {
      this.failed = err;
      throw err;
    }
    // Copy the leftover so we do not keep the caller's (possibly large) buffer alive.
    this.pending = buf.slice();
    return packets;
  }

  /** Bytes received that do not form a whole packet yet. */
  get bufferedBytes() {
    return this.pending.length;
  }
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
