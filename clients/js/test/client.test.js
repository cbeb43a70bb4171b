// LimaoClient's state machine against a fake WebSocket and a fake v4 server
// (real X25519/AES/MsgKeys, fake clock): handshake, send/SENDACK, RECV/RECVACK,
// MsgKey rejection, heartbeat, kick, and the reconnect backoff schedule.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { LimaoClient, backoffDelay, DEFAULT_OPTIONS } from '../src/client.js';
import { encodePacket } from '../src/codec.js';
import { base64Decode, base64Encode } from '../src/crypto.js';
import { FakeClock, FakeServer, fakeWebSocketClass, waitFor, tick } from './helpers/fakes.js';

const text = (b) => new TextDecoder().decode(b);

/**
 * A client wired to fakes. `fail: true` makes every socket fail at once (no server);
 * otherwise each socket opens and gets a FakeServer with `server` options.
 */
function setup({ fail = false, server = {}, client = {} } = {}) {
  const clock = new FakeClock();
  const sockets = [];
  const servers = [];
  const WebSocket = fakeWebSocketClass((ws) => {
    sockets.push(ws);
    if (fail) {
      queueMicrotask(() => ws.fail());
    } else {
      servers.push(new FakeServer(ws, server));
      queueMicrotask(() => ws.open());
    }
  });
  const c = new LimaoClient({ WebSocket, timers: clock.api, random: () => 0.5, deviceId: 'test-dev', ...client });
  const errors = [];
  c.on('error', (e) => errors.push(e));
  return { clock, sockets, servers, client: c, errors, server: () => servers.at(-1) };
}

async function connected(opts) {
  const env = setup(opts);
  await env.client.connect('ws://fake', 'alice', 'tok', 1);
  return env;
}

describe('handshake', () => {
  test('CONNECT carries v4, the login and a 32-byte public key; CONNACK gives a session', async () => {
    const env = setup();
    const events = [];
    env.client.on('connected', (e) => events.push(e));
    const before = Date.now();
    const info = await env.client.connect('ws://fake', 'alice', 'tok', 1);
    const c = env.server().connect;
    assert.equal(c.version, 4);
    assert.equal(c.uid, 'alice');
    assert.equal(c.token, 'tok');
    assert.equal(c.device_flag, 1);
    assert.equal(c.device_id, 'test-dev');
    assert.equal(base64Decode(c.client_key).length, 32);
    assert.ok(c.client_timestamp >= BigInt(before) && c.client_timestamp <= BigInt(Date.now()), 'client_timestamp in ms');
    assert.deepEqual(info, { uid: 'alice', version: 4, time_diff: 42n });
    assert.deepEqual(events, [info]);
    assert.equal(env.client.state, 'connected');
    assert.equal(env.sockets[0].url, 'ws://fake');
  });

  test('a refused login rejects connect() and is not retried', async () => {
    const env = setup({ server: { connackReason: 2 } });
    await assert.rejects(env.client.connect('ws://fake', 'alice', 'bad', 1), { code: 'AUTH_FAILED', reason_code: 2 });
    assert.equal(env.client.state, 'closed');
    env.clock.advance(120_000);
    assert.equal(env.sockets.length, 1);
  });

  test('with reconnect off, a network failure rejects connect()', async () => {
    const env = setup({ fail: true, client: { reconnect: false } });
    await assert.rejects(env.client.connect('ws://fake', 'a', 't', 1), { code: 'CONNECT_FAILED' });
    assert.equal(env.sockets.length, 1);
  });

  test('no CONNACK within connectTimeoutMs: the attempt is dropped and retried', async () => {
    const env = setup();
    env.client.connect('ws://fake', 'a', 't', 1).catch(() => {});
    // Stop the fake server from answering before it sees the CONNECT.
    await tick(0);
    env.sockets[0].peer = () => {};
    const dropped = waitFor(env.client, 'disconnected');
    env.clock.advance(DEFAULT_OPTIONS.connectTimeoutMs);
    assert.equal((await dropped).reason, 'connect timeout');
    env.client.close();
  });
});

