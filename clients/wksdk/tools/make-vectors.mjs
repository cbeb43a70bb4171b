// Writes tests/vectors/wkproto/sdk.json: WKProto packets as WuKongIM's own
// JavaScript SDK (the wukongimjssdk pinned in ../package.json) puts them on
// the wire and reads them.
//
//   client -> server (CONNECT, SEND, RECVACK, SUB, PING): built as the SDK's
//     objects and encoded by the SDK's Proto.encode; SEND is sealed by the
//     SDK's SecurityManager with the session below, so its msg_key verifies.
//   server -> client (CONNACK, SENDACK, RECV, DISCONNECT, SUBACK, PONG): the
//     SDK has no encoder for these, so the bytes are built here field by field
//     with the SDK's own Encoder in the WuKongIM server's order, then decoded
//     by the SDK's Proto.decode; the fields recorded are what the SDK read,
//     and the script fails unless they are what was written and the SDK's
//     decoder used up the body exactly. RECV is sealed by the SDK's
//     SecurityManager, and the script checks the SDK's own msg_key check and
//     decryption pass on it, as its ChatManager runs them.
//
// Run: npm ci && npm run vectors   (from clients/wksdk)
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

register('./sdk-loader.mjs', import.meta.url);

const here = dirname(fileURLToPath(import.meta.url));
const sdkPackage = JSON.parse(readFileSync(join(here, '../node_modules/wukongimjssdk/package.json'), 'utf8'));
const proto = await import('wukongimjssdk/lib/proto.js');
const { default: Encoder } = await import('wukongimjssdk/lib/encoder.js');
const { SecurityManager } = await import('wukongimjssdk/lib/security.js');
const { Md5 } = await import('md5-typescript');
const { default: BigNumber } = await import('bignumber.js');

const Proto = proto.default;
const { PacketType, Setting } = proto;
const codec = new Proto();

// The session of tests/vectors/crypto.json (its AES key and IV).
const session = { aes_key: '0c15fdbf4d09bc6c', aes_iv: 'a1B2c3D4e5F6g7H8' };
SecurityManager.shared().aesKey = session.aes_key;
SecurityManager.shared().aesIV = session.aes_iv;

// wukongimjssdk 1.0.4 sends version 2 in CONNECT (its config.protoVersion) and
// reads every server packet at version 2: no expire, no server version, no
// node id.
const kVersion = 2;
const kTypeNames = { 1: 'CONNECT', 2: 'CONNACK', 3: 'SEND', 4: 'SENDACK', 5: 'RECV', 6: 'RECVACK', 7: 'PING', 8: 'PONG', 9: 'DISCONNECT', 10: 'SUB', 11: 'SUBACK' };

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const text = (s) => Buffer.from(s, 'utf8');

function flagsOf(header) {
    return { dup: !!(header & 8), sync_once: !!(header & 4), red_dot: !!(header & 2), no_persist: !!(header & 1) };
}

// Remaining length of a whole packet, from the SDK's own framer.
function remainingLength(wire) {
    const header = wire[0] >> 4;
    if (header === PacketType.PING || header === PacketType.PONG) return null;
    let length = 0;
    for (let i = 1, shift = 0; ; ++i, shift += 7) {
        length |= (wire[i] & 0x7f) << shift;
        if (!(wire[i] & 0x80)) return length;
    }
}

function vector(name, direction, wire, fields, extra = {}) {
    const type = kTypeNames[wire[0] >> 4];
    const withFlags = type === 'PING' || type === 'PONG' ? fields : { flags: flagsOf(wire[0]), ...fields };
    return { name, type, version: kVersion, direction, ...extra, fields: withFlags, remaining_length: remainingLength(wire), hex: hex(wire) };
}

// The SDK's Proto.encode of a client packet.
function encodedBySdk(packet) {
    return Uint8Array.from(codec.encode(packet));
}

// A server packet: `write` fills the body with the SDK's Encoder; the frame
// header comes from the SDK's framer.
function serverPacket(type, header, write) {
    const body = new Encoder();
    write(body);
    const framer = new proto.Packet();
    framer.packetType = type;
    framer.noPersist = !!(header & 1);
    framer.reddot = !!(header & 2);
    framer.syncOnce = !!(header & 4);
    framer.dup = !!(header & 8);
    return Uint8Array.from([...codec.encodeFramer(framer, body.w.length), ...body.toUint8Array()]);
}

function decodedBySdk(wire) {
    const packet = codec.decode(wire);
    return packet;
}

const vectors = [];

// --- client -> server ---------------------------------------------------------

