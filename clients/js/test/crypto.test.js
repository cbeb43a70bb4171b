// The security layer against crypto.json (RFC 7748 key pairs, key derivation,
// payload encryption, SEND/RECV MsgKeys) and the sealed v3/v4 samples of packets.json.

import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  importKeyPair, deriveSharedSecret, deriveAesKey, CipherSession, base64Encode, base64Decode,
  md5Hex, sendSignBytes, recvSignBytes,
} from '../src/crypto.js';
import { encodePacket, decodePacket } from '../src/codec.js';
import { loadVectors, vectorToPacket, hexToBytes, bytesToHex } from './helpers/spec.js';

const crypto = loadVectors('crypto');
const packets = loadVectors('packets');
const text = (bytes) => new TextDecoder().decode(bytes);

/** The session of crypto.json: key 0c15fdbf4d09bc6c, IV a1B2c3D4e5F6g7H8. */
let session;
before(async () => {
  session = await CipherSession.create(hexToBytes(crypto.aes_key_derivation.aes_key_hex), crypto.iv.salt_ascii);
});

describe('X25519 and key derivation (§5.1, §5.2)', () => {
  const x = crypto.x25519;

  test('public keys from the RFC 7748 private keys', async () => {
    const client = await importKeyPair(hexToBytes(x.client_private_hex));
    const server = await importKeyPair(hexToBytes(x.server_private_hex));
    assert.equal(bytesToHex(client.publicKey), x.client_public_hex);
    assert.equal(bytesToHex(server.publicKey), x.server_public_hex);
    assert.equal(base64Encode(client.publicKey), x.client_public_base64);
    assert.equal(base64Encode(server.publicKey), x.server_public_base64);
  });

  test('both sides compute the same shared secret', async () => {
    const client = await importKeyPair(hexToBytes(x.client_private_hex));
    const server = await importKeyPair(hexToBytes(x.server_private_hex));
    const s1 = await deriveSharedSecret(client.privateKey, base64Decode(x.server_public_base64));
    const s2 = await deriveSharedSecret(server.privateKey, base64Decode(x.client_public_base64));
    assert.equal(bytesToHex(s1), x.shared_secret_hex);
    assert.equal(bytesToHex(s2), x.shared_secret_hex);
  });

  test('AES key = first 16 hex characters of md5(base64(secret))', () => {
    const d = crypto.aes_key_derivation;
    const secret = hexToBytes(x.shared_secret_hex);
    assert.equal(base64Encode(secret), d.shared_secret_base64);
    assert.equal(md5Hex(d.shared_secret_base64), d.md5_hex_of_base64);
    const key = deriveAesKey(secret);
    assert.equal(text(key), d.aes_key_ascii);
    assert.equal(bytesToHex(key), d.aes_key_hex);
  });

  test('IV = the salt bytes', () => {
    assert.equal(bytesToHex(new TextEncoder().encode(crypto.iv.salt_ascii)), crypto.iv.iv_hex);
  });

  test('full client handshake: CONNECT bytes and the session from CONNACK', async () => {
    const h = crypto.handshake;
    const client = await importKeyPair(hexToBytes(x.client_private_hex));
    const connect = decodePacket(hexToBytes(h.connect_v4_hex)).packet;
    assert.equal(connect.client_key, base64Encode(client.publicKey));
    assert.equal(bytesToHex(encodePacket(connect)), h.connect_v4_hex);

    const connack = decodePacket(hexToBytes(h.connack_v4_hex), 4).packet;
    assert.equal(connack.server_key, h.connack_v4_fields.server_key);
    assert.equal(connack.salt, h.connack_v4_fields.salt);
    assert.equal(connack.time_diff, BigInt(h.connack_v4_fields.time_diff));
    assert.equal(connack.reason_code, h.connack_v4_fields.reason_code);

    const s = await CipherSession.fromHandshake(client.privateKey, connack.server_key, connack.salt);
    const sample = crypto.payload_encryption[0];
    assert.equal(text(await s.encryptPayload(hexToBytes(sample.plaintext_hex))), sample.wire_base64);
  });
});

