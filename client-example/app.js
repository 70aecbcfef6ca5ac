// pgws example client: a static page, no dependencies, works offline.
//
// The token is a secret: it is never written to the page log nor to the console.
// (The browser itself may print the socket address, token included, in the
// developer console when a connection fails; no page can prevent that.)

const DEFAULT_CHANNEL = 'chat';
const NOTIFY_LIMIT = 8000; // bytes; PostgreSQL rejects NOTIFY payloads of this size or more
const MAX_ENTRIES = 500; // per pane; the oldest entries are dropped beyond this
const META_EVENTS = new Set(['ConnectionOpen', 'ConnectionClose']);

const CLOSE_CODES = {
  1000: ['normal closure', 'The connection was closed normally.'],
  1001: ['server shutting down', 'The server is going away (shutting down or restarting).'],
  1002: ['protocol error', 'An endpoint broke the WebSocket protocol.'],
  1003: ['unsupported data', 'An endpoint received a type of data it cannot accept.'],
  1005: ['no status', 'The connection closed without a status code.'],
  1006: ['abnormal closure', ''], // explained in closeExplanation()
  1007: ['invalid UTF-8', 'A frame sent to the server was not valid UTF-8.'],
  1008: ['policy violation', 'The server closed the connection for a policy violation.'],
  1009: ['message too big', `A frame was over the socket limit, or its NOTIFY envelope would reach ${NOTIFY_LIMIT} bytes.`],
  1011: ['server error', 'The server hit an error, for example the database refused the NOTIFY.'],
  1013: ['try again later', 'The server is overloaded or restarting: try again later.'],
  1015: ['TLS failure', 'The TLS handshake failed.'],
  3001: ['JWT expired', 'The token expired while the socket was open: get a new token and reconnect.'],
};

const $ = (id) => document.getElementById(id);

const ui = {
  status: $('status'),
  statusText: $('status-text'),
  connForm: $('conn-form'),
  token: $('token'),
  tokenToggle: $('token-toggle'),
  claims: $('claims'),
  claimMode: $('claim-mode'),
  claimChannels: $('claim-channels'),
  claimExp: $('claim-exp'),
  problems: $('token-problems'),
  channel: $('channel'),
  channelOptions: $('channel-options'),
  urlPreview: $('url-preview'),
  allChannels: $('all-channels'),
  connect: $('connect'),
  connDetail: $('conn-detail'),
  sendForm: $('send-form'),
  message: $('message'),
  send: $('send'),
  sendHint: $('send-hint'),
  byteCount: $('byte-count'),
};

const panes = {
  messages: makePane('messages'),
  meta: makePane('meta'),
};

/** Decoded view of the token currently in the text box. */
let tokenInfo = { claims: null, error: null, channels: [] };
/** True once the user has typed in the channel box: stop pre-filling it then. */
let channelTouched = false;
/** The live socket and what it was opened with; null when there is none. */
let session = null;

// ---------------------------------------------------------------------------
// Token handling