{
    const p = new proto.ConnectPacket();
    Object.assign(p, { version: kVersion, deviceFlag: 1, deviceID: 'dev-001W', uid: 'alice', token: 'tok-alice', clientTimestamp: 1700000000123, clientKey: 'nwcy/GrkNKxR9chKeK/qoeOwJNhJ/k6AXTa8qwC0o2Y=' });
    const wire = encodedBySdk(p);
    vectors.push(vector('CONNECT (web, as the SDK sends it)', 'client->server', wire, {
        version: kVersion, device_flag: 1, device_id: p.deviceID, uid: p.uid, token: p.token, client_timestamp: p.clientTimestamp, client_key: p.clientKey,
    }));
}

function sendVector(name, configure, plain) {
    const p = new proto.SendPacket();
    p.setting = new Setting();
    Object.assign(p, { clientSeq: 7, clientMsgNo: 'cmn-0001', channelID: 'bob', channelType: 1, payload: text(plain) });
    configure(p);
    const wire = encodedBySdk(p);
    // Read back the sealed payload and msg_key the SDK wrote: the msg_key is the
    // last string before the topic and payload.
    const settingByte = p.setting.toUint8();
    const sealed = Buffer.from(SecurityManager.shared().encryption2(text(plain)), 'latin1');
    assert.equal(hex(wire.slice(wire.length - sealed.length)), hex(sealed));
    const msgKey = Md5.init(SecurityManager.shared().encryption(p.veritifyString(sealed)));
    const fields = { setting: settingByte, client_seq: p.clientSeq, client_msg_no: p.clientMsgNo, channel_id: p.channelID, channel_type: p.channelType, msg_key: msgKey };
    if (p.setting.topic) fields.topic = p.topic;
    fields.payload_hex = hex(sealed);
    fields.payload_text = sealed.toString('latin1');
    vectors.push(vector(name, 'client->server', wire, fields, { plain_payload_text: plain }));
}

sendVector('SEND (sealed)', () => {}, '{"type":1,"content":"hello"}');
sendVector('SEND with receipt and topic (sealed)', (p) => {
    p.setting.receiptEnabled = true;
    p.setting.topic = true;
    p.topic = 'news';
}, '{"type":1,"content":"你好"}');

{
    const p = new proto.RecvackPacket();
    Object.assign(p, { messageID: '1234567890123456789', messageSeq: 42 });
    const wire = encodedBySdk(p);
    vectors.push(vector('RECVACK', 'client->server', wire, { message_id: 1234567890123456789n, message_seq: 42 }));
}

{
    // As ChannelManager.sendSubscribe builds it: no setting, no sub number.
    const p = new proto.SubPacket();
    Object.assign(p, { channelID: 'live-1', channelType: 9, action: 0, param: '{"k":"v"}' });
    const wire = encodedBySdk(p);
    vectors.push(vector('SUB (as ChannelManager sends it)', 'client->server', wire, { setting: 0, sub_no: '', channel_id: 'live-1', channel_type: 9, action: 0, param: '{"k":"v"}' }));
}

vectors.push(vector('PING', 'client->server', encodedBySdk(new proto.PingPacket()), {}));

// --- server -> client ---------------------------------------------------------

{
    const wire = serverPacket(PacketType.CONNACK, 0, (e) => {
        e.writeInt64(new BigNumber(1500));
        e.writeByte(1);
        e.writeString('3p7ZTfwmTJM/o8K2Wl7V9nK5+4EWV3Vrh/l9gNhdGHs=');
        e.writeString('a1B2c3D4e5F6g7H8');
    });
    const p = decodedBySdk(wire);
    assert.equal(p.reasonCode, 1);
    vectors.push(vector('CONNACK (no server version: what a version-2 client reads)', 'server->client', wire, {
        time_diff: p.timeDiff.toNumber(), reason_code: p.reasonCode, server_key: p.serverKey, salt: p.salt,
    }));
}

{
    const wire = serverPacket(PacketType.SENDACK, 0, (e) => {
        e.writeInt64(new BigNumber('1234567890123456789'));
        e.writeInt32(7);
        e.writeInt32(42);
        e.writeByte(1);
    });
    const p = decodedBySdk(wire);
    assert.deepEqual([p.messageID.toFixed(), p.clientSeq, p.messageSeq, p.reasonCode], ['1234567890123456789', 7, 42, 1]);
    vectors.push(vector('SENDACK', 'server->client', wire, { message_id: BigInt(p.messageID.toFixed()), client_seq: p.clientSeq, message_seq: p.messageSeq, reason_code: p.reasonCode }));
}

