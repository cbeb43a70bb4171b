// Writes dist/wksdk.js, WuKongIM's SDK as one ES module for the demo's SDK page
// (served at /demo/vendor/wksdk.js, embedded in the server from
// clients/js/demo/assets.txt). tools/setup.sh runs it after `npm ci`, before the build.
//
//   npm run demo

import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

await build({
  entryPoints: [fileURLToPath(new URL('./sdk.js', import.meta.url))],
  outfile: fileURLToPath(new URL('../dist/wksdk.js', import.meta.url)),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  logLevel: 'warning',
});
