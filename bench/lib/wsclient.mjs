// A lean WebSocket client for the load generator: a net.Socket, a hand-written
// upgrade request and a minimal frame reader that counts frames and, on
// sampling sockets, reads the `"t":<ms>` timestamp from the payload. No `ws`
// package on the hot path, so the generator costs as little CPU as possible.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/** Wall-clock milliseconds with sub-ms resolution, comparable across processes. */
export const now = () => performance.timeOrigin + performance.now();

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='; // RFC 6455's sample key: the server only echoes a hash of it
const T_MARK = Buffer.from('"t":');
const PONG = Buffer.from([0x8a, 0x80, 0, 0, 0, 0]); // masked, empty, zero mask key
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/** Latency histogram with ~1% buckets (log scale, microseconds); mergeable across processes. */
export class Histogram {
  constructor() {
    this.counts = new Uint32Array(2400);
    this.n = 0;
  }
  record(ms) {
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(2399, Math.floor(Math.log(us) * 100));
    this.counts[i]++;
    this.n++;
  }
  reset() {
    this.counts.fill(0);
    this.n = 0;
  }
  /** Sparse form for IPC. */
  toJSON() {
    const entries = [];
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i]) entries.push([i, this.counts[i]]);
    return entries;
  }
  merge(entries) {
    for (const [i, c] of entries) {
      this.counts[i] += c;
      this.n += c;
    }
  }
  /** Percentile in ms (bucket midpoint). */
  percentile(p) {
    if (this.n === 0) return NaN;
    const target = Math.ceil((p / 100) * this.n);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= target) return Math.exp((i + 0.5) / 100) / 1000;
    }
    return NaN;
  }
}

/**
 * Opens one socket and resolves once the server answered 101 (or rejects with
 * the status line; the error's `status` is the HTTP status, 0 without an answer).
 * `stats` is shared by all sockets of a process: { frames, closed, codes, hist }
 * (`codes`: close code -> sockets, 1006 when the connection ended without a close
 * frame) and `sample` says whether this socket reads timestamps.
 *
 * A target is a path, or { path, headers, protocol, send }:
 * - headers: more request headers (a bearer subprotocol, Authorization);
 * - protocol: the subprotocol the server must have chosen (e.g. `pgws.v2`), else the open fails;
 * - send: text frames written as soon as the socket is open (protocol v2 `subscribe`
 *   requests); the socket then resolves only once each got its answer, a text frame starting
 *   `{"type":"subscribed"`, and fails on the first `{"type":"error"`. Those answers are not
 *   counted in `stats.frames`: only what comes after (or between) them is.
 */
