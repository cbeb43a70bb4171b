// The demo's second page: the same chat on WuKongIM's published JS SDK, unmodified
// (bundled by clients/wksdk/demo/build.js, served as /demo/vendor/wksdk.js), over the
// server's WuKongIM listener. The SDK is a singleton: one login per page.

import { WKSDK, Channel, MessageText, ConnectStatus } from '/demo/vendor/wksdk.js';

const CHANNEL_PERSON = 1;
const $ = (id) => document.getElementById(id);
const sdk = WKSDK.shared();
const outgoing = new Map(); // clientSeq → its list item, until the SENDACK

function showError(text) {
  const li = document.createElement('li');
  li.dataset.testid = 'error-item';
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('errors').prepend(li);
}

function setState(name) {
  const el = $('conn-state');
  // demo.css colours LiMaoIM's names; the SDK's map onto them.
  el.dataset.state = { Connected: 'connected', Connecting: 'connecting' }[name] ?? 'closed';
  el.dataset.sdkStatus = name;
  el.textContent = name;
  const connected = name === 'Connected';
  $('send-btn').disabled = !connected;
  $('disconnect-btn').disabled = !connected;
}

function addMessage(m, direction) {
  const li = document.createElement('li');
  li.dataset.testid = 'message';
  li.dataset.direction = direction;
  const body = document.createElement('span');
  body.dataset.testid = 'message-text';
  body.textContent = m.content?.text ?? `[content type ${m.contentType}]`;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = direction === 'in' ? `from ${m.fromUID}` : `to ${m.channel.channelID}`;
  const status = document.createElement('span');
  status.className = 'status';
  status.dataset.testid = 'message-status';
  li.append(body, meta, status);
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

function setMessageState(li, state, seq) {
  li.dataset.state = state;
  if (seq) li.dataset.messageSeq = String(seq);
  const status = li.querySelector('.status');
  status.dataset.state = state;
  status.textContent = seq ? `${state} #${seq}` : state;
}

sdk.connectManager.addConnectStatusListener((status, reasonCode) => {
  const name = ConnectStatus[status];
  setState(name);
  // Refused or kicked: the SDK will not reconnect but keeps the socket until the
  // server closes it; stop it here so that a later Connect is not undone by that close.
  if (status === ConnectStatus.ConnectFail || status === ConnectStatus.ConnectKick) {
    sdk.disconnect();
    showError(status === ConnectStatus.ConnectKick ? `logged in elsewhere (DISCONNECT ${reasonCode})` : `login refused (CONNACK ${reasonCode})`);
  }
});

sdk.chatManager.addMessageListener((m) => {
  if (m.messageID === undefined) {
    const li = addMessage(m, 'out'); // our send, announced before its SENDACK
    setMessageState(li, 'sending');
    outgoing.set(m.clientSeq, li);
  } else {
    setMessageState(addMessage(m, 'in'), 'received', m.messageSeq);
  }
});

sdk.chatManager.addMessageStatusListener((ack) => {
  const li = outgoing.get(ack.clientSeq);
  if (!li) return;
  outgoing.delete(ack.clientSeq);
  setMessageState(li, ack.reasonCode === 1 ? 'sent' : 'failed', ack.messageSeq);
  if (ack.reasonCode !== 1) showError(`SENDACK reason ${ack.reasonCode}`);
});

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sdk.disconnect(); // a previous login's socket, if any
  Object.assign(sdk.config, { addr: $('ws-url').value.trim(), uid: $('uid').value.trim(), token: $('token').value });
  setState('Connecting');
  sdk.connectManager.connect();
});

$('disconnect-btn').addEventListener('click', () => {
  sdk.disconnect();
  setState('Disconnect');
});

$('send-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('message-input').value;
  if (!text) return;
  sdk.chatManager.send(new MessageText(text), new Channel($('peer').value.trim(), CHANNEL_PERSON));
  $('message-input').value = '';
});

$('ws-url').value = `ws://${location.hostname || '127.0.0.1'}:5200`;
document.body.dataset.ready = 'true';
