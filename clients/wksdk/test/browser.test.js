// WuKongIM's published JS SDK in headless Chromium against the real server
// ($LIMAOIM_BIN), the same tests as node.test.js:
//
//   LIMAOIM_BIN=../../build/limaoim npm run test:browser
//
// The package ships no browser build, so the page gets the esbuild bundle of the SDK
// and helpers/app.js (an IIFE setting window.WKApp). Each SDK is a page of its own
// (the SDK is a singleton per page). The app's HTTP API calls go to Node through an
// exposed function, as a real app's go to its own backend (limaoim's API is the
// business server's, not the browser's). Chromium that cannot start fails the tests,
// unless LIMAOIM_ALLOW_NO_BROWSER=1 (clients/js/test/helpers/chromium.js).

import { chromium } from 'playwright-core';
import { launchChromium } from '../../js/test/helpers/chromium.js';
import { bundleApp } from './helpers/bundle.js';
import { sdkSuite } from './helpers/scenario.js';

let browser;
let context;
let noBrowser = null; // why Chromium did not start, when LIMAOIM_ALLOW_NO_BROWSER=1
let script;
const pageLog = [];

sdkSuite({
  label: 'chromium',
  async setup() {
    script = await bundleApp('iife');
    browser = await launchChromium(chromium, { skip: (why) => (noBrowser = why) });
    context = await browser?.newContext();
  },
  unavailable: () => noBrowser,
  async openSdk(api) {
    const page = await context.newPage();
    const name = `page ${context.pages().length}`;
    page.on('console', (msg) => pageLog.push(`${name} ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => pageLog.push(`${name} pageerror: ${err.message}`));
    await page.exposeFunction('limaoApi', api);
    await page.setContent('<!doctype html><meta charset="utf-8"><title>wukongimjssdk</title>');
    await page.addScriptTag({ content: script });
    await page.evaluate(() => {
      window.app = window.WKApp.createApp((method, path, body) => window.limaoApi(method, path, body));
    });
    return {
      call: (fn, ...args) => page.evaluate(([f, a]) => window.app[f](...a), [fn, args]),
      close: () => page.close(),
    };
  },
  async teardown() {
    await browser?.close();
  },
  diagnostics: async () => pageLog.slice(-80).join('\n'),
});

