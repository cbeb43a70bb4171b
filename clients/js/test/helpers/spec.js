// Finds and loads the protocol test vectors (tests/vectors/*.json of the repository).
//
// $LIMAOIM_VECTORS_DIR, or <repo>/tests/vectors where <repo> is clients/js/../.. .
// Missing vectors are an error, never a skip: tests that silently pass without
// their vectors would prove nothing.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = path.resolve(here, '../../../..');

export const VECTORS_DIR = process.env.LIMAOIM_VECTORS_DIR
  ? path.resolve(process.env.LIMAOIM_VECTORS_DIR)
  : path.resolve(REPO_DIR, 'tests/vectors');

if (!existsSync(path.join(VECTORS_DIR, 'packets.json'))) {
  throw new Error(
    `LiMaoIM test vectors not found: ${VECTORS_DIR}/packets.json does not exist. ` +
      'Set LIMAOIM_VECTORS_DIR to the directory that holds packets.json.',
  );
}

/**
 * JSON.parse that keeps integers beyond 2^53 exact: the vectors' message ids exceed
 * it. Integer literals of 16+ digits become BigInt; all other numbers stay Numbers.
 */
export function parseJsonExact(text) {
  const marked = text.replace(/([:\[,]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"\\u0000big:$2"');
  return JSON.parse(marked, (_key, value) =>
    typeof value === 'string' && value.startsWith('\u0000big:') ? BigInt(value.slice(5)) : value,
  );
}

export function loadVectors(name) {
  return parseJsonExact(readFileSync(path.join(VECTORS_DIR, `${name}.json`), 'utf8'));
}

export function hexToBytes(hex) {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

export function bytesToHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

const I64_FIELDS = new Set(['message_id', 'client_timestamp', 'time_diff']);

/**
 * A vector's `fields` as the packet object the codec uses: payload_hex → payload
 * bytes, payload_text dropped (it repeats payload_hex), i64 fields as BigInt.
 */
export function vectorToPacket(vector) {
  const packet = { type: vector.type };
  for (const [key, value] of Object.entries(vector.fields ?? {})) {
    if (key === 'payload_text') continue;
    if (key === 'payload_hex') packet.payload = hexToBytes(value);
    else if (I64_FIELDS.has(key)) packet[key] = BigInt(value);
    else packet[key] = value;
  }
  return packet;
}
