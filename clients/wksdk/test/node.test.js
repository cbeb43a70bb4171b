// WuKongIM's published JS SDK in Node against the real server ($LIMAOIM_BIN):
//
//   LIMAOIM_BIN=../../build/limaoim npm run test:node
//
// The SDK opens `new WebSocket(addr)` as in a browser; Node 20 has that global with
// --experimental-websocket (undici's, standard; the flag the clients/js tests run
// with too), so no WebSocket package is needed. Each SDK is its own instance of the
// bundle (the SDK is a singleton per module instance). The SDK logs every packet
// with console.log: that goes to a buffer, whose end a failing test's error shows.

import { bundleApp } from './helpers/bundle.js';
import { sdkSuite } from './helpers/scenario.js';

const sdkLog = [];
console.log = (...args) => sdkLog.push(args.map(String).join(' '));

let source;
let instances = 0;

sdkSuite({
  label: 'node',
  diagnostics: async () => sdkLog.slice(-80).join('\n'),
  async openSdk(api) {
    source ??= await bundleApp('esm');
    // A distinct URL per instance: a module of its own, so an SDK singleton of its own.
    const url = `data:text/javascript;base64,${Buffer.from(`${source}\n// instance ${++instances}`).toString('base64')}`;
    const { createApp } = await import(url);
    const app = createApp(api);
    return {
      call: (fn, ...args) => app[fn](...args),
      close: async () => app.disconnect(),
    };
  },
});