describe('send', () => {
  test('resolves with the SENDACK; the server sees a valid MsgKey and the plaintext', async () => {
    const env = await connected();
    const ack = await env.client.send('bob', 1, '{"type":1,"content":"hello 狸猫"}');
    assert.equal(ack.reason_code, 1);
    assert.equal(ack.message_seq, 1);
    assert.equal(ack.message_id, 1001n);
    assert.equal(ack.client_seq, 1);
    assert.match(ack.client_msg_no, /^[0-9a-f]{32}$/);

    const { packet, plaintext, msgKeyOk } = env.server().sends[0];
    assert.equal(msgKeyOk, true);
    assert.equal(text(plaintext), '{"type":1,"content":"hello 狸猫"}');
    assert.equal(packet.channel_id, 'bob');
    assert.equal(packet.channel_type, 1);
    assert.equal(packet.client_msg_no, ack.client_msg_no);
    assert.deepEqual(packet.flags, { dup: false, sync_once: false, red_dot: true, no_persist: false });
    assert.equal(packet.setting, 0);
  });

  test('client_seq counts up, client_msg_no is fresh, options reach the packet', async () => {
    const env = await connected();
    const a = await env.client.send('g1', 2, new Uint8Array([1, 2, 3]));
    const b = await env.client.send('g1', 2, 'x', { clientMsgNo: 'my-id', receipt: true, noPersist: true, redDot: false, dup: true });
    assert.equal(b.client_seq, a.client_seq + 1);
    assert.equal(b.client_msg_no, 'my-id');
    const p = env.server().sends[1].packet;
    assert.equal(p.setting, 0x80);
    assert.deepEqual(p.flags, { dup: true, sync_once: false, red_dot: false, no_persist: true });
    assert.deepEqual([...env.server().sends[0].plaintext], [1, 2, 3]);
  });

  test('concurrent sends go out in call order', async () => {
    const env = await connected();
    const acks = await Promise.all(['1', '2', '3', '4', '5'].map((t) => env.client.send('bob', 1, t)));
    assert.deepEqual(env.server().sends.map((s) => text(s.plaintext)), ['1', '2', '3', '4', '5']);
    assert.deepEqual(acks.map((a) => a.message_seq), [1, 2, 3, 4, 5]);
  });

  test('a non-success SENDACK still resolves, with its reason code', async () => {
    const env = await connected();
    // Corrupt the session key on the server side: it now computes other MsgKeys.
    const { CipherSession } = await import('../src/crypto.js');
    env.server().cipher = await CipherSession.create(new TextEncoder().encode('ffffffffffffffff'), 'a1B2c3D4e5F6g7H8');
    const ack = await env.client.send('bob', 1, 'x');
    assert.equal(ack.reason_code, 8);
    assert.equal(ack.message_seq, 0);
  });

  test('rejects when not connected', async () => {
    const env = setup();
    await assert.rejects(env.client.send('bob', 1, 'x'), { code: 'NOT_CONNECTED' });
  });

  test('rejects after sendTimeoutMs without a SENDACK', async () => {
    const env = await connected({ server: { } });
    env.server().holdSendacks = true;
    const p = env.client.send('bob', 1, 'x');
    await env.server().settle();
    await tick();
    env.clock.advance(DEFAULT_OPTIONS.sendTimeoutMs);
    await assert.rejects(p, { code: 'SEND_TIMEOUT' });
  });

  test('rejects when the connection drops before the SENDACK', async () => {
    const env = await connected();
    env.server().holdSendacks = true;
    const p = env.client.send('bob', 1, 'x');
    await tick();
    env.sockets[0].fail();
    await assert.rejects(p, { code: 'DISCONNECTED' });
    env.client.close();
  });
});

