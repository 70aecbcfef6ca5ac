// pgws example client: a static page, no dependencies, works offline.
//
// Two modes. v1 speaks the postgres-websockets protocol with the browser's own WebSocket:
// one socket per channel, the token in the address. v2 uses pgws/client, the typed client
// library, loaded from the server that serves this page (./pgws-client.js, a copy the build
// makes of dist/client/index.js): one socket, many subscriptions with filters, publishes
// acknowledged by the server, reconnect and resubscribe by itself. v1 never loads the
// library, so it works without it.
//
// The token is a secret: it is never written to the page log nor to the console.
// (In v1 the browser itself may print the socket address, token included, in the
// developer console when a connection fails; no page can prevent that. In v2 the token
// travels as a subprotocol, not in the address.)

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
  protocolV1: $('protocol-v1'),
  protocolV2: $('protocol-v2'),
  protocolHint: $('protocol-hint'),
  v1Fields: $('v1-fields'),
  v2Target: $('v2-target'),
  subsCard: $('subs-card'),
  subsCount: $('subs-count'),
  subForm: $('sub-form'),
  subChannel: $('sub-channel'),
  subFilter: $('sub-filter'),
  subEcho: $('sub-echo'),
  subscribe: $('subscribe'),
  subProblem: $('sub-problem'),
  subsList: $('subs-list'),
  sendChannelField: $('send-channel-field'),
  sendChannel: $('send-channel'),
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
/** v1: the live socket and what it was opened with; null when there is none. */
let session = null;
/** v2: the client of pgws/client and this page's subscriptions; null when there is none. */
let v2 = null;
/** The pgws/client module, loaded on the first v2 connection. */
let lib = null;

const protocol = () => (ui.protocolV2.checked ? 'v2' : 'v1');

// ---------------------------------------------------------------------------
// Token handling

