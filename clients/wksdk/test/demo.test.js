// The demo's second page (/demo/wk.html: WuKongIM's SDK, bundled by demo/build.js,
// embedded in the server) in headless Chromium against the real server
// ($LIMAOIM_BIN): it logs in over --wk-ws-addr and chats with a LiMaoIM v4 client.
//
//   LIMAOIM_BIN=../../build/limaoim npm run test:browser
//
// It needs a server built after `npm ci && npm run demo` here and `npm ci` in
// clients/js (tools/setup.sh does both); Chromium as in browser.test.js.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { LimaoClient } from '../../js/src/client.js';
import { launchChromium } from '../../js/test/helpers/chromium.js';
import { startServer, serverSkipReason, freePort, postJson } from '../../js/test/helpers/server.js';

const skip = serverSkipReason();
let server;
let browser;
let peer;

after(async () => {
  peer?.close();
  await browser?.close();
  await server?.stop();
});

test('demo SDK page: logs in over the WuKongIM listener and chats with a LiMaoIM client', { timeout: 30_000 }, async (t) => {
  if (skip) {
    t.skip(skip);
    return;
  }
  browser = await launchChromium(chromium, t);
  if (!browser) return;
  const wkPort = await freePort();
  server = await startServer({ extraArgs: ['--mode', 'release', '--wk-ws-addr', `127.0.0.1:${wkPort}`], waitPorts: [wkPort] });
  for (const uid of ['wk-eve', 'lm-fay']) {
    await postJson(`${server.httpUrl}/user/token`, { uid, token: `${uid}-secret`, device_flag: 1 });
  }
  peer = new LimaoClient({ reconnect: false });
  const atFay = [];
  peer.on('message', (m) => atFay.push(m));
  await peer.connect(server.wsUrl, 'lm-fay', 'lm-fay-secret', 1);

  const page = await (await browser.newContext()).newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  const res = await page.goto(`${server.httpUrl}/demo/wk.html`);
  assert.equal(res.status(), 200, 'GET /demo/wk.html (is the demo embedded in this build?)');
  await page.locator('body[data-ready="true"]').waitFor({ timeout: 10_000 });

  await page.getByTestId('ws-url').fill(`ws://127.0.0.1:${wkPort}`);
  await page.getByTestId('uid').fill('wk-eve');
  await page.getByTestId('token').fill('wk-eve-secret');
  await page.getByTestId('connect-btn').click();
  await page.locator('[data-testid="conn-state"][data-sdk-status="Connected"]').waitFor({ timeout: 10_000 });

  await page.getByTestId('peer').fill('lm-fay');
  await page.getByTestId('message-input').fill('hello fay, from the SDK page');
  await page.getByTestId('send-btn').click();
  const out = page.locator('[data-testid="message"][data-direction="out"][data-state="sent"]', { hasText: 'hello fay, from the SDK page' });
  await out.waitFor({ timeout: 10_000 });
  const seq = Number(await out.getAttribute('data-message-seq'));
  assert.ok(seq > 0, 'the sent message shows its message_seq');

  const deadline = Date.now() + 5000;
  while (atFay.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(atFay.length, 1, 'lm-fay got the page\'s message');
  assert.deepEqual(JSON.parse(new TextDecoder().decode(atFay[0].payload)), { type: 1, content: 'hello fay, from the SDK page' });
  assert.equal(atFay[0].from_uid, 'wk-eve');
  assert.equal(atFay[0].message_seq, seq);

  await peer.send('wk-eve', 1, JSON.stringify({ type: 1, content: 'hi eve 狸猫' }));
  const inbound = page.locator('[data-testid="message"][data-direction="in"]', { hasText: 'hi eve 狸猫' });
  await inbound.waitFor({ timeout: 10_000 });
  assert.equal(Number(await inbound.getAttribute('data-message-seq')), seq + 1);
  assert.deepEqual(await page.getByTestId('error-item').allTextContents(), []);
  assert.deepEqual(problems, []);
});
