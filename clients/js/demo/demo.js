// The demo chat page: one LimaoClient, a login form, a message list with the delivery
// state of your own messages, and "Load history" through POST /channel/messagesync on
// this page's origin (the server's HTTP listener serves this page under /demo/).
//
// Every control and message element has a data-testid so test/browser.test.js can
// drive the page.

const $ = (id) => document.getElementById(id);
const textDecoder = new TextDecoder();

/** A message in the list as the payload convention of PROTOCOL.md §11 suggests. */
function payloadFor(text) {
  return JSON.stringify({ type: 1, content: text });
}

/** Shows a text message's `content`, anything else as the raw text. */
function displayText(bytes) {
  const raw = textDecoder.decode(bytes);
  try {
    const obj = JSON.parse(raw);
    if (obj && obj.type === 1 && typeof obj.content === 'string') return obj.content;
  } catch {
    // not JSON: show as is
  }
  return raw;
}

function base64ToBytes(b64) {
  const bin = atob(b64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function showError(message) {
  const li = document.createElement('li');
  li.dataset.testid = 'error-item';
  li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $('errors').prepend(li);
}

function showState(state, detail = '') {
  const el = $('conn-state');
  el.dataset.state = state;
  el.textContent = detail ? `${state}: ${detail}` : state;
  const busy = state !== 'idle' && state !== 'closed';
  $('connect-btn').disabled = busy;
  $('disconnect-btn').disabled = !busy;
  $('send-btn').disabled = state !== 'connected';
}

// ---------------------------------------------------------------------------
// The message list

/**
 * Adds one message element. `direction` is 'out' (mine) or 'in'; `origin` is 'live'
 * or 'history'; `state` is sending | sent | failed | received | stored.
 */
function addMessage({ direction, origin = 'live', state, text, from, channel, seq, clientMsgNo, time }) {
  const li = document.createElement('li');
  li.dataset.testid = 'message';
  li.dataset.direction = direction;
  li.dataset.origin = origin;
  if (clientMsgNo) li.dataset.clientMsgNo = clientMsgNo;

  const body = document.createElement('span');
  body.dataset.testid = 'message-text';
  body.className = 'text';
  body.textContent = text;

  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.dataset.testid = 'message-meta';
  meta.textContent = `${from} → ${channel}${time ? ` · ${time}` : ''}`;

  const status = document.createElement('span');
  status.className = 'status';
  status.dataset.testid = 'message-status';
  meta.append(' · ', status);

  li.append(body, meta);
  setMessageState(li, state, seq);
  const list = $('messages');
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

/** Updates the delivery state shown on a message element. */
function setMessageState(li, state, seq, reason) {
  li.dataset.state = state;
  if (seq !== undefined && seq !== null) li.dataset.messageSeq = String(seq);
  const status = li.querySelector('[data-testid="message-status"]');
  status.dataset.state = state;
  status.textContent = {
    sending: 'sending…',
    sent: `sent · seq ${seq}`,
    failed: `failed${reason !== undefined ? ` · reason ${reason}` : ''}`,
    received: `received · seq ${seq}`,
    stored: `stored · seq ${seq}`,
  }[state];
}

// ---------------------------------------------------------------------------
// Wiring

function start({ LimaoClient, newClientMsgNo }) {
  const client = new LimaoClient();
  let myUid = null;

  client.on('state', (s) => showState(s));
  client.on('connected', (info) => showState('connected', `${info.uid} (v${info.version})`));
  client.on('reconnecting', (r) => showState('reconnecting', `attempt ${r.attempt} in ${(r.delayMs / 1000).toFixed(1)} s`));
  client.on('disconnected', (d) => {
    if (d.wasConnected) showError(`disconnected: ${d.reason}`);
  });
  client.on('kicked', (k) => showError(`kicked by the server: ${k.reason} (reason code ${k.reason_code})`));
  client.on('error', (e) => showError(e.code ? `${e.code}: ${e.message}` : e.message));
  client.on('message', (m) => {
    addMessage({
      direction: 'in',
      state: 'received',
      text: displayText(m.payload),
      from: m.from_uid,
      channel: m.channel_type === 1 ? 'me' : m.channel_id,
      seq: m.message_seq,
      clientMsgNo: m.client_msg_no,
      time: new Date(m.timestamp * 1000).toLocaleTimeString(),
    });
  });

  // Same host as the page (location.hostname keeps an IPv6 address's brackets), the
  // server's default WebSocket port.
  $('ws-url').value = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname || '127.0.0.1'}:2122`;

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    myUid = $('uid').value.trim();
    try {
      await client.connect($('ws-url').value.trim(), myUid, $('token').value, Number($('device-flag').value));
    } catch (err) {
      showError(`connect failed: ${err.message}`);
    }
  });

  $('disconnect-btn').addEventListener('click', () => client.close());

  $('send-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = $('message-input').value;
    if (!text) return;
    const peer = $('peer').value.trim();
    const channelType = Number($('channel-type').value);
    const clientMsgNo = newClientMsgNo();
    const li = addMessage({ direction: 'out', state: 'sending', text, from: myUid, channel: peer, clientMsgNo });
    $('message-input').value = '';
    try {
      const ack = await client.send(peer, channelType, payloadFor(text), { clientMsgNo });
      if (ack.reason_code === 1) setMessageState(li, 'sent', ack.message_seq);
      else setMessageState(li, 'failed', ack.message_seq, ack.reason_code);
    } catch (err) {
      setMessageState(li, 'failed');
      showError(`send failed: ${err.message}`);
    }
  });

  $('history-btn').addEventListener('click', () => loadHistory(myUid ?? $('uid').value.trim()));
}

/** POST /channel/messagesync on this origin; renders the messages it returns. */
async function loadHistory(uid) {
  const status = $('history-status');
  const peer = $('peer').value.trim();
  const headers = { 'Content-Type': 'application/json' };
  const secret = $('api-secret').value;
  if (secret) headers.Authorization = `Bearer ${secret}`;
  status.textContent = 'loading…';
  status.dataset.state = 'loading';
  try {
    const res = await fetch('/channel/messagesync', {
      method: 'POST',
      headers,
      body: JSON.stringify({ login_uid: uid, channel_id: peer, channel_type: Number($('channel-type').value), limit: 20 }),
    });
    const body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.slice(0, 200)}`);
    const { messages = [] } = JSON.parse(body);
    for (const m of messages) {
      addMessage({
        direction: m.from_uid === uid ? 'out' : 'in',
        origin: 'history',
        state: 'stored',
        text: displayText(base64ToBytes(m.payload)),
        from: m.from_uid,
        channel: m.channel_id,
        seq: m.message_seq,
        clientMsgNo: m.client_msg_no,
        time: new Date(m.timestamp * 1000).toLocaleTimeString(),
      });
    }
    status.textContent = `${messages.length} message(s) from history`;
    status.dataset.state = 'done';
  } catch (err) {
    status.textContent = 'failed';
    status.dataset.state = 'failed';
    showError(`load history: ${err.message}`);
  }
}

// WebCrypto exists only in secure contexts (https, localhost): say so instead of
// failing at the first key exchange.
if (!globalThis.crypto?.subtle) {
  $('insecure').hidden = false;
  showState('closed', 'needs https or localhost');
  $('connect-btn').disabled = true;
} else {
  // A dynamic import, so that a missing module shows up on the page rather than only
  // in the console.
  import('./src/client.js')
    .then((mod) => {
      start(mod);
      showState('idle');
      document.body.dataset.ready = 'true';
    })
    .catch((err) => showError(`cannot load the client modules: ${err.message}`));
}
