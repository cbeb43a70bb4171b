// End to end against the real server: $LIMAOIM_BIN is started here (test mode, free
// ports, a fresh data directory), alice and bob chat over WebSocket both ways, bob
// logs in again and reads the history through POST /channel/messagesync.
//
//   LIMAOIM_BIN=/work/main/build-js/limaoim npm run test:e2e

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LimaoClient } from '../src/client.js';
import { startServer, serverSkipReason, postJson } from './helpers/server.js';
import { waitFor } from './helpers/fakes.js';

const skip = serverSkipReason();
const text = (b) => new TextDecoder().decode(b);
const utf8 = (s) => new TextEncoder().encode(s);
const payloadOf = (content) => JSON.stringify({ type: 1, content });

let server;
const clients = [];

function newClient() {
  const c = new LimaoClient({ pingIntervalMs: 5000 });
  c.errors = [];
  c.on('error', (e) => c.errors.push(e));
  clients.push(c);
  return c;
}

/** Collects 'message' events so a test can wait for the n-th one. */
function inbox(client) {
  const got = [];
  const waiters = [];
  client.on('message', (m) => {
    got.push(m);
    for (const w of [...waiters]) if (got.length >= w.n) w.resolve(got.slice());
  });
  return {
    got,
    until(n, ms = 5000) {
      if (got.length >= n) return Promise.resolve(got.slice());
      return new Promise((resolve, reject) => {
        const w = { n, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages arrived`)), ms);
      });
    },
  };
}

if (skip) {
  test('end to end against limaoim', (t) => t.skip(skip));
} else {
  before(async () => {
    server = await startServer();
  });

  after(async () => {
    for (const c of clients) c.close();
    if (server) {
      const exit = await server.stop();
      // A clean shutdown on SIGTERM; anything else is worth seeing in the test output.
      if (exit && exit.code !== 0) console.error(`limaoim exited with ${JSON.stringify(exit)}\n${server.output()}`);
    }
  });

  test('alice and bob chat both ways, bob logs in again and reads the history', async () => {
    const alice = newClient();
    const bob = newClient();
    const aliceIn = inbox(alice);
    const bobIn = inbox(bob);
    const a = await alice.connect(server.wsUrl, 'alice', 'any-token', 1);
    assert.equal(a.version, 4);
    await bob.connect(server.wsUrl, 'bob', 'any-token', 1);

    // alice → bob, three messages (one with non-ASCII text, one of 20 KB)
    const toBob = [payloadOf('hello bob'), payloadOf('狸猫 🐱 second'), payloadOf('x'.repeat(20_000))];
    const acksToBob = [];
    for (const p of toBob) acksToBob.push(await alice.send('bob', 1, p));
    for (const ack of acksToBob) {
      assert.equal(ack.reason_code, 1, 'SENDACK reason 1 (success)');
      assert.ok(ack.message_seq > 0);
      assert.ok(ack.message_id > 0n);
    }
    assert.deepEqual(acksToBob.map((x) => x.message_seq), [1, 2, 3].map((n) => acksToBob[0].message_seq + n - 1));

    const atBob = await bobIn.until(3);
    assert.deepEqual(atBob.map((m) => text(m.payload)), toBob);
    for (const [i, m] of atBob.entries()) {
      assert.equal(m.from_uid, 'alice');
      assert.equal(m.channel_id, 'alice', 'a person message shows the other party as channel_id');
      assert.equal(m.channel_type, 1);
      assert.equal(m.message_id, acksToBob[i].message_id);
      assert.equal(m.message_seq, acksToBob[i].message_seq);
      assert.equal(m.client_msg_no, acksToBob[i].client_msg_no);
    }

    // bob → alice
    const toAlice = payloadOf('hi alice, bob here');
    const ack = await bob.send('alice', 1, toAlice);
    assert.equal(ack.reason_code, 1);
    const [atAlice] = await aliceIn.until(1);
    assert.equal(text(atAlice.payload), toAlice);
    assert.equal(atAlice.from_uid, 'bob');
    assert.equal(atAlice.channel_id, 'bob');

    // Binary payloads survive too.
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.equal((await alice.send('bob', 1, bytes)).reason_code, 1);
    const fifth = (await bobIn.until(4))[3];
    assert.deepEqual([...fifth.payload], [...bytes]);

    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);

    // bob leaves and comes back on a new connection, then reads the history.
    bob.close();
    const bobAgain = newClient();
    await bobAgain.connect(server.wsUrl, 'bob', 'any-token', 1);
    const history = await postJson(`${server.httpUrl}/channel/messagesync`, {
      login_uid: 'bob', channel_id: 'alice', channel_type: 1, limit: 20,
    });
    assert.ok(Array.isArray(history.messages), `messagesync response: ${JSON.stringify(history).slice(0, 300)}`);
    const expected = [...toBob, toAlice, bytes];
    assert.equal(history.messages.length, expected.length);
    const seqs = history.messages.map((m) => m.message_seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'ascending seq order');
    for (const [i, m] of history.messages.entries()) {
      const want = expected[i];
      const got = Buffer.from(m.payload, 'base64');
      if (typeof want === 'string') assert.equal(got.toString('utf8'), want);
      else assert.deepEqual([...got], [...want]);
      assert.equal(m.from_uid, i === 3 ? 'bob' : 'alice');
      assert.equal(m.channel_type, 1);
    }
    assert.equal(history.messages[0].message_idstr, String(acksToBob[0].message_id));
    assert.equal(history.messages[0].client_msg_no, acksToBob[0].client_msg_no);
    assert.equal(history.messages[3].message_seq, ack.message_seq);

    // And bob's new session still talks.
    const bobAgainIn = inbox(bobAgain);
    assert.equal((await alice.send('bob', 1, utf8(payloadOf('welcome back')))).reason_code, 1);
    assert.equal(text((await bobAgainIn.until(1))[0].payload), payloadOf('welcome back'));
  });

  test('a second login with the same uid and device flag kicks the first', async () => {
    const first = newClient();
    await first.connect(server.wsUrl, 'carol', 't', 0);
    const kicked = waitFor(first, 'kicked', 5000);
    const gone = waitFor(first, 'disconnected', 10_000);
    const second = newClient();
    await second.connect(server.wsUrl, 'carol', 't', 0);
    const k = await kicked;
    assert.equal(k.reason_code, 0);
    assert.ok(k.reason.length > 0);
    assert.equal((await gone).willReconnect, false);
    assert.equal(first.state, 'closed');
    // The new session is the one that works.
    assert.equal((await second.send('alice', 1, payloadOf('carol here'))).reason_code, 1);
  });

  test('heartbeat: PING is answered, the session outlives several intervals', async () => {
    const c = new LimaoClient({ pingIntervalMs: 300, pongTimeoutMs: 1000 });
    clients.push(c);
    let drops = 0;
    c.on('disconnected', () => drops++);
    await c.connect(server.wsUrl, 'dave', 't', 1);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(drops, 0);
    assert.equal(c.state, 'connected');
  });

  test('the server closes a text frame with 1003', async () => {
    const ws = new WebSocket(server.wsUrl);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('WebSocket did not open'));
    });
    const closed = new Promise((resolve) => (ws.onclose = resolve));
    ws.send('this is not a LiMaoIM packet');
    const ev = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
    assert.ok(ev, 'no close within 5 s');
    assert.equal(ev.code, 1003);
  });
}
