// Collects the NOTIFY payloads of many sockets and sends them in few statements:
// one round trip for a whole batch instead of one per frame, which is what lets
// a burst from hundreds of writers through PostgreSQL's commit path.
//
// Rules it keeps, and why:
//  - A frame's payloads (one per channel) stay together in one batch: one
//    statement is one transaction, so a frame is delivered whole or not at all.
//  - Per-owner (per-socket) order: an owner has at most one batch in flight, and
//    its frames join batches in the order they arrived. When a batch fails, the frames
//    its owners queued behind it fail with it, at once: sent later, after the database
//    came back, they would commit while the failed ones did not, a gap no one is told of.
//  - Never two identical payloads in one batch: PostgreSQL folds identical
//    NOTIFYs on one channel within a transaction, which would lose one in silence.
//  - Bounded: the caller asks pending(owner) before pushing and refuses beyond
//    its limit; batches are capped in payloads and bytes.
//  - Answered in bounded time when the database is stalled: a batch in flight fails after
//    timeoutMs, and a frame still waiting for a batch fails after QUEUE_WAIT_SHARE of it when
//    no batch has committed meanwhile. So every frame is settled within 2 x timeoutMs (PROTOCOL.md
//    §9: a publish while the database is unreachable is answered within 10 s), however many
//    batches' worth of frames queued behind the stalled ones. A database that is merely busy
//    keeps committing batches, and its queued frames wait as long as flow control lets them.

export interface BatchSender {
  /** All payloads in one statement: committed all together or not at all. */
  (payloads: readonly string[]): Promise<void>;
}

export interface NotifyBatcherOptions<O> {
  readonly send: BatchSender;
  /** Batches in flight at once (the NOTIFY pool size: more would only wait for a connection). */
  readonly concurrency: number;
  readonly maxBatchPayloads?: number;
  readonly maxBatchBytes?: number;
  /**
   * A batch not answered within this fails with NotifyTimeoutError (default 5000 ms).
   * Without it, a connection caught in a database restart can hold a batch, and
   * every later frame of its sockets, for as long as TCP lets it.
   */
  readonly timeoutMs?: number;
  /** Called after each batch with the number of frames, whether it committed, and how long it took. */
  readonly onBatch?: (frames: number, ok: boolean, seconds: number) => void;
  /** Called with the frames that failed without being sent: queued behind a failed batch, or waited too long. */
  readonly onUnsent?: (frames: number) => void;
  /** Called when the number of waiting frames changes (for a peak gauge). */
  readonly onQueued?: (frames: number) => void;
  /**
   * Called once per owner of a finished batch, after its frames settled and its count
   * went down: the moment an owner held back by its queue limit may go on (`ok`), or must
   * not (the batch failed, and every frame it had queued failed with it).
   */
  readonly onSettled?: (owner: O, ok: boolean) => void;
}

export interface NotifyBatcher<O> {
  /** Queues one frame's payloads; resolves once committed, rejects if the batch failed or the owner was dropped. */
  push(owner: O, payloads: readonly string[]): Promise<void>;
  /** Frames of this owner queued or in flight. */
  pending(owner: O): number;
  /** Forgets the owner's queued frames (rejecting them); frames already in flight finish. */
  drop(owner: O, reason: Error): void;
  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void>;
  /** Frames queued or in flight, over all owners. */
  size(): number;
}

