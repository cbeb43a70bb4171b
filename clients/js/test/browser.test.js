// The demo page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is downloaded): the real server ($LIMAOIM_BIN) serves
// the page under /demo/, two browser contexts log in as alice and bob, chat both
// ways with delivery states, bob reloads, logs in again and loads the history.
//
//   LIMAOIM_BIN=/work/main/build-js/limaoim npm run test:browser
//
// Chromium that cannot start fails the test, unless LIMAOIM_ALLOW_NO_BROWSER=1
// (then it is skipped, with the reason). Screenshot: $SCREENSHOT_DIR/demo.png.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer, serverSkipReason } from './helpers/server.js';
import { launchChromium } from './helpers/chromium.js';

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || os.tmpdir();
const skip = serverSkipReason();

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page at /demo/, with its console errors and page errors collected. */
async function openDemo(context, name) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`${name} pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`${name} console: ${msg.text()}`);
  });
  await page.goto(`${server.httpUrl}/demo/`);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: 10_000 });
  return page;
}

async function login(page, uid) {
  await page.getByTestId('ws-url').fill(server.wsUrl);
  await page.getByTestId('uid').fill(uid);
  await page.getByTestId('token').fill(`${uid}-token`);
  await page.getByTestId('device-flag').selectOption('1');
  await page.getByTestId('connect-btn').click();
  await page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });
}

async function sendText(page, peer, text) {
  await page.getByTestId('peer').fill(peer);
  await page.getByTestId('channel-type').selectOption('1');
  await page.getByTestId('message-input').fill(text);
  await page.getByTestId('send-btn').click();
}

/** The message element with this text, as `direction` ('in'/'out') and `origin`. */
function message(page, text, { direction, origin = 'live' }) {
  return page.locator(`[data-testid="message"][data-direction="${direction}"][data-origin="${origin}"]`, {
    has: page.locator('[data-testid="message-text"]', { hasText: text }),
  });
}

async function errorsOn(page) {
  return page.getByTestId('error-item').allTextContents();
}

/** Browser and server, made by the first test that needs them; null: skip. */
async function setup(t) {
  if (skip) {
    t.skip(skip);
    return null;
  }
  browser ??= await launchChromium(chromium, t);
  if (!browser) return null;
  if (!server) {
    server = await startServer();
    server.demo = await fetch(`${server.httpUrl}/demo/`);
  }
  // Both tests need the page: say plainly when this server build does not serve it.
  assert.equal(server.demo.status, 200, `GET /demo/ on the server's HTTP listener: HTTP ${server.demo.status} (is the demo embedded in this build?)`);
  assert.match(server.demo.headers.get('content-type') ?? '', /text\/html/);
  return { browser, server };
}

test('demo page: two users chat, reload, load history', async (t) => {
  if (!(await setup(t))) return;

  const alice = await openDemo(await browser.newContext(), 'alice');
  const bobContext = await browser.newContext();
  const bob = await openDemo(bobContext, 'bob');
  assert.match(await alice.getByTestId('ws-url').inputValue(), /^ws:\/\/127\.0\.0\.1:2122$/, 'default WebSocket URL');
  await login(alice, 'alice');
  await login(bob, 'bob');

  // alice → bob: "sending" becomes "sent" with the SENDACK's seq; bob receives it.
  await sendText(alice, 'bob', 'hello bob, from the browser');
  const out1 = message(alice, 'hello bob, from the browser', { direction: 'out' });
  await out1.and(alice.locator('[data-state="sent"]')).waitFor({ timeout: 10_000 });
  const seq1 = Number(await out1.getAttribute('data-message-seq'));
  assert.ok(seq1 > 0, 'sent message shows its message_seq');
  const in1 = message(bob, 'hello bob, from the browser', { direction: 'in' });
  await in1.waitFor({ timeout: 10_000 });
  assert.equal(await in1.getAttribute('data-state'), 'received');
  assert.equal(Number(await in1.getAttribute('data-message-seq')), seq1);

  // bob → alice
  await sendText(bob, 'alice', 'hi alice 狸猫');
  const out2 = message(bob, 'hi alice 狸猫', { direction: 'out' });
  await out2.and(bob.locator('[data-state="sent"]')).waitFor({ timeout: 10_000 });
  assert.equal(Number(await out2.getAttribute('data-message-seq')), seq1 + 1);
  await message(alice, 'hi alice 狸猫', { direction: 'in' }).waitFor({ timeout: 10_000 });

  // bob reloads: the list is empty, he logs in again and loads the history.
  await bob.reload();
  await bob.locator('body[data-ready="true"]').waitFor({ timeout: 10_000 });
  assert.equal(await bob.getByTestId('message').count(), 0);
  await login(bob, 'bob');
  await bob.getByTestId('peer').fill('alice');
  await bob.getByTestId('history-btn').click();
  await bob.locator('[data-testid="history-status"][data-state="done"]').waitFor({ timeout: 10_000 });
  const h1 = message(bob, 'hello bob, from the browser', { direction: 'in', origin: 'history' });
  const h2 = message(bob, 'hi alice 狸猫', { direction: 'out', origin: 'history' });
  assert.equal(await h1.count(), 1, 'history shows alice’s message');
  assert.equal(await h2.count(), 1, 'history shows bob’s own message');
  assert.equal(Number(await h1.getAttribute('data-message-seq')), seq1);

  // After the reload bob still chats live.
  await sendText(alice, 'bob', 'welcome back');
  await message(bob, 'welcome back', { direction: 'in' }).waitFor({ timeout: 10_000 });

  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const shot = path.join(SCREENSHOT_DIR, 'demo.png');
  await bob.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  assert.deepEqual(await errorsOn(alice), []);
  assert.deepEqual(await errorsOn(bob), []);
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});

test('demo page on a plain-http origin that is not localhost: says it needs https', async (t) => {
  if (!(await setup(t))) return;
  const context = await browser.newContext();
  // Serve the real pages under http://demo.invalid: not a secure context, so no crypto.subtle.
  await context.route('http://demo.invalid/**', async (route) => {
    const url = new URL(route.request().url());
    route.fulfill({ response: await route.fetch({ url: `${server.httpUrl}${url.pathname}` }) });
  });
  const page = await context.newPage();
  await page.goto('http://demo.invalid/demo/');
  const banner = page.getByTestId('insecure-banner');
  await banner.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await banner.textContent(), /https:\/\/[\s\S]*localhost/);
  assert.equal(await page.getByTestId('connect-btn').isDisabled(), true);
  await context.close();
});