function recvVector(name, header, settingByte, topic, plain) {
    const sealed = Buffer.from(SecurityManager.shared().encryption2(text(plain)), 'latin1');
    const r = new proto.RecvPacket();
    Object.assign(r, { messageID: '1234567890123456789', messageSeq: 42, clientMsgNo: 'cmn-0001', timestamp: 1700000000, fromUID: 'alice', channelID: 'alice', channelType: 1, payload: sealed });
    const msgKey = Md5.init(SecurityManager.shared().encryption(r.veritifyString));
    const wire = serverPacket(PacketType.RECV, header, (e) => {
        e.writeByte(settingByte);
        e.writeString(msgKey);
        e.writeString(r.fromUID);
        e.writeString(r.channelID);
        e.writeByte(r.channelType);
        e.writeString(r.clientMsgNo);
        e.writeInt64(new BigNumber(r.messageID));
        e.writeInt32(r.messageSeq);
        e.writeInt32(r.timestamp);
        if (topic !== undefined) e.writeString(topic);
        e.writeBytes(Array.from(sealed));
    });
    const p = decodedBySdk(wire);
    // What ChatManager.onPacket does with a RECV.
    assert.equal(Md5.init(SecurityManager.shared().encryption(p.veritifyString)), p.msgKey);
    assert.equal(Buffer.from(SecurityManager.shared().decryption(p.payload)).toString('utf8'), plain);
    assert.equal(p.topic, topic);
    const fields = {
        setting: settingByte, msg_key: p.msgKey, from_uid: p.fromUID, channel_id: p.channelID, channel_type: p.channelType,
        client_msg_no: p.clientMsgNo, message_id: BigInt(p.messageID), message_seq: p.messageSeq, timestamp: p.timestamp,
    };
    if (topic !== undefined) fields.topic = p.topic;
    fields.payload_hex = hex(p.payload);
    fields.payload_text = Buffer.from(p.payload).toString('latin1');
    vectors.push(vector(name, 'server->client', wire, fields, { plain_payload_text: plain }));
}

recvVector('RECV (sealed)', 0, 0, undefined, '{"type":1,"content":"hello"}');
recvVector('RECV red dot, receipt and topic (sealed)', 2, 0x88, 'news', '{"type":1,"content":"你好"}');

{
    const wire = serverPacket(PacketType.DISCONNECT, 0, (e) => {
        e.writeByte(12);
        e.writeString('logged in elsewhere');
    });
    const p = decodedBySdk(wire);
    vectors.push(vector('DISCONNECT (kicked)', 'server->client', wire, { reason_code: p.reasonCode, reason: p.reason }));
}

{
    const wire = serverPacket(PacketType.SUBACK, 0, (e) => {
        e.writeString('sub-1');
        e.writeString('live-1');
        e.writeByte(9);
        e.writeByte(0);
        e.writeByte(1);
    });
    const p = decodedBySdk(wire);
    vectors.push(vector('SUBACK', 'server->client', wire, { sub_no: p.clientMsgNo, channel_id: p.channelID, channel_type: p.channelType, action: p.action, reason_code: p.reasonCode }));
}

{
    const wire = Uint8Array.from([PacketType.PONG << 4]);
    assert.equal(decodedBySdk(wire).packetType, PacketType.PONG);
    vectors.push(vector('PONG', 'server->client', wire, {}));
}

// ------------------------------------------------------------------------------

const document = {
    _about: 'WKProto packets generated by clients/wksdk/tools/make-vectors.mjs with the SDK named in "sdk": client packets are its own encoder\'s output, server packets bytes its own decoder read back to exactly these fields. Same shape as tests/vectors/packets.json; "fields" lists only what is on the wire at "version". SEND/RECV payloads are sealed with "session" (the AES key and IV of crypto.json); "plain_payload_text" is what they open to. Integers are exact: parse message ids as int64. Do not edit by hand: regenerate (docs/WKPROTO.md).',
    dialect: 'wukongim',
    sdk: `wukongimjssdk@${sdkPackage.version}`,
    session,
    vectors,
};
const out = join(here, '../../../tests/vectors/wkproto');
mkdirSync(out, { recursive: true });
// BigInt message ids as bare JSON integers.
const json = JSON.stringify(document, (_, v) => (typeof v === 'bigint' ? `@@${v}@@` : v), 1).replace(/"@@(-?\d+)@@"/g, '$1');
writeFileSync(join(out, 'sdk.json'), json + '\n');
console.log(`wrote ${vectors.length} vectors to tests/vectors/wkproto/sdk.json (${document.sdk})`);
