// The v3/v4 security layer (PROTOCOL.md §5): X25519 key exchange, the AES key/IV
// derivation, AES-128-CBC payload encryption and the MsgKey signatures.
//
// Everything but MD5 comes from WebCrypto (globalThis.crypto.subtle), which Node 20
// and current browsers provide. WebCrypto has no MD5, so it comes from @noble/hashes.
//
// The protocol's weaknesses (a 16-hex-character key, a static IV, MD5) are
// reproduced on purpose: the server computes exactly the same things (§5.2, Q12).

import { md5 } from '@noble/hashes/legacy.js';

const textEncoder = new TextEncoder();
const asciiDecoder = new TextDecoder('latin1');

/** WebCrypto, or a clear error where the page is not a secure context. */
export function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error('WebCrypto (crypto.subtle) is unavailable: browsers only provide it on https:// or http://localhost pages');
  }
  return s;
}

// ---------------------------------------------------------------------------
// Small byte helpers

/** Standard base64 with '=' padding (the only alphabet the protocol uses). */
export function base64Encode(bytes) {
  // btoa takes a "binary string"; build it in slices to stay clear of argument limits.
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** Inverse of base64Encode; throws on text that is not base64. */
export function base64Decode(text) {
  const bin = atob(typeof text === 'string' ? text : asciiDecoder.decode(text));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function hexEncode(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export function hexDecode(hex) {
  if (hex.length % 2) throw new Error('odd-length hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lowercase hex MD5 of bytes or of a string's UTF-8 bytes. */
export function md5Hex(data) {
  return hexEncode(md5(typeof data === 'string' ? textEncoder.encode(data) : data));
}

function concatBytes(parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// X25519 (§5.1)

// PKCS#8 wrapping of a raw 32-byte X25519 private key: WebCrypto cannot import a raw
// private key, only PKCS#8 (or JWK). Used to load fixed keys (test vectors).
const PKCS8_X25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);

/**
 * A fresh key pair for one connection.
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>} publicKey is the raw 32 bytes
 */
export async function generateKeyPair() {
  const pair = await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const publicKey = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

/** Imports a raw 32-byte private key (RFC 7748 form) and computes its public key. */
export async function importKeyPair(privateRaw) {
  const pkcs8 = concatBytes([PKCS8_X25519_PREFIX, privateRaw]);
  // Extractable so the public half can be read back through JWK.
  const privateKey = await subtle().importKey('pkcs8', pkcs8, { name: 'X25519' }, true, ['deriveBits']);
  const jwk = await subtle().exportKey('jwk', privateKey);
  const publicKey = base64Decode(jwk.x.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (jwk.x.length % 4)) % 4));
  return { privateKey, publicKey };
}

/**
 * The 32-byte shared secret X25519(ourPrivate, theirPublic).
 * WebCrypto refuses a low-order peer key (all-zero secret), which is what we want:
 * such a "secret" would be known to anyone.
 */
export async function deriveSharedSecret(privateKey, peerPublicRaw) {
  if (peerPublicRaw.length < 32) throw new Error(`peer public key has ${peerPublicRaw.length} bytes, need 32`);
  const peer = await subtle().importKey('raw', peerPublicRaw.subarray(0, 32), { name: 'X25519' }, false, []);
  return new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: peer }, privateKey, 256));
}

// ---------------------------------------------------------------------------
// AES key and IV (§5.2)

/**
 * aes_key = first 16 characters of md5_hex(base64(secret)); those ASCII characters
 * themselves are the 16 key bytes.
 */
export function deriveAesKey(secret) {
  const h = md5Hex(base64Encode(secret));
  return textEncoder.encode(h.slice(0, 16));
}

/**
 * The encryption state of one connection: key and IV, used for every payload and
 * every MsgKey, in both directions.
 */
export class CipherSession {
  /**
   * @param {CryptoKey} key AES-CBC key
   * @param {Uint8Array} iv the 16 ASCII bytes of CONNACK.salt
   */
  constructor(key, iv) {
    this.key = key;
    this.iv = iv;
  }

  /** From the raw 16 key bytes and the salt string (or its bytes). */
  static async create(aesKeyBytes, salt) {
    const iv = typeof salt === 'string' ? textEncoder.encode(salt) : salt;
    if (aesKeyBytes.length !== 16) throw new Error(`AES key must be 16 bytes, got ${aesKeyBytes.length}`);
    if (iv.length !== 16) throw new Error(`salt (IV) must be 16 bytes, got ${iv.length}`);
    const key = await subtle().importKey('raw', aesKeyBytes, { name: 'AES-CBC' }, false, ['encrypt', 'decrypt']);
    return new CipherSession(key, iv);
  }

  /** Client side of the handshake: our key pair + the CONNACK's server_key and salt. */
  static async fromHandshake(privateKey, serverKeyBase64, salt) {
    const secret = await deriveSharedSecret(privateKey, base64Decode(serverKeyBase64));
    return CipherSession.create(deriveAesKey(secret), salt);
  }

  /** AES-128-CBC with PKCS#7 padding (WebCrypto pads and unpads). */
  async encryptRaw(plain) {
    return new Uint8Array(await subtle().encrypt({ name: 'AES-CBC', iv: this.iv }, this.key, plain));
  }

  /** The wire form of a payload: the base64 text of the ciphertext, as bytes (§5.3). */
  async encryptPayload(plain) {
    const bytes = typeof plain === 'string' ? textEncoder.encode(plain) : plain;
    return textEncoder.encode(base64Encode(await this.encryptRaw(bytes)));
  }

  /**
   * Reverses encryptPayload. WebCrypto checks the padding strictly (pad byte 1..16,
   * all pad bytes equal, length a non-zero multiple of 16), as §5.3 requires.
   * @throws when the payload is not base64 or does not decrypt
   */
  async decryptPayload(wire) {
    const cipher = base64Decode(wire);
    if (cipher.length === 0 || cipher.length % 16 !== 0) {
      throw new Error(`ciphertext length ${cipher.length} is not a non-zero multiple of 16`);
    }
    return new Uint8Array(await subtle().decrypt({ name: 'AES-CBC', iv: this.iv }, this.key, cipher));
  }

  /** msgkey = md5_hex(base64(AES-CBC(sign))) for a sign string given as bytes. */
  async msgKeyOf(signBytes) {
    return md5Hex(base64Encode(await this.encryptRaw(signBytes)));
  }

  /** MsgKey of a SEND (§5.4); `payload` is the wire payload (base64 ciphertext). */
  async sendMsgKey(p) {
    return this.msgKeyOf(sendSignBytes(p));
  }

  /** MsgKey of a RECV (§5.5); `payload` is the wire payload. */
  async recvMsgKey(p) {
    return this.msgKeyOf(recvSignBytes(p));
  }

  /** True when a RECV's msg_key is the one the server must have computed. */
  async checkRecvMsgKey(p) {
    return (await this.recvMsgKey(p)) === p.msg_key;
  }
}

/** dec(client_seq) ‖ client_msg_no ‖ channel_id ‖ dec(channel_type) ‖ payload */
export function sendSignBytes(p) {
  const head = `${p.client_seq}${p.client_msg_no ?? ''}${p.channel_id}${p.channel_type}`;
  return concatBytes([textEncoder.encode(head), p.payload]);
}

/**
 * dec(message_id) ‖ dec(message_seq) ‖ client_msg_no ‖ dec(timestamp) ‖ from_uid
 * ‖ channel_id ‖ dec(channel_type) ‖ payload — note from_uid before channel_id,
 * unlike the wire order.
 */
export function recvSignBytes(p) {
  const head =
    `${BigInt(p.message_id)}${p.message_seq}${p.client_msg_no ?? ''}${p.timestamp}` +
    `${p.from_uid}${p.channel_id}${p.channel_type}`;
  return concatBytes([textEncoder.encode(head), p.payload]);
}