export function connect(port, target, stats, sample = false) {
  const path = typeof target === 'string' ? target : target.path;
  const offer = typeof target === 'string' ? '' : Object.entries(target.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  const protocol = typeof target === 'string' ? undefined : target.protocol;
  const send = typeof target === 'string' ? undefined : target.send;
  // Answers still awaited (v2 subscribes); while 0 the frame loop below does no extra work.
  let awaiting = 0;
  return new Promise((resolve, reject) => {
    // onread: libuv reads straight into one buffer shared by every socket of the
    // process, with no stream machinery and no allocation per read. Safe because each
    // read is parsed to the end before the next one; bytes kept across reads are copied.
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true, onread: { buffer: READ_BUFFER, callback: (n, buf) => onData(buf.subarray(0, n)) } });
    let head = null;
    let rest = null;
    let open = false;
    let closeCode = 1006;
    socket.on('error', (err) => {
      if (!open) reject(Object.assign(err, { status: 0 }));
    });
    socket.on('close', () => {
      if (open) {
        stats.closed++;
        if (stats.codes) stats.codes[closeCode] = (stats.codes[closeCode] ?? 0) + 1;
      }
      // A no-op once resolved.
      if (!open) reject(Object.assign(new Error('closed during handshake'), { status: 0 }));
      else if (awaiting > 0) reject(Object.assign(new Error(`closed (${closeCode}) with ${awaiting} answers still awaited`), { status: 0 }));
    });
    socket.on('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${offer}\r\n`,
      );
    });
    const onData = (chunk) => {
      if (!open) {
        head = Buffer.concat(head ? [head, chunk] : [chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        const status = head.subarray(0, head.indexOf('\r\n')).toString();
        if (!status.startsWith('HTTP/1.1 101')) {
          const error = new Error(`handshake refused: ${status}: ${head.subarray(end + 4).toString().trim()}`);
          reject(Object.assign(error, { status: Number(status.split(' ')[1]) || 0 }));
          socket.destroy();
          return;
        }
        if (protocol !== undefined) {
          const chosen = /\r\nsec-websocket-protocol:[ \t]*([^\r]*)/i.exec(head.subarray(0, end + 2).toString())?.[1]?.trim();
          if (chosen !== protocol) {
            reject(Object.assign(new Error(`server chose subprotocol ${chosen ?? '(none)'}, not ${protocol}`), { status: 101 }));
            socket.destroy();
            return;
          }
        }
        open = true;
        chunk = head.subarray(end + 4);
        head = null;
        if (send?.length) {
          awaiting = send.length;
          socket.write(Buffer.concat(send.map(textFrame)));
        } else resolve(socket);
        if (chunk.length === 0) return;
      }
      let buf = rest ? Buffer.concat([rest, chunk]) : chunk;
      let off = 0;
      const len = buf.length;
      for (;;) {
        if (len - off < 2) break;
        const b0 = buf[off];
        let size = buf[off + 1] & 0x7f;
        let hdr = 2;
        if (size === 126) {
          if (len - off < 4) break;
          size = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (size === 127) {
          if (len - off < 10) break;
          size = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        const start = off + hdr;
        const end = start + size;
        if (end > len) break;
        const op = b0 & 0x0f;
        if (awaiting > 0 && op === 1 && isAnswer(buf, start, end)) {
          if (buf[start + 9] === 0x65 /* e: {"type":"error" */) {
            awaiting = 0;
            reject(Object.assign(new Error(`request refused: ${buf.toString('utf8', start, Math.min(end, start + 300))}`), { status: 0 }));
            socket.destroy();
            return;
          }
          if (--awaiting === 0) resolve(socket);
        } else if (op === 1 || op === 2) {
          stats.frames++;
          if (sample) {
            const at = buf.indexOf(T_MARK, start);
            if (at !== -1 && at < end) stats.hist.record(now() - readNumber(buf, at + 4, end));
          }
        } else if (op === 9) {
          socket.write(PONG);
        } else if (op === 8) {
          closeCode = size >= 2 ? buf.readUInt16BE(start) : 1005;
          socket.end();
        }
        off = end;
      }
      rest = off < len ? Buffer.from(buf.subarray(off)) : null;
    };
  });
}

const SUBSCRIBED = Buffer.from('{"type":"subscribed"');
const ERROR = Buffer.from('{"type":"error"');

/** Whether a text frame is a v2 answer the opener waits for (subscribed, or an error). */
function isAnswer(buf, start, end) {
  const is = (mark) => end - start >= mark.length && buf.compare(mark, 0, mark.length, start, start + mark.length) === 0;
  return is(SUBSCRIBED) || is(ERROR);
}

function readNumber(buf, i, end) {
  let value = 0;
  let scale = 0;
  for (; i < end; i++) {
    const c = buf[i];
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      if (scale) scale *= 10;
    } else if (c === 46) {
      scale = 1;
    } else break;
  }
  return scale ? value / scale : value;
}

/**
 * A client text frame. Clients must mask; a zero masking key is a valid key and
 * leaves the payload bytes as they are, which spares the generator the XOR.
 */
export function textFrame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const hdr = n < 126 ? 6 : n < 65536 ? 8 : 14;
  const frame = Buffer.allocUnsafe(hdr + n);
  frame[0] = 0x81;
  if (n < 126) frame[1] = 0x80 | n;
  else if (n < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  frame.writeUInt32BE(0, hdr - 4);
  payload.copy(frame, hdr);
  return frame;
}
