// The SDK with the test app (helpers/app.js), bundled by esbuild (pinned in the
// lockfile) in memory: the published package is CommonJS-free ES modules with
// extensionless imports and bare imports of its dependencies (crypto-js, buffer,
// curve25519-js, bignumber.js), which neither Node nor a browser loads as they are.
// Built for the browser platform, as apps bundle it; Node 20 runs the same code
// (it has WebSocket with --experimental-websocket, crypto.getRandomValues, atob).

import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('./app.js', import.meta.url));

/** @param {'esm'|'iife'} format iife: a script that sets globalThis.WKApp */
export async function bundleApp(format) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format,
    globalName: format === 'iife' ? 'WKApp' : undefined,
    platform: 'browser',
    target: 'es2020',
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}
