// demo/assets.txt is what the server embeds and serves under /demo/. This test walks
// the pages the way a browser does — index.html's and wk.html's script/link URLs, the
// import map, every static and dynamic import, transitively — and checks that
// assets.txt lists exactly the files reached, that they exist, and that their content
// types fit.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { REPO_DIR } from './helpers/spec.js';

const ASSETS = path.join(REPO_DIR, 'clients/js/demo/assets.txt');

/** assets.txt: `URL_PATH REPO_RELATIVE_FILE CONTENT_TYPE`, the type may contain spaces. */
function readAssets() {
  const map = new Map();
  for (const line of readFileSync(ASSETS, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const m = /^(\S+) (\S+) (.+)$/.exec(line);
    assert.ok(m, `malformed assets.txt line: ${line}`);
    assert.ok(!map.has(m[1]), `duplicate URL ${m[1]}`);
    map.set(m[1], { file: m[2], type: m[3] });
  }
  return map;
}

/** import specifiers of a JS module (comments removed first: JSDoc has example imports). */
function importsOf(source) {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '');
  const specs = [];
  for (const re of [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ]) {
    for (const m of code.matchAll(re)) specs.push(m[1]);
  }
  return specs;
}

function resolve(spec, fromUrl, importMap) {
  if (spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/')) {
    return new URL(spec, `http://demo.invalid${fromUrl}`).pathname;
  }
  // Bare specifier: exact entry first, then the longest "prefix/" entry (import map rules).
  if (importMap[spec]) return importMap[spec];
  const prefix = Object.keys(importMap).filter((k) => k.endsWith('/') && spec.startsWith(k)).sort((a, b) => b.length - a.length)[0];
  assert.ok(prefix, `bare specifier ${spec} (in ${fromUrl}) is not in the import map`);
  return importMap[prefix] + spec.slice(prefix.length);
}

test('assets.txt lists exactly the files the demo page loads, and they exist', () => {
  const assets = readAssets();
  const read = (url) => {
    const a = assets.get(url);
    assert.ok(a, `${url} is needed by the page but missing from assets.txt`);
    const file = path.join(REPO_DIR, a.file);
    const how = a.file.startsWith('clients/wksdk/') ? ' (run npm ci && npm run demo in clients/wksdk)'
      : a.file.includes('node_modules') ? ' (run npm ci in clients/js)' : '';
    assert.ok(existsSync(file), `${a.file} does not exist${how}`);
    return readFileSync(file, 'utf8');
  };

  const reached = new Set();
  const queue = [];
  let importMap = {};
  for (const page of ['/demo/', '/demo/wk.html']) {
    const html = read(page);
    const mapScript = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
    const pageMap = mapScript ? JSON.parse(mapScript[1]).imports : {};
    importMap = { ...importMap, ...pageMap }; // the pages' maps do not overlap
    reached.add(page);
    for (const m of html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/g)) {
      if (m[1].startsWith('data:')) continue; // inline (the empty favicon), nothing to fetch
      const url = resolve(m[1], page, pageMap);
      reached.add(url);
      if (url.endsWith('.js')) queue.push(url);
      else read(url);
    }
  }
  while (queue.length) {
    const url = queue.shift();
    for (const spec of importsOf(read(url))) {
      const target = resolve(spec, url, importMap);
      if (!reached.has(target)) {
        reached.add(target);
        queue.push(target);
      }
    }
  }

  assert.deepEqual([...assets.keys()].sort(), [...reached].sort(), 'assets.txt vs what the page loads');
  assert.ok(reached.has('/demo/vendor/@noble/hashes/legacy.js'));
  assert.ok(reached.has('/demo/vendor/wksdk.js'));

  for (const [url, { type }] of assets) {
    const want = url.endsWith('.js') ? 'text/javascript' : url.endsWith('.css') ? 'text/css' : 'text/html';
    assert.ok(type.startsWith(want), `${url}: content type ${type}, expected ${want}`);
  }
});

test('the vendored package is the version package-lock.json pins', () => {
  const lock = JSON.parse(readFileSync(path.join(REPO_DIR, 'clients/js/package-lock.json'), 'utf8'));
  const pinned = lock.packages['node_modules/@noble/hashes'].version;
  const installed = JSON.parse(readFileSync(path.join(REPO_DIR, 'clients/js/node_modules/@noble/hashes/package.json'), 'utf8')).version;
  assert.equal(installed, pinned, 'node_modules is stale: run npm ci');
});
