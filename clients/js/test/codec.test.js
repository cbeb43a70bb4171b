// Codec against every packet vector of the spec (packets.json, edge_cases.json):
// each vector must encode to its hex and decode back to its fields.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { encodePacket, decodePacket, encodeVarint, decodeVarint, ProtocolError } from '../src/codec.js';
import { loadVectors, vectorToPacket, hexToBytes, bytesToHex } from './helpers/spec.js';

const packets = loadVectors('packets');
const edges = loadVectors('edge_cases');
const misc = loadVectors('misc');

/** Encode and decode one packet vector, in both directions. */
function checkPacketVector(v) {
  const expected = vectorToPacket(v);
  const encoded = encodePacket(expected, v.version);
  assert.equal(bytesToHex(encoded), v.hex, `${v.name}: encoding`);

  const bytes = hexToBytes(v.hex);
  const got = decodePacket(bytes, v.version);
  assert.ok(got, `${v.name}: decoder wants more bytes`);
  assert.equal(got.consumed, bytes.length, `${v.name}: consumed`);
  assert.deepEqual(got.packet, expected, `${v.name}: decoded fields`);

  if (v.type !== 'PING' && v.type !== 'PONG') {
    const len = decodeVarint(bytes, 1, Infinity);
    assert.equal(len.value, v.remaining_length, `${v.name}: remaining length`);
  }
}

describe('packets.json', () => {
  test('has vectors for every packet type and version', () => {
    const seen = new Set(packets.vectors.map((v) => `${v.type} v${v.version}`));
    for (const type of ['CONNECT', 'CONNACK', 'SEND', 'SENDACK', 'RECV', 'RECVACK', 'PING', 'PONG', 'DISCONNECT']) {
      for (const version of [1, 2, 3, 4]) assert.ok(seen.has(`${type} v${version}`), `missing ${type} v${version}`);
    }
  });
  for (const v of packets.vectors) {
    test(v.name, () => checkPacketVector(v));
  }
});

describe('edge_cases.json', () => {
  for (const group of ['remaining_length_boundaries', 'empty_strings', 'max_size_strings']) {
    test(`${group} is not empty`, () => assert.ok(edges[group].length > 0));
    for (const v of edges[group]) {
      test(`${group}: ${v.name}`, () => checkPacketVector(v));
    }
  }

  for (const { value, hex } of edges.remaining_length_varints) {
    test(`varint ${value} = ${hex}`, () => {
      assert.equal(bytesToHex(encodeVarint(value)), hex);
      assert.deepEqual(decodeVarint(hexToBytes(hex), 0, Infinity), { value, size: hex.length / 2 });
      // The same value with the default 1 MiB limit: over it is a protocol error.
      if (value > 1048576) assert.throws(() => decodeVarint(hexToBytes(hex), 0), ProtocolError);
      else assert.equal(decodeVarint(hexToBytes(hex), 0).value, value);
    });
  }

  for (const c of edges.decode_cases) {
    test(`decode ${c.hex} (v${c.version}) → ${c.expect}${c.note ? `: ${c.note}` : ''}`, () => {
      const bytes = hexToBytes(c.hex);
      if (c.expect === 'error') {
        assert.throws(() => decodeAll(bytes, c.version), ProtocolError);
        return;
      }
      if (c.expect === 'incomplete') {
        assert.equal(decodePacket(bytes, c.version), null);
        return;
      }
      if (c.expect === 'packet') {
        const got = decodePacket(bytes, c.version);
        assert.equal(got.packet.type, c.type);
        assert.equal(got.consumed, c.consumed);
        return;
      }
      assert.equal(c.expect, 'packets');
      assert.deepEqual(decodeAll(bytes, c.version).map((p) => p.type), c.types);
    });
  }
});

/** Decodes packets back to back until the buffer is used up (or incomplete). */
function decodeAll(bytes, version) {
  const out = [];
  let rest = bytes;
  for (;;) {
    const got = decodePacket(rest, version);
    if (!got) break;
    out.push(got.packet);
    rest = rest.subarray(got.consumed);
  }
  return out;
}

describe('encoder rules', () => {
  test('strings over 65535 bytes are refused (Q4)', () => {
    assert.throws(
      () => encodePacket({ type: 'DISCONNECT', reason_code: 0, reason: 'z'.repeat(65536) }),
      RangeError,
    );
  });

  test('PING and PONG are one byte whatever the flags (Q1)', () => {
    assert.equal(bytesToHex(encodePacket({ type: 'PING', flags: { dup: true } })), '70');
    assert.equal(bytesToHex(encodePacket({ type: 'PONG' })), '80');
  });

  test('out-of-range integers are refused, not wrapped', () => {
    const send = { type: 'SENDACK', message_id: 1n, message_seq: 1, reason_code: 1 };
    assert.throws(() => encodePacket({ ...send, client_seq: 2 ** 32 }), RangeError);
    assert.throws(() => encodePacket({ ...send, client_seq: 1, message_id: 2n ** 63n }), RangeError);
  });

  test('a RECV message id beyond 2^53 survives exactly (misc.json snowflake)', () => {
    const id = misc.snowflake_message_id.message_id;
    assert.equal(typeof id, 'bigint');
    const bytes = encodePacket({ type: 'RECVACK', message_id: id, message_seq: 1 });
    assert.equal(bytesToHex(bytes.subarray(2, 10)), misc.snowflake_message_id.message_id_hex);
    assert.equal(decodePacket(bytes).packet.message_id, id);
  });
});