describe('payload encryption (§5.3)', () => {
  for (const p of crypto.payload_encryption) {
    test(p.label, async () => {
      const raw = await session.encryptRaw(hexToBytes(p.plaintext_hex));
      assert.equal(raw.length, p.padded_length);
      assert.equal(bytesToHex(raw), p.ciphertext_hex);
      const wire = await session.encryptPayload(hexToBytes(p.plaintext_hex));
      assert.equal(text(wire), p.wire_base64);
      assert.equal(bytesToHex(await session.decryptPayload(wire)), p.plaintext_hex);
    });
  }

  test('bad padding, bad length, bad base64 and empty input are refused', async () => {
    // The block-aligned sample is plaintext block + padding block. Its first block alone
    // decrypts to '0123456789abcdef', whose last byte 0x66 is no valid pad length.
    const good = hexToBytes(crypto.payload_encryption[2].ciphertext_hex);
    await assert.rejects(session.decryptPayload(base64Encode(good.subarray(0, 16))));
    await assert.rejects(session.decryptPayload(base64Encode(good.subarray(0, 15))));
    await assert.rejects(session.decryptPayload(''));
    await assert.rejects(session.decryptPayload('not base64!'));
  });
});

describe('MsgKey (§5.4, §5.5)', () => {
  test('SEND: sign string, its ciphertext and the MsgKey', async () => {
    const s = crypto.send;
    const p = vectorToPacket({ type: 'SEND', fields: s.fields });
    assert.equal(text(sendSignBytes(p)), s.sign_string_text);
    assert.equal(bytesToHex(sendSignBytes(p)), s.sign_string_hex);
    assert.equal(base64Encode(await session.encryptRaw(sendSignBytes(p))), s.sign_ciphertext_base64);
    assert.equal(await session.sendMsgKey(p), s.msg_key);
  });

  test('SEND: sealing the plaintext gives the v4 and v3 packets byte for byte', async () => {
    const s = crypto.send;
    const p = vectorToPacket({ type: 'SEND', fields: s.fields });
    p.payload = await session.encryptPayload(s.plaintext_payload_text);
    p.msg_key = await session.sendMsgKey(p);
    assert.equal(bytesToHex(encodePacket(p, 4)), s.packet_v4_hex);
    assert.equal(bytesToHex(encodePacket(p, 3)), s.packet_v3_hex);
  });

  test('RECV: sign string, its ciphertext, MsgKey check and decryption', async () => {
    const r = crypto.recv;
    const p = decodePacket(hexToBytes(r.packet_v4_hex), 4).packet;
    assert.deepEqual(p, vectorToPacket({ type: 'RECV', fields: r.fields }));
    assert.equal(text(recvSignBytes(p)), r.sign_string_text);
    assert.equal(bytesToHex(recvSignBytes(p)), r.sign_string_hex);
    assert.equal(base64Encode(await session.encryptRaw(recvSignBytes(p))), r.sign_ciphertext_base64);
    assert.equal(await session.recvMsgKey(p), r.msg_key);
    assert.equal(await session.checkRecvMsgKey(p), true);
    assert.equal(text(await session.decryptPayload(p.payload)), r.plaintext_payload_text);
  });

  test('RECV: any changed signed field fails the check', async () => {
    const p = decodePacket(hexToBytes(crypto.recv.packet_v4_hex), 4).packet;
    for (const change of [
      { channel_id: 'eve' }, { from_uid: 'eve' }, { message_seq: 2 }, { message_id: p.message_id + 1n },
      { timestamp: p.timestamp + 1 }, { client_msg_no: 'x' }, { channel_type: 2 },
      { payload: new TextEncoder().encode(crypto.payload_encryption[1].wire_base64) },
    ]) {
      assert.equal(await session.checkRecvMsgKey({ ...p, ...change }), false, JSON.stringify(Object.keys(change)));
    }
  });

  test('tampered SEND: the MsgKey on the packet is not the one its fields give', async () => {
    const t = crypto.tampered_send;
    const p = decodePacket(hexToBytes(t.packet_v4_hex), 4).packet;
    assert.equal(p.channel_id, 'mallory');
    const expected = await session.sendMsgKey(p);
    assert.equal(expected, t.expected_msg_key_for_these_fields);
    assert.notEqual(expected, p.msg_key);
  });

  test('the sealed v3/v4 SEND and RECV samples of packets.json verify and decrypt', async () => {
    const sealed = packets.vectors.filter((v) => (v.type === 'SEND' || v.type === 'RECV') && v.version > 2 && v.fields.msg_key && !v.fields.flags.dup);
    assert.ok(sealed.length >= 4, 'expected v3/v4 SEND and RECV samples');
    for (const v of sealed) {
      const p = decodePacket(hexToBytes(v.hex), v.version).packet;
      const key = v.type === 'SEND' ? await session.sendMsgKey(p) : await session.recvMsgKey(p);
      assert.equal(key, p.msg_key, v.name);
      assert.equal(text(await session.decryptPayload(p.payload)), crypto.send.plaintext_payload_text, v.name);
    }
  });
});
