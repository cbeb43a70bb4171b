// PacketSplitter: the byte stream → packets reassembly (PROTOCOL.md §1).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketSplitter, ProtocolError, encodePacket } from '../src/codec.js';
import { loadVectors, vectorToPacket, hexToBytes } from './helpers/spec.js';

const packets = loadVectors('packets');
const v4 = packets.vectors.filter((v) => v.version === 4);
const byName = (name) => packets.vectors.find((v) => v.name === name);

const recv = byName('RECV v4');
const sendack = byName('SENDACK v4');
const disconnect = byName('DISCONNECT v4');

test('a packet split over three messages comes out once, after the last piece', () => {
  const bytes = hexToBytes(recv.hex);
  const s = new PacketSplitter(4);
  const a = Math.floor(bytes.length / 3);
  // Cut inside the header for the first piece, to cover a split varint too.
  assert.deepEqual(s.push(bytes.subarray(0, 2)), []);
  assert.deepEqual(s.push(bytes.subarray(2, a)), []);
  assert.equal(s.bufferedBytes, a);
  const out = s.push(bytes.subarray(a));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0], vectorToPacket(recv));
  assert.equal(s.bufferedBytes, 0);
});

test('three packets in one message come out in order', () => {
  const s = new PacketSplitter(4);
  const one = Buffer.concat([hexToBytes(sendack.hex), hexToBytes(recv.hex), hexToBytes(disconnect.hex)]);
  const out = s.push(new Uint8Array(one));
  assert.deepEqual(out, [vectorToPacket(sendack), vectorToPacket(recv), vectorToPacket(disconnect)]);
});

test('three packets and the start of a fourth, then the rest of it', () => {
  const s = new PacketSplitter(4);
  const fourth = hexToBytes(recv.hex);
  const first = Buffer.concat([hexToBytes('80'), hexToBytes(sendack.hex), hexToBytes(disconnect.hex), fourth.subarray(0, 10)]);
  assert.deepEqual(s.push(new Uint8Array(first)).map((p) => p.type), ['PONG', 'SENDACK', 'DISCONNECT']);
  assert.deepEqual(s.push(fourth.subarray(10)), [vectorToPacket(recv)]);
});

test('byte at a time: every v4 vector back to back, fed one byte per message', () => {
  // CONNECT carries its own version; everything else here is v4.
  const stream = Buffer.concat(v4.map((v) => hexToBytes(v.hex)));
  const s = new PacketSplitter(4);
  const out = [];
  for (let i = 0; i < stream.length; i++) {
    // An ArrayBuffer, as a WebSocket with binaryType 'arraybuffer' delivers it.
    out.push(...s.push(stream.buffer.slice(stream.byteOffset + i, stream.byteOffset + i + 1)));
  }
  assert.deepEqual(out, v4.map(vectorToPacket));
  assert.equal(s.bufferedBytes, 0);
});

test('a packet of 16 KiB arriving in odd-sized pieces', () => {
  const edges = loadVectors('edge_cases');
  const big = edges.remaining_length_boundaries.find((v) => v.remaining_length === 16384);
  const bytes = hexToBytes(big.hex);
  const s = new PacketSplitter(big.version);
  const out = [];
  for (let at = 0; at < bytes.length; at += 1000) out.push(...s.push(bytes.subarray(at, at + 1000)));
  assert.deepEqual(out, [vectorToPacket(big)]);
});

test('a protocol error is thrown, and the splitter stays failed', () => {
  const s = new PacketSplitter(4);
  assert.deepEqual(s.push(hexToBytes('80')), [{ type: 'PONG' }]);
  assert.throws(() => s.push(hexToBytes('a000')), ProtocolError);
  assert.throws(() => s.push(hexToBytes('80')), ProtocolError);
});

test('a length over the limit fails as soon as the varint is complete', () => {
  const s = new PacketSplitter(4, { maxRemainingLength: 100 });
  assert.throws(() => s.push(hexToBytes('40' + '65')), /exceeds the limit/); // 101, no body yet
});

test('splitting output matches encodePacket input', () => {
  const p = { type: 'DISCONNECT', flags: { dup: false, sync_once: false, red_dot: false, no_persist: false }, reason_code: 0, reason: '账号在其他设备上登录' };
  const s = new PacketSplitter(4);
  const bytes = encodePacket(p);
  assert.deepEqual(s.push(bytes.subarray(0, 5)), []);
  assert.deepEqual(s.push(bytes.subarray(5)), [p]);
});