/** Token (and optional channel and protocol) from `#token=<jwt>[&channel=<name>][&protocol=v2]` or `#<jwt>`. */
function readFragment() {
  const raw = location.hash.replace(/^#/, '');
  if (!raw) return { token: '', channel: null, protocol: null };
  if (/(^|&)token=/.test(raw)) {
    const params = new URLSearchParams(raw);
    return { token: (params.get('token') ?? '').trim(), channel: params.get('channel'), protocol: params.get('protocol') };
  }
  let token = raw;
  try { token = decodeURIComponent(raw); } catch { /* keep it as it is */ }
  return { token: token.trim(), channel: null, protocol: null };
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
  if (!channelTouched) {
    const first = tokenInfo.channels[0] ?? DEFAULT_CHANNEL;
    ui.channel.value = first;
    if (!v2) {
      ui.subChannel.value = first;
      ui.sendChannel.value = first;
    }
  }
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
        channelTouched = true;
        if (protocol() === 'v2') {
          ui.subChannel.value = name;
          ui.sendChannel.value = name;
          ui.subChannel.focus();
          return;
        }
        ui.channel.value = name;
        ui.allChannels.checked = false;
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
    if (protocol() === 'v2') {
      // v2 checks each subscribe and publish: the server answers forbidden, shown where it happens.
    } else if (ui.allChannels.checked && channels.length === 0) {
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

/** Shows the fields of the chosen protocol. */
function renderProtocol() {
  const isV2 = protocol() === 'v2';
  ui.v1Fields.hidden = isV2;
  ui.v2Target.hidden = !isV2;
  ui.subsCard.hidden = !isV2;
  ui.sendChannelField.hidden = !isV2;
  ui.protocolHint.textContent = isV2
    ? 'v2 is pgws\'s own protocol, through the pgws/client library: one socket, many subscriptions, acknowledged publishes.'
    : 'v1 is what postgres-websockets clients speak: the channel and the token are in the address.';
  renderTarget();
  updateControls();
}

// ---------------------------------------------------------------------------
// Connection

function isActive() {
  return (session !== null && session.ws.readyState <= WebSocket.OPEN) || v2 !== null;
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
  if (!location.host) {
    showDetail('Open this page from the pgws server (http:// or https://) to connect.', 'bad');
    return;
  }
  if (protocol() === 'v2') {
    void connectV2(token);
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
  if (v2) {
    disconnectV2();
    return;
  }
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
  ui.protocolV1.disabled = active;
  ui.protocolV2.disabled = active;
  renderTarget();

  const v1Open = session?.ws.readyState === WebSocket.OPEN && !session.closing;
  const v2Open = v2 !== null && !v2.closing && v2.client.state === 'open';
  const open = v1Open || v2Open;
  const mode = (v1Open ? session.mode : v2?.mode) ?? '';
  const writable = open && mode.includes('w');
  ui.message.disabled = !writable;
  ui.sendChannel.disabled = !writable;
  ui.send.disabled = !writable || ui.message.value === '';
  ui.subscribe.disabled = v2 === null || v2.closing;
  if (!open) {
    ui.sendHint.textContent = v2 && !v2.closing
      ? 'Not connected right now: the client is reconnecting.'
      : 'Connect with a token whose mode includes w to send.';
  } else if (!writable) {
    ui.sendHint.textContent = v2Open
      ? `This token's mode is "${mode}" (read only): the server refuses its publishes.`
      : `This token's mode is "${mode}" (read only): the server does not relay its frames.`;
  } else if (v2Open) {
    ui.sendHint.textContent = 'Enter publishes to the channel above (JSON text as JSON, anything else as a string); '
      + 'the server acknowledges each publish once the NOTIFY committed.';
  } else {
    ui.sendHint.textContent = 'Enter sends, Shift+Enter adds a line. Each frame is relayed as a NOTIFY per channel.';
  }
  updateByteCount();
}

/** A v2 publish's payload: the text as JSON when it is JSON, else the text as a string. */
function publishPayload(text) {
  try { return JSON.parse(text); } catch { return text; }
}

/** Rough size of the NOTIFY envelope the server would build for this text. */
function envelopeBytes(text) {
  const current = session ?? v2;
  if (!current) return 0;
  const channels = v2 ? [ui.sendChannel.value] : session.channels.length ? session.channels : [''];
  const payload = v2 ? publishPayload(text) : text;
  const enc = new TextEncoder();
  let largest = 0;
  for (const channel of channels) {
    const envelope = JSON.stringify({
      event: 'WebsocketMessage',
      channel,
      payload,
      claims: { ...current.claims, message_delivered_at: Date.now() / 1000 },
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
  const outcome = v2 ? 'the server would refuse it (payload_too_large)' : 'the server would close with 1009';
  ui.byteCount.textContent = tooBig
    ? `${bytes} bytes — too big: the envelope (≈${envelope} B) reaches the ${NOTIFY_LIMIT}-byte NOTIFY limit; ${outcome}`
    : `${bytes} bytes (envelope ≈${envelope} B)`;
  ui.byteCount.classList.toggle('bad', tooBig);
}

function sendMessage() {
  if (v2) {
    publishV2();
    return;
  }
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
// Protocol v2, through pgws/client

/** Loads ./pgws-client.js from this page's server, once; null (and a note) when it is not there. */
async function loadLibrary() {
  if (lib) return lib;
  try {
    lib = await import('./pgws-client.js');
  } catch {
    showDetail('pgws-client.js could not be loaded from this server. It is made by the build: run `npm run build` in pgws.', 'bad');
    return null;
  }
  return lib;
}

async function connectV2(token) {
  ui.connect.disabled = true;
  const loaded = await loadLibrary();
  ui.connect.disabled = false;
  if (!loaded || isActive()) return;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const shown = `${scheme}//${location.host}/`;
  let client;
  try {
    client = loaded.connect(shown, { token });
  } catch (err) {
    showDetail(`The client could not start: ${hideToken(err.message, token)}`, 'bad');
    return;
  }
  ui.subsList.replaceChildren();
  v2 = {
    client,
    token,
    mode: typeof tokenInfo.claims?.mode === 'string' ? tokenInfo.claims.mode : '',
    claims: tokenInfo.claims ?? {},
    subs: [],
    nextSub: 1,
    closing: false,
    everOpen: false,
    lastError: null,
  };
  const current = v2;
  client.on('state', (state) => {
    if (v2 === current) onV2State(current, state);
  });
  client.on('error', (error) => {
    if (v2 !== current) return;
    current.lastError = error;
    systemEntry(`${error.code}: ${hideToken(error.message, token)}`, 'system bad');
    if (error.code === 'connect_failed' && !current.everOpen) {
      showDetail('The connection failed before it opened: the token may be refused (invalid, expired or not yet valid, '
        + 'no mode) or the server unreachable. Browsers do not show why; the pgws log does. The client keeps trying.', 'bad');
    }
  });
  client.on('unsubscribed', ({ channel, reason, subscription }) => {
    const item = current.subs.find((s) => s.sub === subscription);
    if (!item) return;
    item.reason = reason;
    renderSub(item);
    systemEntry(`${item.label} on ${channel} ended by the server: ${reason}`, 'system bad');
  });
  client.on('resubscribed', ({ channel, recovered, subscription }) => {
    const item = current.subs.find((s) => s.sub === subscription);
    const what = recovered ? 'nothing was missed' : 'messages sent while away may be missing';
    systemEntry(`Subscribed again${item ? ` ${item.label}` : ''} on ${channel}: ${what}`);
  });
  setStatus('connecting', 'Connecting · v2');
  showDetail('');
  systemEntry(`Connecting to ${shown} (pgws.v2)`);
  updateControls();
}

function onV2State(current, state) {
  switch (state) {
    case 'open':
      setStatus('open', 'Open · v2');
      showDetail('');
      systemEntry(current.everOpen ? 'Connected again' : `Connected to ${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ (pgws.v2)`);
      current.everOpen = true;
      break;
    case 'reconnecting':
      setStatus('reconnecting', 'Reconnecting · v2');
      systemEntry('Connection lost: reconnecting…', 'system bad');
      break;
    case 'connecting':
      setStatus('connecting', 'Connecting · v2');
      break;
    case 'closed': {
      const error = current.lastError;
      if (current.closing) {
        setStatus('closed', 'Closed · v2');
        systemEntry('Closed');
      } else {
        const why = error ? ` · ${error.code}` : '';
        setStatus('error', `Closed · v2${why}`);
        systemEntry(`Closed${why}`, 'system bad');
        if (error?.code === 'expired') showDetail('The token expired: get a new token and connect again.', 'bad');
      }
      v2 = null;
      for (const item of current.subs) renderSub(item);
      break;
    }
  }
  updateControls();
}

function disconnectV2() {
  if (!v2 || v2.closing) return;
  v2.closing = true;
  setStatus('closing', 'Closing…');
  updateControls();
  void v2.client.close();
}

function showSubProblem(text) {
  ui.subProblem.textContent = text;
  ui.subProblem.hidden = !text;
}

function addSubscription() {
  const current = v2;
  if (!current || current.closing) return;
  const channel = ui.subChannel.value.trim();
  if (!channel) {
    showSubProblem('Enter a channel.');
    ui.subChannel.focus();
    return;
  }
  const filterText = ui.subFilter.value.trim();
  let filter;
  if (filterText) {
    try {
      filter = JSON.parse(filterText);
    } catch {
      showSubProblem('The filter is not JSON.');
      ui.subFilter.focus();
      return;
    }
    if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
      showSubProblem('A filter is a JSON object: {"path": value, ...}.');
      ui.subFilter.focus();
      return;
    }
  }
  showSubProblem('');
  const item = {
    label: `S${current.nextSub++}`,
    channel,
    filter,
    echo: ui.subEcho.checked,
    count: 0,
    reason: '',
    removing: false,
    serverSub: '',
    li: null,
    sub: null,
  };
  item.sub = current.client.subscribe(channel, {
    filter,
    echo: item.echo,
    onMessage: (data, meta) => {
      item.count++;
      item.serverSub = meta.sub;
      renderSub(item);
      render(typeof data === 'string' ? tryJson(data) : data, typeof data === 'string' ? data : JSON.stringify(data), { label: item.label, sub: meta.sub });
    },
  });
  current.subs.push(item);
  renderSub(item);
  item.sub.ready.then(
    () => renderSub(item),
    (error) => {
      if (error.code === 'closed') return; // removed before it was answered, or the client closed
      item.reason = `${error.code}: ${error.message}`;
      renderSub(item);
      systemEntry(`${item.label} on ${channel} refused — ${item.reason}`, 'system bad');
    },
  );
}

async function removeSubscription(item) {
  const current = v2;
  if (item.sub.state !== 'ended') {
    item.removing = true;
    renderSub(item);
    try {
      await item.sub.unsubscribe();
    } catch (error) {
      item.removing = false;
      item.reason = `${error.code}: ${error.message}`;
      renderSub(item);
      return;
    }
    systemEntry(`Unsubscribed ${item.label} on ${item.channel}`);
  }
  item.li?.remove();
  const list = current?.subs;
  if (list) list.splice(list.indexOf(item), 1);
  ui.subsCount.textContent = String(ui.subsList.childElementCount);
}

/** The row of one subscription: label, channel, filter, state, messages received, a button. */
function renderSub(item) {
  if (!item.li) {
    item.li = el('li', 'sub');
    ui.subsList.append(item.li);
  }
  const state = item.sub.state;
  item.li.dataset.state = state;
  const head = el('div', 'sub-head');
  head.append(el('span', 'badge sub-label', item.label), el('span', 'badge channel', item.channel));
  const stateText = item.removing ? 'unsubscribing…' : state === 'subscribing' ? 'subscribing…' : state;
  head.append(el('span', 'sub-state', stateText));
  const count = el('span', 'count', String(item.count));
  count.title = 'messages received';
  head.append(count);
  const button = el('button', 'btn secondary small', state === 'ended' ? 'Remove' : 'Unsubscribe');
  button.type = 'button';
  button.disabled = item.removing;
  button.setAttribute('aria-label', `${state === 'ended' ? 'Remove' : 'Unsubscribe'} ${item.label} (${item.channel})`);
  button.addEventListener('click', () => void removeSubscription(item));
  head.append(button);
  const rows = [head];
  const bits = [];
  bits.push(item.filter === undefined ? 'no filter' : `filter ${JSON.stringify(item.filter)}`);
  if (!item.echo) bits.push('echo off');
  rows.push(el('p', 'sub-detail', bits.join(' · ')));
  if (item.reason) rows.push(el('p', 'sub-reason', item.reason));
  item.li.replaceChildren(...rows);
  ui.subsCount.textContent = String(ui.subsList.childElementCount);
}

function publishV2() {
  const current = v2;
  if (!current || ui.message.disabled) return;
  const text = ui.message.value;
  const channel = ui.sendChannel.value.trim();
  if (text === '') return;
  if (!channel) {
    ui.sendChannel.focus();
    return;
  }
  const head = sentEntry(text, channel);
  const ack = el('span', 'badge ack pending', 'publishing…');
  head.append(ack);
  current.client.publish(channel, publishPayload(text)).then(
    () => {
      ack.className = 'badge ack ok';
      ack.textContent = 'published ✓';
    },
    (error) => {
      ack.className = 'badge ack bad';
      ack.textContent = `refused · ${error.code}`;
      head.parentElement?.append(el('p', 'ack-detail', hideToken(error.message, current.token)));
    },
  );
  ui.message.value = '';
  updateControls();
  ui.message.focus();
}

/** A message shown on the page never holds the token. */
function hideToken(text, token) {
  return token ? String(text).split(token).join('<token>') : String(text);
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

/** A frame of a v1 socket: its text. */
function receive(text) {
  render(tryJson(text), text, null);
}

/**
 * One message in the Messages pane (or Meta events for ConnectionOpen/ConnectionClose):
 * `value` the parsed JSON or undefined, `text` what to show when it is not JSON,
 * `tag` the v2 subscription it came through (a badge), or null.
 */
function render(value, text, tag) {
  const li = el('li', 'entry');
  const head = el('div', 'entry-head');
  head.append(timeEl());
  if (tag) {
    const badge = el('span', 'badge sub-label', tag.label);
    badge.title = `Subscription ${tag.label} (server sub ${tag.sub})`;
    head.append(badge);
  }
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
  return head;
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

ui.protocolV1.addEventListener('change', renderProtocol);
ui.protocolV2.addEventListener('change', renderProtocol);

ui.subForm.addEventListener('submit', (event) => {
  event.preventDefault();
  addSubscription();
});

ui.subChannel.addEventListener('input', () => {
  channelTouched = true;
});
ui.sendChannel.addEventListener('input', () => {
  channelTouched = true;
  updateByteCount();
});

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
  const { token, channel, protocol: fragmentProtocol } = readFragment();
  if (!token) return;
  if (isActive()) return; // a new token applies to the next connection only; do not swap it under a live socket
  ui.token.value = token;
  if (fragmentProtocol === 'v2' || fragmentProtocol === 'v1') {
    ui.protocolV2.checked = fragmentProtocol === 'v2';
    ui.protocolV1.checked = fragmentProtocol === 'v1';
  }
  if (channel !== null) {
    ui.channel.value = channel;
    ui.subChannel.value = channel;
    ui.sendChannel.value = channel;
    channelTouched = true;
  }
  onTokenChanged();
  renderProtocol();
}

window.addEventListener('hashchange', loadFragment);
window.addEventListener('pagehide', () => {
  session?.ws.close(1000, 'page closed');
  void v2?.client.close();
});

setInterval(() => {
  if (!tokenInfo.claims) return;
  renderExpiry();
  if (typeof tokenInfo.claims.exp === 'number' || typeof tokenInfo.claims.nbf === 'number') renderProblems();
}, 1000);

loadFragment();
if (!ui.token.value) onTokenChanged();
renderProtocol();