interface Unit {
  readonly payloads: readonly string[];
  readonly bytes: number;
  /** performance.now() when it was queued. */
  readonly queuedAt: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

interface OwnerQueue {
  readonly units: Unit[];
  inFlight: number;
}

/** PostgreSQL caps a statement's parameters at 65535 and a NOTIFY payload under 8000 bytes: these stay far below both. */
const DEFAULT_MAX_BATCH_PAYLOADS = 500;
const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;
/** How long, as a share of timeoutMs, a frame may wait for a batch while none commits. */
const QUEUE_WAIT_SHARE = 0.9;

/** The batch may still commit later: its frames' fate is unknown, and the client must be told so. */
export class NotifyTimeoutError extends Error {
  constructor(ms: number) {
    super(`NOTIFY not answered within ${ms} ms`);
    this.name = 'NotifyTimeoutError';
  }
}

/** The frame was never sent: no batch committed while it waited, so it was not delivered. */
export class NotifyQueueTimeoutError extends Error {
  constructor(ms: number) {
    super(`NOTIFY not sent: the database committed nothing for ${ms} ms while it waited`);
    this.name = 'NotifyQueueTimeoutError';
  }
}

export function createNotifyBatcher<O>(opts: NotifyBatcherOptions<O>): NotifyBatcher<O> {
  const maxPayloads = opts.maxBatchPayloads ?? DEFAULT_MAX_BATCH_PAYLOADS;
  const maxBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const owners = new Map<O, OwnerQueue>();
  /** Owners with queued frames and no batch in flight, oldest first. */
  const ready = new Set<O>();
  let inFlightBatches = 0;
  let total = 0;
  let scheduled = false;
  let idleWaiters: (() => void)[] = [];
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxWaitMs = Math.max(1, Math.floor(timeoutMs * QUEUE_WAIT_SHARE));
  /** When a batch last committed (or the batcher was made): the database's sign of life. */
  let lastCommit = performance.now();
  /** Looks for frames that waited too long, at the earliest moment one could have. */
  let sweepTimer: NodeJS.Timeout | undefined;

  function armSweep(at: number): void {
    if (sweepTimer !== undefined) return;
    // unref: a stalled database must not keep an exiting process alive.
    sweepTimer = setTimeout(sweep, Math.max(1, Math.ceil(at - performance.now()))).unref();
  }

  /** Fails the queued frames that waited maxWaitMs while no batch committed (the database is stalled). */
  function sweep(): void {
    sweepTimer = undefined;
    const now = performance.now();
    let next = Infinity;
    let settled = 0;
    const expired: O[] = [];
    for (const [owner, queue] of owners) {
      const head = queue.units[0];
      if (head === undefined) continue;
      if (queue.inFlight > 0) {
        // Its frames fail with its batch in flight if that fails; look again once it is settled.
        next = Math.min(next, now + maxWaitMs);
        continue;
      }
      // Waited long enough, and the database committed nothing for as long: give up on it.
      const due = Math.max(head.queuedAt, lastCommit) + maxWaitMs;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      // All of the owner's frames, the head first: later ones never overtake a failed one.
      const failed = queue.units.splice(0);
      ready.delete(owner);
      owners.delete(owner);
      const error = new NotifyQueueTimeoutError(maxWaitMs);
      for (const unit of failed) unit.reject(error);
      settled += failed.length;
      expired.push(owner);
    }
    if (settled > 0) {
      opts.onUnsent?.(settled);
      changed(-settled);
    }
    for (const owner of expired) opts.onSettled?.(owner, false);
    if (next !== Infinity) armSweep(next);
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    // setImmediate, not a microtask: every frame read in this turn of the event
    // loop joins the batch, instead of the first one leaving alone.
    setImmediate(() => {
      scheduled = false;
      pump();
    });
  }

  function pump(): void {
    while (inFlightBatches < opts.concurrency && ready.size > 0) {
      const batch = takeBatch();
      if (batch.units.length === 0) break;
      void sendBatch(batch);
    }
  }

  function takeBatch(): { units: Unit[]; owners: O[] } {
    const units: Unit[] = [];
    const taken: O[] = [];
    const seen = new Set<string>();
    let payloads = 0;
    let bytes = 0;
    for (const owner of ready) {
      const queue = owners.get(owner);
      if (!queue) {
        ready.delete(owner);
        continue;
      }
      let took = 0;
      while (queue.units.length > 0) {
        const unit = queue.units[0] as Unit;
        const fitsSize = units.length === 0 || (payloads + unit.payloads.length <= maxPayloads && bytes + unit.bytes <= maxBytes);
        if (!fitsSize || unit.payloads.some((p) => seen.has(p))) break;
        queue.units.shift();
        for (const p of unit.payloads) seen.add(p);
        units.push(unit);
        payloads += unit.payloads.length;
        bytes += unit.bytes;
        took += 1;
      }
      if (took > 0) {
        queue.inFlight += took;
        ready.delete(owner);
        taken.push(owner);
      }
      if (payloads >= maxPayloads || bytes >= maxBytes) break;
    }
    return { units, owners: taken };
  }

  async function sendBatch(batch: { units: Unit[]; owners: O[] }): Promise<void> {
    inFlightBatches += 1;
    const started = performance.now();
    let failure: Error | undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NotifyTimeoutError(timeoutMs)), timeoutMs);
    });
    try {
      await Promise.race([opts.send(batch.units.flatMap((u) => u.payloads)), timeout]);
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    } finally {
      clearTimeout(timer);
    }
    inFlightBatches -= 1;
    if (failure === undefined) lastCommit = performance.now();
    opts.onBatch?.(batch.units.length, failure === undefined, (performance.now() - started) / 1000);
    for (const unit of batch.units) {
      if (failure) unit.reject(failure);
      else unit.resolve();
    }
    let settled = batch.units.length;
    for (const owner of batch.owners) {
      const queue = owners.get(owner);
      if (!queue) continue;
      queue.inFlight = 0;
      if (failure) {
        // Before pump() can send them: frames behind a failed one never overtake it.
        const behind = queue.units.splice(0);
        for (const unit of behind) unit.reject(failure);
        if (behind.length > 0) opts.onUnsent?.(behind.length);
        settled += behind.length;
      }
      if (queue.units.length > 0) ready.add(owner);
      else owners.delete(owner);
    }
    changed(-settled);
    for (const owner of batch.owners) opts.onSettled?.(owner, failure === undefined);
    pump();
  }

  function changed(delta: number): void {
    total += delta;
    opts.onQueued?.(total);
    if (total === 0 && idleWaiters.length > 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  return {
    push(owner, payloads) {
      return new Promise<void>((resolve, reject) => {
        let queue = owners.get(owner);
        if (!queue) {
          queue = { units: [], inFlight: 0 };
          owners.set(owner, queue);
        }
        const bytes = payloads.reduce((sum, p) => sum + Buffer.byteLength(p), 0);
        const queuedAt = performance.now();
        queue.units.push({ payloads, bytes, queuedAt, resolve, reject });
        if (queue.inFlight === 0) ready.add(owner);
        changed(1);
        schedule();
        armSweep(queuedAt + maxWaitMs);
      });
    },
    pending(owner) {
      const queue = owners.get(owner);
      return queue ? queue.units.length + queue.inFlight : 0;
    },
    drop(owner, reason) {
      const queue = owners.get(owner);
      if (!queue) return;
      const dropped = queue.units.splice(0);
      ready.delete(owner);
      if (queue.inFlight === 0) owners.delete(owner);
      for (const unit of dropped) unit.reject(reason);
      if (dropped.length > 0) changed(-dropped.length);
    },
    idle() {
      if (total === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    size: () => total,
  };
}
