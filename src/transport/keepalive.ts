// Keep-alive timing shared by both transports, so a socket lives and dies on the
// same schedule whichever engine serves it. uWebSockets.js splits its idleTimeout
// into "silence before a ping" and "time left to answer it"; the ws transport
// reproduces that split with one sweep over its sockets.

export interface IdlePhases {
  /** Seconds without inbound traffic before the server pings. */
  readonly pingAfterSeconds: number;
  /** Seconds after the ping for any inbound traffic (the pong) before the socket is cut. */
  readonly answerWithinSeconds: number;
}

/**
 * uWebSockets.js's own split (WebSocketContextData::calculateIdleTimeoutCompnents, with
 * automatic pings): a margin of 4, 8 or 16 s, the largest that still leaves at least
 * twice itself before the ping. 8 -> 4 + 4, 12 -> 8 + 4, 32 -> 16 + 16.
 */
export function idlePhases(idleTimeoutSeconds: number): IdlePhases {
  let margin = 4;
  while (idleTimeoutSeconds - margin * 2 >= margin * 2 && margin < 16) margin *= 2;
  return { pingAfterSeconds: Math.max(1, idleTimeoutSeconds - margin), answerWithinSeconds: margin };
}

/** What the sweep needs from a socket. */
export interface KeptAlive {
  /** Time (ms) of the last inbound frame of any kind. */
  lastInbound: number;
  /** Time (ms) of the unanswered ping, if one is out. */
  pingedAt: number | undefined;
  /** pgws is not reading from it (flow control): its silence is ours, never a reason to cut it. */
  readonly paused: boolean;
  ping(): void;
  /** Cut the connection without a close frame, as uWebSockets.js does on timeout. */
  cut(): void;
}

/** How often the sweep runs: uWebSockets.js's timers have a 4 s resolution; 1 s is finer and still cheap. */
const SWEEP_MS = 1000;

/**
 * One interval for all sockets rather than a timer each: a sweep of 20k sockets once a
 * second costs less than re-arming 20k timers on every inbound frame.
 */
export function startKeepalive(idleTimeoutSeconds: number, sockets: () => Iterable<KeptAlive>): { stop(): void } {
  const { pingAfterSeconds, answerWithinSeconds } = idlePhases(idleTimeoutSeconds);
  const interval = setInterval(() => {
    const now = Date.now();
    for (const socket of sockets()) {
      if (socket.paused) {
        socket.lastInbound = now;
        socket.pingedAt = undefined;
      } else if (socket.pingedAt !== undefined) {
        if (now - socket.pingedAt >= answerWithinSeconds * 1000) socket.cut();
      } else if (now - socket.lastInbound >= pingAfterSeconds * 1000) {
        socket.pingedAt = now;
        socket.ping();
      }
    }
  }, SWEEP_MS);
  // The sweep must never keep a stopping process alive.
  interval.unref();
  return { stop: () => clearInterval(interval) };
}