/** Token (and optional channel) from `#token=<jwt>[&channel=<name>]` or `#<jwt>`. */
function readFragment() {
  const raw = location.hash.replace(/^#/, '');
  if (!raw) return { token: '', channel: null };
  if (/(^|&)token=/.test(raw)) {
    const params = new URLSearchParams(raw);
    return { token: (params.get('token') ?? '').trim(), channel: params.get('channel') };
  }
  let token = raw;
  try { token = decodeURIComponent(raw); } catch { /* keep it as it is */ }
  return { token: token.trim(), channel: null };
}

function base64UrlToText(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** Claims of a JWT, decoded without any verification (display only). */
function decodeClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('This is not a JWT: it should have three parts separated by dots.');
  let claims;
  try {
    claims = JSON.parse(base64UrlToText(parts[1]));
  } catch {
    throw new Error('The token payload is not base64url-encoded JSON.');
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new Error('The token payload is not a JSON object.');
  }
  return claims;
}

/** Allowed channels as the server computes them: `channel`, then `channels`, without duplicates. */
function allowedChannels(claims) {
  const list = [];
  if (typeof claims.channel === 'string') list.push(claims.channel);
  if (Array.isArray(claims.channels)) {
    for (const c of claims.channels) if (typeof c === 'string') list.push(c);
  }
  return [...new Set(list)];
}

function describeMode(mode) {
  switch (mode) {
    case 'r': return 'r — read only';
    case 'w': return 'w — write only';
    case 'rw': return 'rw — read and write';
    default: return mode === undefined ? 'missing' : `${JSON.stringify(mode)} (invalid)`;
  }
}

function onTokenChanged() {
  const token = ui.token.value.trim();
  tokenInfo = { claims: null, error: null, channels: [] };
  if (token) {
    try {
      tokenInfo.claims = decodeClaims(token);
      tokenInfo.channels = allowedChannels(tokenInfo.claims);
    } catch (err) {
      tokenInfo.error = err.message; // our own messages: they never contain the token
    }
  }
  renderClaims();
  if (!channelTouched) ui.channel.value = tokenInfo.channels[0] ?? DEFAULT_CHANNEL;
  renderChannelOptions();
  renderTarget();
}

function renderClaims() {
  const { claims } = tokenInfo;
  ui.claims.hidden = !claims;
  if (!claims) return;
  ui.claimMode.textContent = describeMode(claims.mode);
  ui.claimMode.classList.toggle('bad', !['r', 'w', 'rw'].includes(claims.mode));

  ui.claimChannels.replaceChildren();
  if (tokenInfo.channels.length === 0) {
    ui.claimChannels.textContent = 'none (any channel may be opened by name)';
  } else {
    for (const name of tokenInfo.channels) {
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = 'chip';
      chip.textContent = name;
      chip.setAttribute('aria-label', `Use channel ${name}`);
      chip.addEventListener('click', () => {
        ui.channel.value = name;
        ui.allChannels.checked = false;
        channelTouched = true;
        renderTarget();
        ui.channel.focus();
      });
      ui.claimChannels.append(chip);
    }
  }
  renderExpiry();
}

function renderExpiry() {
  const claims = tokenInfo.claims;
  if (!claims) return;
  const { exp } = claims;
  if (exp === undefined) {
    ui.claimExp.textContent = 'never (no exp claim)';
    ui.claimExp.classList.remove('bad');
    return;
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    ui.claimExp.textContent = `${JSON.stringify(exp)} (invalid)`;
    ui.claimExp.classList.add('bad');
    return;
  }
  const left = exp - Date.now() / 1000;
  const when = formatDateTime(new Date(exp * 1000));
  ui.claimExp.textContent = left > 0
    ? `${when} (expires in ${formatDuration(left)})`
    : `${when} (expired ${formatDuration(-left)} ago)`;
  ui.claimExp.classList.toggle('bad', left <= 0);
}

/** Warnings about what the server will refuse, recomputed on every change. */
function renderProblems() {
  const problems = [];
  const { claims, error, channels } = tokenInfo;
  const now = Date.now() / 1000;
  if (error) problems.push(error);
  if (claims) {
    if (claims.mode === undefined) problems.push('The token has no "mode" claim: the server will refuse it.');
    else if (!['r', 'w', 'rw'].includes(claims.mode)) problems.push('The "mode" claim must be "r", "w" or "rw": the server will refuse it.');
    if (typeof claims.exp === 'number' && claims.exp <= now) problems.push('The token has expired: the server will refuse it.');
    if (typeof claims.nbf === 'number' && claims.nbf > now) {
      problems.push(`The token is not valid before ${formatDateTime(new Date(claims.nbf * 1000))}.`);
    }
    if (ui.allChannels.checked && channels.length === 0) {
      problems.push('"All channels" needs a token with a "channel" or "channels" claim.');
    } else if (!ui.allChannels.checked && channels.length > 0 && !channels.includes(ui.channel.value)) {
      problems.push(`The token does not allow the channel "${ui.channel.value}".`);
    }
  }
  // Rewrite the (aria-live) list only when it changes, so it is not re-announced every second.
  const key = problems.join('\n');
  if (key === ui.problems.dataset.key) return;
  ui.problems.dataset.key = key;
  ui.problems.replaceChildren(...problems.map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
  ui.problems.hidden = problems.length === 0;
}

function renderChannelOptions() {
  ui.channelOptions.replaceChildren(...tokenInfo.channels.map((name) => {
    const option = document.createElement('option');
    option.value = name;
    return option;
  }));
}

/** Path the next connection opens, with the token itself left out. */
function targetPath(redacted) {
  const token = redacted ? '<token>' : encodeURIComponent(ui.token.value.trim());
  return ui.allChannels.checked ? `/${token}` : `/${encodeURIComponent(ui.channel.value)}/${token}`;
}

function renderTarget() {
  ui.channel.disabled = ui.allChannels.checked || isActive();
  ui.urlPreview.textContent = targetPath(true);
  renderProblems();
}

// ---------------------------------------------------------------------------
// Connection

function isActive() {
  return session !== null && session.ws.readyState <= WebSocket.OPEN;
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
}

function showDetail(text, tone = 'info') {
  ui.connDetail.textContent = text;
  ui.connDetail.dataset.tone = tone;
  ui.connDetail.hidden = !text;
}

function connect() {
  const token = ui.token.value.trim();
  if (!token) {
    showDetail('Enter a token first.', 'bad');
    ui.token.focus();
    return;
  }
  const all = ui.allChannels.checked;
  const channel = ui.channel.value;
  if (!all && channel === '') {
    showDetail('Enter a channel, or tick "All channels of the token".', 'bad');
    ui.channel.focus();
    return;
  }
  if (!all && (channel === '.' || channel === '..')) {
    showDetail(`The channel "${channel}" cannot be written in a URL path.`, 'bad');
    ui.channel.focus();
    return;
  }
  if (!location.host) {
    showDetail('Open this page from the pgws server (http:// or https://) to connect.', 'bad');
    return;
  }

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const shown = `${scheme}//${location.host}${targetPath(true)}`;
  let ws;
  try {
    ws = new WebSocket(`${scheme}//${location.host}${targetPath(false)}`);
  } catch {
    // The exception text would contain the address, token included: do not show it.
    showDetail('The browser refused to open a socket to this address.', 'bad');
    return;
  }
  ws.binaryType = 'arraybuffer';
  session = {
    ws,
    opened: false,
    closing: false,
    label: all ? 'all token channels' : channel,
    channels: all ? tokenInfo.channels : [channel],
    mode: typeof tokenInfo.claims?.mode === 'string' ? tokenInfo.claims.mode : '',
    claims: tokenInfo.claims ?? {},
  };
  const current = session;

  ws.addEventListener('open', () => {
    if (session !== current) return;
    current.opened = true;
    setStatus('open', `Open · ${current.label}`);
    showDetail('');
    systemEntry(`Connected to ${shown}`);
    updateControls();
    if (!ui.message.disabled) ui.message.focus();
  });
  ws.addEventListener('message', (event) => {
    if (session !== current) return;
    const text = typeof event.data === 'string'
      ? event.data
      : new TextDecoder().decode(event.data);
    receive(text);
  });
  ws.addEventListener('close', (event) => {
    if (session !== current) return;
    onClosed(current, event);
  });
  // 'error' carries no detail in browsers; 'close' follows it and says what is known.

  setStatus('connecting', `Connecting · ${current.label}`);
  showDetail('');
  systemEntry(`Connecting to ${shown}`);
  updateControls();
}

function disconnect() {
  if (!session) return;
  session.closing = true;
  setStatus('closing', 'Closing…');
  session.ws.close(1000, 'client disconnect');
  updateControls();
}

function closeExplanation(code, opened) {
  if (code === 1006) {
    return opened
      ? 'The connection dropped without a close frame (network failure, proxy timeout, or the server stopped abruptly).'
      : 'The connection failed before it opened. Most likely the server refused the upgrade: the token is invalid, '
        + 'expired or not yet valid, its mode is missing, or it does not allow this channel — or the server is unreachable. '
        + 'Browsers do not expose the HTTP status or reason of a refused upgrade; the pgws log has it.';
  }
  return CLOSE_CODES[code]?.[1] ?? 'See RFC 6455 §7.4 or the server log for this code.';
}

function onClosed(current, event) {
  const { code } = event;
  if (current.closing && !current.opened) {
    setStatus('closed', 'Not connected · attempt cancelled');
    showDetail('');
    systemEntry('Connection attempt cancelled');
    session = null;
    updateControls();
    return;
  }
  const name = CLOSE_CODES[code]?.[0] ?? (code >= 4000 ? 'application-defined' : 'unknown code');
  const reason = event.reason ? ` — “${event.reason}”` : '';
  setStatus(code === 1000 ? 'closed' : 'error', `Closed · ${code} ${name}${reason}`);
  const explanation = closeExplanation(code, current.opened);
  const userClosed = current.closing && code === 1000;
  showDetail(userClosed ? '' : `${code} ${name}: ${explanation}`, code === 1000 ? 'info' : 'bad');
  systemEntry(`Closed: ${code} ${name}${reason}`, code === 1000 ? 'system' : 'system bad');
  session = null;
  updateControls();
}

function updateControls() {
  const active = isActive();
  ui.connect.textContent = active ? 'Disconnect' : 'Connect';
  ui.connect.classList.toggle('danger', active);
  ui.token.disabled = active;
  ui.allChannels.disabled = active;
  renderTarget();

  const open = session?.ws.readyState === WebSocket.OPEN && !session.closing;
  const writable = open && session.mode.includes('w');
  ui.message.disabled = !writable;
  ui.send.disabled = !writable || ui.message.value === '';
  if (!open) {
    ui.sendHint.textContent = 'Connect with a token whose mode includes w to send.';
  } else if (!writable) {
    ui.sendHint.textContent = `This token's mode is "${session.mode}" (read only): the server does not relay its frames.`;
  } else {
    ui.sendHint.textContent = 'Enter sends, Shift+Enter adds a line. Each frame is relayed as a NOTIFY per channel.';
  }
  updateByteCount();
}

/** Rough size of the NOTIFY envelope the server would build for this text. */
function envelopeBytes(text) {
  if (!session) return 0;
  const enc = new TextEncoder();
  let largest = 0;
  for (const channel of session.channels.length ? session.channels : ['']) {
    const envelope = JSON.stringify({
      event: 'WebsocketMessage',
      channel,
      payload: text,
      claims: { ...session.claims, message_delivered_at: Date.now() / 1000 },
    });
    largest = Math.max(largest, enc.encode(envelope).length);
  }
  return largest;
}

function updateByteCount() {
  const text = ui.message.value;
  if (!text || ui.message.disabled) {
    ui.byteCount.textContent = '';
    ui.byteCount.classList.remove('bad');
    return;
  }
  const bytes = new TextEncoder().encode(text).length;
  const envelope = envelopeBytes(text);
  const tooBig = envelope >= NOTIFY_LIMIT;
  ui.byteCount.textContent = tooBig
    ? `${bytes} bytes — too big: the envelope (≈${envelope} B) reaches the ${NOTIFY_LIMIT}-byte NOTIFY limit; the server would close with 1009`
    : `${bytes} bytes (envelope ≈${envelope} B)`;
  ui.byteCount.classList.toggle('bad', tooBig);
}

function sendMessage() {
  if (!session || ui.message.disabled) return;
  const text = ui.message.value;
  if (text === '') return;
  session.ws.send(text);
  sentEntry(text, session.label);
  ui.message.value = '';
  updateControls();
  ui.message.focus();
}

// ---------------------------------------------------------------------------
// Panes

function makePane(name) {
  const pane = {
    log: $(`${name}-log`),
    count: $(`${name}-count`),
    empty: $(`${name}-empty`),
    jump: $(`${name}-jump`),
    received: 0,
    // Follow the newest entry unless the user has scrolled up to read older ones.
    stick: true,
  };
  const nearBottom = () => pane.log.scrollHeight - pane.log.scrollTop - pane.log.clientHeight < 48;
  pane.log.addEventListener('scroll', () => {
    pane.stick = nearBottom();
    if (pane.stick) pane.jump.hidden = true;
  });
  pane.jump.addEventListener('click', () => {
    pane.stick = true;
    scrollToEnd(pane);
    pane.log.focus();
  });
  $(`${name}-clear`).addEventListener('click', () => {
    pane.log.replaceChildren();
    pane.received = 0;
    pane.count.textContent = '0';
    pane.empty.hidden = false;
    pane.jump.hidden = true;
    pane.stick = true;
  });
  return pane;
}

function scrollToEnd(pane) {
  pane.log.scrollTop = pane.log.scrollHeight;
  pane.jump.hidden = true;
}

function append(pane, li, counts = true) {
  const { log } = pane;
  log.append(li);
  while (log.childElementCount > MAX_ENTRIES) log.firstElementChild.remove();
  if (counts) pane.count.textContent = String(++pane.received);
  pane.empty.hidden = true;
  if (pane.stick) scrollToEnd(pane);
  else pane.jump.hidden = false;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeEl(date = new Date()) {
  const t = el('time', 'stamp', formatTime(date));
  t.dateTime = date.toISOString();
  t.title = formatDateTime(date);
  return t;
}

function tryJson(text) {
  const s = text.trim();
  if (!/^[[{"\d-]|^(true|false|null)$/.test(s)) return undefined;
  try { return JSON.parse(s); } catch { return undefined; }
}

/** A <pre> holding pretty-printed, lightly highlighted JSON (built from text nodes only). */
function jsonBlock(value, className = 'json') {
  const pre = el('pre', className);
  const source = JSON.stringify(value, null, 2) ?? String(value);
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  let last = 0;
  for (const m of source.matchAll(token)) {
    if (m.index > last) pre.append(source.slice(last, m.index));
    let cls = 'j-num';
    if (m[1] !== undefined) cls = m[2] ? 'j-key' : 'j-str';
    else if (m[3] !== undefined) cls = m[3] === 'null' ? 'j-null' : 'j-bool';
    pre.append(el('span', cls, m[1] !== undefined ? m[1] : m[0]));
    if (m[2]) pre.append(m[2]);
    last = m.index + m[0].length;
  }
  if (last < source.length) pre.append(source.slice(last));
  return pre;
}

/** A payload: JSON pretty-printed (also when it is JSON inside a string), else plain text. */
function payloadBlock(payload) {
  if (typeof payload === 'string') {
    const inner = tryJson(payload);
    if (inner !== undefined && typeof inner === 'object' && inner !== null) return jsonBlock(inner, 'json payload');
    return el('pre', 'text payload', payload);
  }
  return jsonBlock(payload, 'json payload');
}

function isEnvelope(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    && typeof value.channel === 'string' && 'payload' in value;
}

function claimsDetails(claims) {
  const details = el('details', 'claims-details');
  const summary = el('summary');
  const bits = ['Claims'];
  if (claims && typeof claims === 'object') {
    if (typeof claims.mode === 'string') bits.push(`mode ${claims.mode}`);
    if (typeof claims.message_delivered_at === 'number') {
      bits.push(`delivered ${formatTime(new Date(claims.message_delivered_at * 1000))}`);
    }
  }
  summary.textContent = bits.join(' · ');
  details.append(summary, jsonBlock(claims));
  return details;
}

function receive(text) {
  const value = tryJson(text);
  const li = el('li', 'entry');
  const head = el('div', 'entry-head');
  head.append(timeEl());
  li.append(head);

  if (isEnvelope(value)) {
    const meta = META_EVENTS.has(value.event);
    li.classList.add(meta ? 'meta-event' : 'envelope');
    if (typeof value.event === 'string') head.append(el('span', `badge event ev-${value.event}`, value.event));
    head.append(el('span', 'badge channel', value.channel));
    if (meta && typeof value.payload === 'string') {
      li.append(el('p', 'meta-channels', `Channels: ${value.payload.split(',').join(', ') || '—'}`));
    } else {
      li.append(payloadBlock(value.payload));
    }
    if ('claims' in value) li.append(claimsDetails(value.claims));
    const extra = Object.keys(value).filter((k) => !['event', 'channel', 'payload', 'claims'].includes(k));
    if (extra.length) {
      const raw = el('details', 'raw-details');
      raw.append(el('summary', '', 'Whole frame'), jsonBlock(value));
      li.append(raw);
    }
    append(meta ? panes.meta : panes.messages, li);
    return;
  }

  if (value !== undefined && typeof value === 'object' && value !== null) {
    li.classList.add('json-frame');
    head.append(el('span', 'badge', 'JSON'));
    li.append(jsonBlock(value));
  } else {
    li.classList.add('text-frame');
    head.append(el('span', 'badge', 'text'));
    li.append(el('pre', 'text', text));
  }
  append(panes.messages, li);
}

function sentEntry(text, label) {
  const li = el('li', 'entry sent');
  const head = el('div', 'entry-head');
  head.append(timeEl(), el('span', 'badge sent-badge', 'sent'), el('span', 'badge channel', label));
  li.append(head, el('pre', 'text', text));
  append(panes.messages, li, false);
}

/** A connection note in the messages pane. Callers pass text with the token already left out. */
function systemEntry(text, className = 'system') {
  const li = el('li', `entry ${className}`);
  li.append(timeEl(), el('span', 'note', text));
  append(panes.messages, li, false);
}

// ---------------------------------------------------------------------------
// Formatting

function formatTime(date) {
  return date.toLocaleTimeString(undefined, { hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit' })
    + '.' + String(date.getMilliseconds()).padStart(3, '0');
}

function formatDateTime(date) {
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

function formatDuration(seconds) {
  let s = Math.max(0, Math.round(seconds));
  const units = [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]];
  const parts = [];
  for (const [name, size] of units) {
    if (s >= size || (name === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)} ${name}`);
      s %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

// ---------------------------------------------------------------------------
// Wiring

ui.tokenToggle.addEventListener('click', () => {
  const show = ui.token.type === 'password';
  ui.token.type = show ? 'text' : 'password';
  ui.tokenToggle.textContent = show ? 'Hide' : 'Show';
  ui.tokenToggle.setAttribute('aria-pressed', String(show));
});

ui.token.addEventListener('input', onTokenChanged);

ui.channel.addEventListener('input', () => {
  channelTouched = true;
  renderTarget();
});

ui.allChannels.addEventListener('change', renderTarget);

ui.connForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (isActive()) disconnect();
  else connect();
});

ui.sendForm.addEventListener('submit', (event) => {
  event.preventDefault();
  sendMessage();
});

ui.message.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    sendMessage();
  }
});

ui.message.addEventListener('input', () => {
  ui.send.disabled = ui.message.disabled || ui.message.value === '';
  updateByteCount();
});

function loadFragment() {
  const { token, channel } = readFragment();
  if (!token) return;
  if (isActive()) return; // a new token applies to the next connection only; do not swap it under a live socket
  ui.token.value = token;
  if (channel !== null) {
    ui.channel.value = channel;
    channelTouched = true;
  }
  onTokenChanged();
}

window.addEventListener('hashchange', loadFragment);
window.addEventListener('pagehide', () => session?.ws.close(1000, 'page closed'));

setInterval(() => {
  if (!tokenInfo.claims) return;
  renderExpiry();
  if (typeof tokenInfo.claims.exp === 'number' || typeof tokenInfo.claims.nbf === 'number') renderProblems();
}, 1000);

loadFragment();
if (!ui.token.value) onTokenChanged();
updateControls();
