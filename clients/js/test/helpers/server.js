// Starts a real limaoim server ($LIMAOIM_BIN) for the end-to-end and browser tests:
// free ports (bind port 0 first), a fresh data directory and stats instance name,
// wait until the WebSocket port accepts, SIGTERM at the end.

import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';

/** Why a server-backed test cannot run here, or null when it can. */
export function serverSkipReason() {
  if (!process.env.LIMAOIM_BIN) {
    return 'LIMAOIM_BIN is not set: set it to a limaoim binary (e.g. LIMAOIM_BIN=build-js/limaoim) to run the tests against the real server';
  }
  return null;
}

/** A port nobody listens on right now (the kernel picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @returns {Promise<{wsUrl, httpUrl, ports, dataDir, output: () => string, stop: () => Promise<void>}>}
 */
export async function startServer({ bin = process.env.LIMAOIM_BIN, extraArgs = [], waitPorts = [], startTimeoutMs = 20_000 } = {}) {
  const [tcp, ws, http] = [await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'limaoim-js-'));
  const instance = `js-${process.pid}-${Date.now().toString(36)}`;
  const args = [
    '--mode', 'test',
    '--port', String(tcp),
    '--addr', '127.0.0.1',
    '--ws-addr', `127.0.0.1:${ws}`,
    '--http-addr', `127.0.0.1:${http}`,
    '--data-dir', dataDir,
    '--instance', instance,
    ...extraArgs,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  let exited = null;
  const exitPromise = new Promise((resolve) => child.on('exit', (code, signal) => resolve((exited = { code, signal }))));
  child.on('error', (err) => (out += `\nspawn error: ${err.message}`));

  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (exited) {
      cleanup();
      throw new Error(`limaoim exited early (${JSON.stringify(exited)}): ${bin} ${args.join(' ')}\n${out}`);
    }
    // waitPorts: listeners of extraArgs (e.g. --wk-ws-addr) that must accept too.
    if (await canConnect(ws) && (await Promise.all(waitPorts.map(canConnect))).every(Boolean)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      cleanup();
      throw new Error(`limaoim did not accept on the WebSocket port ${ws} (and ${waitPorts.join(', ') || 'no other'}) within ${startTimeoutMs} ms\n${out}`);
    }
    await sleep(100);
  }

  return {
    wsUrl: `ws://127.0.0.1:${ws}/`,
    httpUrl: `http://127.0.0.1:${http}`,
    ports: { tcp, ws, http },
    dataDir,
    output: () => out,
    /** SIGTERM, wait for the exit (SIGKILL after 10 s), delete the data directory. */
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exitPromise;
        clearTimeout(killer);
      }
      cleanup();
      return exited;
    },
  };
}

/** POST JSON to the server's HTTP API; returns the parsed body, throws on non-200. */
export async function postJson(url, body, headers = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} → HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}
