// A minimal app on WuKongIM's published JS SDK (wukongimjssdk, unmodified), as the
// tests drive it. It is bundled with the SDK by esbuild (helpers/bundle.js) and runs
// where the SDK runs: in Node (one module instance per SDK: the SDK is a singleton)
// and in a Chromium page. Every function returns plain data, so a test can call it
// through page.evaluate() as well as directly.
//
// The SDK leaves the data an app shows to callbacks (conversation list, channel
// history); here they call limaoim's HTTP API through `api(method, path, body)`,
// which the host provides (in a real app: the app's own backend, which holds the
// API secret), and map LiMaoIM's JSON (SERVER.md §16) to the SDK's models.

import WKSDK from 'wukongimjssdk';
import { ConnectStatus } from 'wukongimjssdk/lib/connect_manager';
import { Channel, Conversation, Message, MessageText, PullMode } from 'wukongimjssdk/lib/model';

const CHANNEL_PERSON = 1; // WuKongIM's ChannelTypePerson (1.0.4 exports no constant)

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function base64Bytes(b64) {
  const bin = atob(b64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The SDK's content object for a payload, as the SDK itself decodes a RECV's. */
function decodeContent(sdk, payload) {
  const type = JSON.parse(new TextDecoder().decode(payload)).type;
  const content = sdk.getMessageContent(type);
  content.decode(payload);
  return content;
}

/** A MessageResp (SERVER.md §16.0) as the SDK's Message in `channel`. */
function toMessage(sdk, resp, channel) {
  const m = new Message();
  m.header.noPersist = resp.header.no_persist === 1;
  m.header.reddot = resp.header.red_dot === 1;
  m.header.syncOnce = resp.header.sync_once === 1;
  m.messageID = resp.message_idstr;
  m.messageSeq = resp.message_seq;
  m.clientMsgNo = resp.client_msg_no;
  m.fromUID = resp.from_uid;
  // A stored person message names the recipient as channel_id; the app's view is the
  // chat it asked for.
  m.channel = channel;
  m.timestamp = resp.timestamp;
  m.content = decodeContent(sdk, base64Bytes(resp.payload));
  return m;
}

/** A message as plain data for the tests. */
function plain(m) {
  return {
    text: m.content?.text,
    contentType: m.contentType,
    fromUID: m.fromUID,
    channelID: m.channel.channelID,
    channelType: m.channel.channelType,
    messageID: m.messageID === undefined ? undefined : String(m.messageID),
    messageSeq: m.messageSeq,
    clientMsgNo: m.clientMsgNo,
  };
}

/**
 * The SDK's history callback on LiMaoIM's API. WuKongIM's SyncOptions: pull down
 * (older) from startMessageSeq inclusive to endMessageSeq exclusive, or up (newer);
 * start 0 pulling down means the newest `limit`.
 */
async function syncHistory(sdk, api, uid, channel, opts) {
  const { startMessageSeq: start, endMessageSeq: end, limit, pullMode } = opts;
  let list;
  if (pullMode === PullMode.Up) {
    const page = await api('POST', '/channel/messagesync', {
      login_uid: uid, channel_id: channel.channelID, channel_type: channel.channelType,
      min_message_seq: Math.max(0, start - 1), max_message_seq: end, limit, reverse: 1,
    });
    list = page.messages;
  } else if (start === 0) {
    const [chat] = await api('POST', '/conversation/syncMessages', {
      uid, channels: [{ channel_id: channel.channelID, channel_type: channel.channelType, last_msg_seq: 0 }], msg_count: limit,
    });
    list = chat.messages.reverse(); // newest first there
  } else {
    const page = await api('POST', '/channel/messagesync', {
      login_uid: uid, channel_id: channel.channelID, channel_type: channel.channelType,
      min_message_seq: 0, max_message_seq: start + 1, limit, reverse: 0,
    });
    list = page.messages.filter((m) => m.message_seq > end);
  }
  return list.map((resp) => toMessage(sdk, resp, channel));
}

/**
 * @param {(method: string, path: string, body?: object) => Promise<any>} api
 *   limaoim's HTTP API, as the host reaches it
 */
export function createApp(api) {
  const sdk = WKSDK.shared();
  const statuses = []; // every status change the SDK reported: {status, reasonCode}
  const received = []; // messages that arrived (RECV), not our own sends
  const acks = new Map(); // clientSeq → SENDACK
  const waiters = new Set();
  const wake = () => waiters.forEach((w) => w());
  const until = (test, ms, what) => {
    let check;
    return withTimeout(new Promise((resolve) => {
      check = () => {
        const value = test();
        if (value !== undefined) resolve(value);
      };
      waiters.add(check);
      check();
    }), ms, what).finally(() => waiters.delete(check));
  };

  sdk.connectManager.addConnectStatusListener((status, reasonCode) => {
    statuses.push({ status: ConnectStatus[status], reasonCode });
    // After a DISCONNECT or a refused CONNECT the SDK does not reconnect, but keeps
    // the socket until the server closes it, and that close would mark a later
    // connection lost. An app stops the old one for good here.
    if (status === ConnectStatus.ConnectKick || status === ConnectStatus.ConnectFail) sdk.disconnect();
    wake();
  });
  sdk.chatManager.addMessageListener((m) => {
    if (m.messageID !== undefined) received.push(m); // sends are announced too, without an id
    wake();
  });
  sdk.chatManager.addMessageStatusListener((ack) => {
    acks.set(ack.clientSeq, ack);
    wake();
  });

  const provider = sdk.config.provider;
  provider.syncConversationsCallback = async () => {
    const list = await api('GET', `/conversations?uid=${encodeURIComponent(sdk.config.uid)}`);
    return list.map((c) => {
      const conversation = new Conversation();
      conversation.channel = new Channel(c.channel_id, c.channel_type);
      conversation.unread = c.unread;
      conversation.timestamp = c.timestamp;
      if (c.last_message) conversation.lastMessage = toMessage(sdk, c.last_message, conversation.channel);
      return conversation;
    });
  };
  provider.syncMessagesCallback = (channel, opts) => syncHistory(sdk, api, sdk.config.uid, channel, opts);

  let readFrom = 0; // received[readFrom] is the next one nextMessage() returns

  return {
    /** Connects; resolves with the first result: Connected, or ConnectFail and its reason. */
    async login({ addr, uid, token, heartbeatMs = 60_000, timeoutMs = 5000 }) {
      Object.assign(sdk.config, { addr, uid, token, heartbeatInterval: heartbeatMs });
      return this.reconnect(timeoutMs);
    },

    async reconnect(timeoutMs = 5000) {
      const seen = statuses.length;
      sdk.connectManager.connect();
      return until(() => statuses.slice(seen).find((s) => s.status === 'Connected' || s.status === 'ConnectFail'),
        timeoutMs, `login of ${sdk.config.uid}`);
    },

    /** Resolves with the first status change named `status` after the `since`-th. */
    waitStatus(status, timeoutMs = 5000, since = statuses.length) {
      return until(() => statuses.slice(since).find((s) => s.status === status), timeoutMs, `status ${status} of ${sdk.config.uid}`);
    },

    state() {
      return {
        status: ConnectStatus[sdk.connectManager.status],
        statuses: statuses.slice(),
        pingRetryCount: sdk.connectManager.pingRetryCount,
      };
    },

    /** Sends a text to a person; resolves with its SENDACK. */
    async sendText(peer, text, timeoutMs = 5000) {
      const message = await sdk.chatManager.send(new MessageText(text), new Channel(peer, CHANNEL_PERSON));
      const ack = await until(() => acks.get(message.clientSeq), timeoutMs, `SENDACK of "${text}"`);
      return {
        clientSeq: ack.clientSeq,
        clientMsgNo: message.clientMsgNo,
        messageID: ack.messageID.toString(),
        messageSeq: ack.messageSeq,
        reasonCode: ack.reasonCode,
      };
    },

    /** The next message received live. */
    async nextMessage(timeoutMs = 5000) {
      const m = await until(() => received[readFrom], timeoutMs, `a message for ${sdk.config.uid}`);
      readFrom++;
      return plain(m);
    },

    /** The conversation list through syncConversationsCallback. */
    async syncConversations() {
      const list = await sdk.conversationManager.sync({});
      return list.map((c) => ({
        channelID: c.channel.channelID,
        channelType: c.channel.channelType,
        unread: c.unread,
        lastMessage: c.lastMessage ? plain(c.lastMessage) : null,
      }));
    },

    /** A page of a person chat's history through syncMessagesCallback. */
    async syncMessages(peer, { startMessageSeq = 0, endMessageSeq = 0, limit = 30, pullMode = PullMode.Down } = {}) {
      const list = await sdk.chatManager.syncMessages(new Channel(peer, CHANNEL_PERSON),
        { startMessageSeq, endMessageSeq, limit, pullMode });
      return list.map(plain);
    },

    disconnect() {
      sdk.disconnect();
    },
  };
}