describe('receive', () => {
  test('a RECV is decrypted, emitted and acknowledged with its header flags', async () => {
    const env = await connected();
    const got = waitFor(env.client, 'message');
    const flags = { dup: false, sync_once: true, red_dot: true, no_persist: false };
    const sent = await env.server().pushRecv({ text: 'hello alice', message_seq: 7, flags });
    const m = await got;
    assert.equal(text(m.payload), 'hello alice');
    assert.equal(m.from_uid, 'bob');
    assert.equal(m.channel_id, 'bob');
    assert.equal(m.message_seq, 7);
    assert.equal(m.message_id, sent.message_id);
    assert.deepEqual(m.flags, flags);
    await tick();
    await env.server().settle();
    assert.equal(env.server().recvacks.length, 1);
    const ack = env.server().recvacks[0];
    assert.equal(ack.message_id, sent.message_id);
    assert.equal(ack.message_seq, 7);
    assert.deepEqual(ack.flags, flags);
  });

  test('a bad MsgKey is rejected: error event, no message, no RECVACK', async () => {
    const env = await connected();
    const messages = [];
    env.client.on('message', (m) => messages.push(m));
    const err = waitFor(env.client, 'error');
    await env.server().pushRecv({ text: 'forged', tamper: { channel_id: 'mallory' } });
    assert.equal((await err).code, 'MSGKEY_MISMATCH');
    // The connection stays up and the next good message goes through.
    const next = waitFor(env.client, 'message');
    await env.server().pushRecv({ text: 'genuine', message_seq: 2 });
    assert.equal(text((await next).payload), 'genuine');
    await tick();
    await env.server().settle();
    assert.deepEqual(messages.map((m) => text(m.payload)), ['genuine']);
    assert.deepEqual(env.server().recvacks.map((a) => a.message_seq), [2]);
    assert.equal(env.client.state, 'connected');
  });

  test('a payload that does not decrypt is rejected and not acknowledged', async () => {
    const env = await connected();
    const err = waitFor(env.client, 'error');
    const srv = env.server();
    // Valid MsgKey over a payload that is not a whole AES block.
    const p = { type: 'RECV', flags: {}, setting: 0, message_id: 5n, message_seq: 1, client_msg_no: 'n', timestamp: 1, channel_id: 'bob', channel_type: 1, from_uid: 'bob', payload: new TextEncoder().encode(base64Encode(new Uint8Array(15))) };
    p.msg_key = await srv.cipher.recvMsgKey(p);
    srv.reply(p);
    assert.equal((await err).code, 'PAYLOAD_DECODE');
    await tick();
    assert.equal(srv.recvacks.length, 0);
  });

  test('a text frame is reported and ignored', async () => {
    const env = await connected();
    const err = waitFor(env.client, 'error');
    env.sockets[0].onmessage({ data: 'hello' });
    assert.equal((await err).code, 'TEXT_FRAME');
    assert.equal((await env.client.send('bob', 1, 'still up')).reason_code, 1);
  });

  test('a CONNACK split over three WebSocket messages still logs in', async () => {
    const env = setup();
    // Re-chunk what the fake server sends into three messages.
    const WebSocketProto = env.client.WebSocket.prototype;
    const deliver = WebSocketProto.deliver;
    WebSocketProto.deliver = function (bytes) {
      const a = Math.floor(bytes.length / 3);
      deliver.call(this, bytes.subarray(0, 1));
      deliver.call(this, bytes.subarray(1, a));
      deliver.call(this, bytes.subarray(a));
    };
    await env.client.connect('ws://fake', 'a', 't', 1);
    assert.equal((await env.client.send('bob', 1, 'x')).reason_code, 1);
  });
});

