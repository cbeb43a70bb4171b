// The tests both hosts run (node.test.js, browser.test.js): WuKongIM's SDK against
// the real server's WKProto WebSocket listener (--wk-ws-addr), with a LiMaoIM v4
// client (clients/js) on the other side, the server in release mode (tokens checked).
//
// A host gives `openSdk(api)`: a fresh SDK instance (the SDK is a singleton: one per
// module instance or page) running helpers/app.js, as { call(fn, ...args), close() }.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LimaoClient } from '../../../js/src/client.js';
import { startServer, serverSkipReason, freePort, postJson } from '../../../js/test/helpers/server.js';

const textPayload = (content) => JSON.stringify({ type: 1, content }); // the SDK's MessageText
const utf8 = (bytes) => new TextDecoder().decode(bytes);
const textOf = (bytes) => JSON.parse(utf8(bytes)); // the SDK writes "content" before "type"
const DEVICE_WEB = 1; // the SDK's default device flag

/**
 * @param {object} host
 * @param {() => Promise<string>} [host.diagnostics] what the SDK logged, appended to
 *   a failing test's error
 * @param {() => string|null} [host.unavailable] why the host cannot run an SDK (the
 *   tests are skipped then), or null
 */
export function sdkSuite({ label, openSdk, setup = async () => {}, teardown = async () => {},
  diagnostics = async () => '', unavailable = () => null }) {
  const skip = serverSkipReason();
  const withDiagnostics = (body) => async (t) => {
    const why = unavailable();
    if (why) {
      t.skip(why);
      return;
    }
    try {
      await body(t);
    } catch (err) {
      err.message += `\n--- ${label} SDK log ---\n${await diagnostics()}`;
      throw err;
    }
  };
  if (skip) {
    test(`${label}: WuKongIM SDK against limaoim`, (t) => t.skip(skip));
    return;
  }

  let server;
  let wkAddr;
  let cat; // the SDK of the chat test, kicked in the next one
  const opened = [];
  const peers = [];

  /** limaoim's HTTP API, as the app's backend calls it. */
  async function api(method, path, body) {
    if (method === 'POST') return postJson(`${server.httpUrl}${path}`, body);
    const res = await fetch(`${server.httpUrl}${path}`);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${method} ${path} → HTTP ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  async function sdk() {
    const s = await openSdk(api);
    opened.push(s);
    return s;
  }

  /** A LiMaoIM v4 client, logged in over the server's LiMaoIM WebSocket listener. */
  async function v4Peer(uid, token) {
    const client = new LimaoClient({ reconnect: false });
    client.inbox = [];
    client.on('message', (m) => client.inbox.push(m));
    peers.push(client);
    const connack = await client.connect(server.wsUrl, uid, token, DEVICE_WEB);
    assert.equal(connack.version, 4);
    return client;
  }

  async function nextAt(client, n, ms = 5000) {
    const deadline = Date.now() + ms;
    while (client.inbox.length < n) {
      if (Date.now() > deadline) throw new Error(`${client.login.uid} got ${client.inbox.length} of ${n} messages`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return client.inbox[n - 1];
  }

  before(async () => {
    const wkPort = await freePort();
    server = await startServer({
      extraArgs: ['--mode', 'release', '--wk-ws-addr', `127.0.0.1:${wkPort}`],
      waitPorts: [wkPort],
    });
    wkAddr = `ws://127.0.0.1:${wkPort}`;
    for (const uid of ['wk-ann', 'lm-bob', 'wk-cat', 'lm-dan']) {
      await api('POST', '/user/token', { uid, token: `${uid}-secret`, device_flag: DEVICE_WEB });
    }
    await setup();
  });

  after(async () => {
    for (const s of opened) await s.close();
    for (const p of peers) p.close();
    await teardown();
    const exit = await server?.stop();
    if (exit && exit.code !== 0) console.error(`limaoim exited with ${JSON.stringify(exit)}\n${server.output()}`);
  });

  test(`${label}: refuses a wrong token, logs in with its own, syncs what came while offline`, { timeout: 20_000 }, withDiagnostics(async () => {
    const bob = await v4Peer('lm-bob', 'lm-bob-secret');
    const sent = [];
    for (const text of ['while you were out', '狸猫 second']) sent.push(await bob.send('wk-ann', 1, textPayload(text)));
    assert.deepEqual(sent.map((a) => a.reason_code), [1, 1]);

    const ann = await sdk();
    const refused = await ann.call('login', { addr: wkAddr, uid: 'wk-ann', token: 'not-the-secret' });
    assert.equal(refused.status, 'ConnectFail');
    assert.notEqual(refused.reasonCode, 1);
    const ok = await ann.call('login', { addr: wkAddr, uid: 'wk-ann', token: 'wk-ann-secret' });
    assert.deepEqual(ok, { status: 'Connected', reasonCode: 1 });

    const conversations = await ann.call('syncConversations');
    const withBob = conversations.find((c) => c.channelID === 'lm-bob');
    assert.ok(withBob, `a conversation with lm-bob in ${JSON.stringify(conversations)}`);
    assert.equal(withBob.channelType, 1);
    assert.equal(withBob.unread, 2);
    assert.equal(withBob.lastMessage.text, '狸猫 second');
    assert.equal(withBob.lastMessage.messageSeq, sent[1].message_seq);

    const history = await ann.call('syncMessages', 'lm-bob');
    assert.deepEqual(history.map((m) => [m.text, m.fromUID, m.channelID, m.messageSeq, m.messageID, m.clientMsgNo]),
      sent.map((a, i) => [['while you were out', '狸猫 second'][i], 'lm-bob', 'lm-bob', a.message_seq, String(a.message_id), a.client_msg_no]));
    // Paging down from the newest seq: the older one alone.
    const older = await ann.call('syncMessages', 'lm-bob', { startMessageSeq: sent[0].message_seq, limit: 10 });
    assert.deepEqual(older.map((m) => m.text), ['while you were out']);
  }));

  test(`${label}: chats with a LiMaoIM v4 client both ways, its pings answered`, { timeout: 20_000 }, withDiagnostics(async () => {
    const dan = await v4Peer('lm-dan', 'lm-dan-secret');
    cat = await sdk();
    const ok = await cat.call('login', { addr: wkAddr, uid: 'wk-cat', token: 'wk-cat-secret', heartbeatMs: 250 });
    assert.equal(ok.status, 'Connected');

    const ack = await cat.call('sendText', 'lm-dan', 'hello from the WuKongIM SDK');
    assert.equal(ack.reasonCode, 1, 'SENDACK reason 1 (success)');
    assert.ok(ack.messageSeq > 0);
    const atDan = await nextAt(dan, 1);
    assert.deepEqual(textOf(atDan.payload), { type: 1, content: 'hello from the WuKongIM SDK' });
    assert.equal(atDan.from_uid, 'wk-cat');
    assert.equal(atDan.channel_id, 'wk-cat');
    assert.equal(atDan.channel_type, 1);
    assert.equal(atDan.message_seq, ack.messageSeq);
    assert.equal(String(atDan.message_id), ack.messageID);
    assert.equal(atDan.client_msg_no, ack.clientMsgNo);

    const answer = await dan.send('wk-cat', 1, textPayload('answer 狸猫 🐱'));
    assert.equal(answer.reason_code, 1);
    const atCat = await cat.call('nextMessage');
    assert.deepEqual(atCat, {
      text: 'answer 狸猫 🐱', contentType: 1, fromUID: 'lm-dan', channelID: 'lm-dan', channelType: 1,
      messageID: String(answer.message_id), messageSeq: answer.message_seq, clientMsgNo: answer.client_msg_no,
    });

    // Six PINGs (one per 250 ms): the SDK drops a link after more than three
    // unanswered ones, so it stays connected only if PONGs come back.
    await new Promise((r) => setTimeout(r, 1600));
    const state = await cat.call('state');
    assert.equal(state.status, 'Connected');
    assert.deepEqual(state.statuses, [{ status: 'Connected', reasonCode: 1 }]);
    assert.ok(state.pingRetryCount <= 1, `pings unanswered: ${state.pingRetryCount}`);
  }));

  test(`${label}: a second login kicks it, it reconnects and chats again`, { timeout: 20_000 }, withDiagnostics(async () => {
    const dan = peers.find((p) => p.login.uid === 'lm-dan') ?? (await v4Peer('lm-dan', 'lm-dan-secret'));
    const seenByDan = dan.inbox.length;
    assert.ok(cat, 'the chat test logged wk-cat in');
    const before = (await cat.call('state')).statuses.length;

    const second = await sdk();
    const login = await second.call('login', { addr: wkAddr, uid: 'wk-cat', token: 'wk-cat-secret' });
    assert.equal(login.status, 'Connected');
    const kick = await cat.call('waitStatus', 'ConnectKick', 5000, before);
    assert.equal(kick.reasonCode, 0, 'DISCONNECT reason 0 (SERVER.md §3)');

    // The app reconnects the kicked SDK: that login kicks the second one in turn.
    const since = (await second.call('state')).statuses.length;
    const again = await cat.call('reconnect');
    assert.deepEqual(again, { status: 'Connected', reasonCode: 1 });
    await second.call('waitStatus', 'ConnectKick', 5000, since);

    const ack = await cat.call('sendText', 'lm-dan', 'back again');
    assert.equal(ack.reasonCode, 1);
    const atDan = await nextAt(dan, seenByDan + 1);
    assert.deepEqual(textOf(atDan.payload), { type: 1, content: 'back again' });
    assert.equal(atDan.message_seq, ack.messageSeq);
  }));
}
