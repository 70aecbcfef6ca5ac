// Fan-out for the ws transport: each notification is framed once, and what one tick
// publishes leaves in one write per socket when the tick ends.
//
// A server-to-client frame is not masked, so its bytes are the same for every reader:
// framing per socket (ws.send) only repeated work and allocation. A socket's frames of a
// tick are kept as a range of the tick's frame list; sockets with the same range (every
// reader of a channel) share one joined Buffer, so one tick costs one concat per distinct
// range plus one write per socket, and the per-frame, per-socket work is a few field updates.

/** The bytes of one unfragmented, unmasked text frame (RFC 6455 §5.2) around `text`. */
export function textFrame(text: string): Buffer {
  const length = Buffer.byteLength(text, 'utf8');
  const header = length < 126 ? 2 : length < 0x10000 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x81; // FIN, opcode 1 (text)
  if (header === 2) {
    frame[1] = length;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    // A 64-bit length; JavaScript strings are far below 2^53, so the high word is small.
    frame.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  frame.write(text, header, 'utf8');
  return frame;
}

/** What the outbox keeps on each socket (fields, not a Map: this runs per socket per frame). */
export interface Outlet {
  /** Bytes queued this tick and not yet written; 0 when nothing is queued. */
  outBytes: number;
  /** The queued frames are outbox frames [outFirst, outEnd) while outList is undefined. */
  outFirst: number;
  outEnd: number;
  /** The queued frames, once they are not one contiguous range of the tick's frames. */
  outList: Buffer[] | undefined;
  /** Writes the socket's bytes of this tick (or drops them if it is no longer open). */
  flush(bytes: Buffer): void;
}

/** Ranges of at most this many frames' indexes are keyed as first * RANGE_KEY + end. */
const RANGE_KEY = 2 ** 26;

export class Outbox {
  /** Every frame queued this tick, in order. */
  private readonly frames: Buffer[] = [];
  /** Sockets with something queued (a socket emptied early by take() may appear twice). */
  private readonly waiting: Outlet[] = [];
  private scheduled = false;
  /** Joined ranges of this tick, by first * RANGE_KEY + end. */
  private readonly joined = new Map<number, Buffer>();
  private readonly flushAll = (): void => this.flush();

  /** Adds a frame to this tick; returns its index for queue(). */
  add(frame: Buffer): number {
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushAll);
    }
    return this.frames.push(frame) - 1;
  }

  /** Queues frame `index` (just returned by add()) for the socket. */
  queue(socket: Outlet, index: number, frame: Buffer): void {
    if (socket.outBytes === 0) {
      socket.outFirst = index;
      socket.outEnd = index + 1;
      socket.outList = undefined;
      this.waiting.push(socket);
    } else if (socket.outList !== undefined) {
      socket.outList.push(frame);
    } else if (socket.outEnd === index) {
      socket.outEnd = index + 1;
    } else {
      // It missed frames in between (another channel's): it keeps its own list from now on.
      socket.outList = this.frames.slice(socket.outFirst, socket.outEnd);
      socket.outList.push(frame);
    }
    socket.outBytes += frame.length;
  }

  /**
   * The socket's queued bytes as one Buffer, now, and forgets them: for a socket that must
   * write them before something else (its close frame). Undefined if nothing is queued.
   */
  take(socket: Outlet): Buffer | undefined {
    const bytes = socket.outBytes;
    if (bytes === 0) return undefined;
    socket.outBytes = 0;
    if (socket.outList !== undefined) {
      const list = socket.outList;
      socket.outList = undefined;
      return Buffer.concat(list, bytes);
    }
    const first = socket.outFirst;
    const end = socket.outEnd;
    if (end - first === 1) return this.frames[first] as Buffer;
    if (end >= RANGE_KEY) return Buffer.concat(this.frames.slice(first, end), bytes);
    const key = first * RANGE_KEY + end;
    let shared = this.joined.get(key);
    if (shared === undefined) {
      shared = Buffer.concat(this.frames.slice(first, end), bytes);
      this.joined.set(key, shared);
    }
    return shared;
  }

  /**
   * Writes every socket's frames of the tick. Run on process.nextTick, it comes right after
   * the callback that published (postgres.js hands over all the notifications of one read
   * in one callback), before any timer or other socket's event, as corking did. (A flush on
   * setImmediate, which could gather several reads, measured no faster and adds latency.)
   */
  flush(): void {
    try {
      // By index: a socket queued while this runs (a handler that publishes) is written too.
      for (let i = 0; i < this.waiting.length; i++) {
        const socket = this.waiting[i] as Outlet;
        const bytes = this.take(socket);
        if (bytes !== undefined) socket.flush(bytes);
      }
    } catch (err) {
      // Whatever was not written is dropped, never left with indexes into a past tick.
      for (const socket of this.waiting) socket.outBytes = 0;
      throw err;
    } finally {
      // Indexes and joined ranges belong to this tick: all start again.
      this.waiting.length = 0;
      this.frames.length = 0;
      this.joined.clear();
      this.scheduled = false;
    }
  }
}