describe('heartbeat and kick', () => {
  test('PING every pingIntervalMs; a PONG keeps the connection', async () => {
    const env = await connected();
    env.clock.advance(DEFAULT_OPTIONS.pingIntervalMs);
    await env.server().settle();
    assert.equal(env.server().received.filter((p) => p.type === 'PING').length, 1);
    await tick();
    env.clock.advance(DEFAULT_OPTIONS.pongTimeoutMs);
    assert.equal(env.client.state, 'connected');
    env.clock.advance(DEFAULT_OPTIONS.pingIntervalMs);
    await env.server().settle();
    assert.equal(env.server().received.filter((p) => p.type === 'PING').length, 2);
  });

  test('no answer within pongTimeoutMs: dropped and reconnected', async () => {
    const env = await connected({ server: { answerPings: false }, client: { pingIntervalMs: 5000, pongTimeoutMs: 2000 } });
    const dropped = waitFor(env.client, 'disconnected');
    env.clock.advance(5000);
    env.clock.advance(2000);
    const d = await dropped;
    assert.equal(d.reason, 'pong timeout');
    assert.equal(d.wasConnected, true);
    assert.equal(d.willReconnect, true);
    assert.equal(env.sockets[0].closedWith, 1000);
    const again = waitFor(env.client, 'connected');
    env.clock.advance(d.delayMs);
    await again;
    assert.equal(env.sockets.length, 2);
  });

  test('DISCONNECT from the server: kicked, closed, no reconnect', async () => {
    const env = await connected();
    const kicked = waitFor(env.client, 'kicked');
    const dropped = waitFor(env.client, 'disconnected');
    env.server().reply({ type: 'DISCONNECT', reason_code: 0, reason: 'Account login on other devices' });
    assert.deepEqual(await kicked, { reason_code: 0, reason: 'Account login on other devices' });
    const d = await dropped;
    assert.equal(d.willReconnect, false);
    assert.equal(env.client.state, 'closed');
    env.clock.advance(600_000);
    assert.equal(env.sockets.length, 1);
  });
});

describe('reconnect backoff', () => {
  test('backoffDelay: exponential, capped, jitter takes off up to `jitter` of it', () => {
    const o = DEFAULT_OPTIONS;
    assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, o, () => 0)), [500, 1000, 2000, 4000]);
    assert.equal(backoffDelay(20, o, () => 0), 30_000);
    assert.equal(backoffDelay(0, o, () => 0.999999), 250);
    assert.equal(backoffDelay(3, { ...o, jitter: 0 }, () => 0.7), 4000);
  });

  test('the schedule of retries while the server is unreachable, and close() stops it', async () => {
    const env = setup({ fail: true });
    const delays = [];
    env.client.on('reconnecting', (r) => delays.push(r.delayMs));
    const connecting = env.client.connect('ws://fake', 'a', 't', 1);
    for (let i = 0; i < 8; i++) {
      await waitFor(env.client, 'reconnecting');
      env.clock.advance(delays.at(-1));
    }
    // base 500·2^n capped at 30000, times (1 − 0.5·0.5) with random() = 0.5
    assert.deepEqual(delays, [375, 750, 1500, 3000, 6000, 12000, 22500, 22500]);
    await tick();
    const socketsBefore = env.sockets.length;
    env.client.close();
    await assert.rejects(connecting, { code: 'CLOSED' });
    env.clock.advance(600_000);
    await tick();
    assert.equal(env.sockets.length, socketsBefore);
    assert.equal(env.client.state, 'closed');
  });

  test('a successful login resets the backoff', async () => {
    const env = await connected();
    const delays = [];
    env.client.on('reconnecting', (r) => delays.push(r.delayMs));
    for (let round = 0; round < 3; round++) {
      const back = waitFor(env.client, 'connected');
      env.sockets.at(-1).fail();
      env.clock.advance(delays.at(-1));
      await back;
    }
    assert.deepEqual(delays, [375, 375, 375]);
    env.client.close();
  });

  test('close() while connected: disconnected event without reconnect', async () => {
    const env = await connected();
    const dropped = waitFor(env.client, 'disconnected');
    env.client.close();
    assert.deepEqual(await dropped, { reason: 'closed by client', wasConnected: true, willReconnect: false, delayMs: null });
    env.clock.advance(600_000);
    assert.equal(env.sockets.length, 1);
    // and the client can log in again afterwards
    await env.client.connect('ws://fake', 'alice', 'tok', 1);
    assert.equal(env.sockets.length, 2);
  });
});

test('encodePacket of the client matches what a server decodes (sanity)', () => {
  assert.equal(encodePacket({ type: 'PING' })[0], 0x70);
});
