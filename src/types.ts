// Types that cross module boundaries. Each is exact: no `any`, no open bags
// except where the wire contract itself is open (a token's extra claims).

/** A JSON value, as found in a token's claims. */
export type Json = string | number | boolean | null | readonly Json[] | { readonly [key: string]: Json };

/** Socket mode from the `mode` claim (PROTOCOL.md §1). */
export type Mode = 'r' | 'w' | 'rw';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Which WebSocket engine serves sockets: `auto` picks uWebSockets.js when it can, else ws. */
export type TransportChoice = 'auto' | 'uws' | 'ws';

/**
 * The validated, frozen configuration (PROTOCOL.md §7 plus our extensions).
 * Built only by src/config.ts.
 */
export interface Config {
  /** PostgreSQL URI; undefined only when `embedded` will provide one. Secret (may hold a password). */
  readonly dbUri: string | undefined;
  /** HMAC secret, JWK or JWKS text. Secret. undefined only in embedded mode (a random one is generated). */
  readonly jwtSecret: string | undefined;
  readonly jwtSecretIsBase64: boolean;
  /** `*4`, `*6`, `*`, or an address / host name. */
  readonly host: string;
  readonly port: number;
  readonly listenChannel: string;
  readonly metaChannel: string | undefined;
  readonly rootPath: string | undefined;
  readonly poolSize: number;
  readonly retries: number;
  /** Milliseconds between listener checks; 0 = off (a lost listener exits the process). */
  readonly checkListenerInterval: number;
  /** Largest frame a socket may send, bytes; bigger closes it with 1009. */
  readonly maxMessageSize: number;
  /** Bytes waiting for one slow reader before it is closed with 1008. */
  readonly maxBackpressure: number;
  /** Sockets open or opening at once; over it, upgrades get 503. 0 = no limit. */
  readonly maxConnections: number;
  /** Milliseconds an upgrade may take to be decided before it is answered 503. */
  readonly handshakeTimeout: number;
  /** Frames per second one socket may send; over it, closed with 1008. 0 = no limit. */
  readonly maxMessagesPerSecond: number;
  /** Frames one socket may have waiting for NOTIFY; at this many pgws stops reading from it (flow control). */
  readonly maxQueuedMessages: number;
  /** Subscriptions one pgws.v2 socket may hold at once (PROTOCOL.md §9). */
  readonly maxSubscriptions: number;
  /** Socket frames and meta events go through pgws.publish; v2 `since` replays (PROTOCOL.md §10). */
  readonly journal: boolean;
  /** Seconds journal rows are kept. */
  readonly journalRetention: number;
  /** Schema of the functions a v2 `call` may run; undefined: calls are answered not_found (PROTOCOL.md §12). */
  readonly rpcSchema: string | undefined;
  /** Role of calls whose token has no `role` claim; undefined: they are refused. */
  readonly rpcDefaultRole: string | undefined;
  /** statement_timeout of a call, ms. */
  readonly rpcTimeout: number;
  readonly certificateFile: string | undefined;
  readonly keyFile: string | undefined;
  /** Port of the admin HTTP server (/health, /ready, /metrics); undefined: health and readiness on the main port, no metrics. */
  readonly adminPort: number | undefined;
  /** Listen address of the admin port (same forms as `host`). */
  readonly adminHost: string;
  readonly transport: TransportChoice;
  readonly logLevel: LogLevel;
  /** Start a throwaway embedded PostgreSQL when no dbUri is given (development only). */
  readonly embedded: boolean;
  /** URL of a JWK Set to verify tokens with, beside or instead of jwtSecret. May hold credentials: secret. */
  readonly jwksUrl: string | undefined;
  /** `aud` must contain one of these; undefined: not checked. */
  readonly jwtAudience: readonly string[] | undefined;
  /** `iss` must equal one of these; undefined: not checked. */
  readonly jwtIssuer: readonly string[] | undefined;
  /** Dotted path of the mode claim. */
  readonly modeClaim: string;
  /** Dotted path of the allowed-channels claim. */
  readonly channelsClaim: string;
  /** Mode for tokens without the mode claim; undefined refuses them ("Missing mode"). */
  readonly defaultMode: Mode | undefined;
  /** Name of the cookie that may carry the token; undefined: cookies are never read. */
  readonly jwtCookie: string | undefined;
  /** Origins allowed to open sockets (`*`, `scheme://host[:port]`, `*.` subdomains); undefined: any. */
  readonly allowedOrigins: readonly string[] | undefined;
}

/**
 * The verified claims of a token: its whole payload, as the envelope carries it. The mode
 * and channels were read from it (where PGWS_MODE_CLAIM and PGWS_CHANNELS_CLAIM say) into
 * the Grant; `channel`, `exp` and `nbf` were checked to have their types.
 */
export interface Claims {
  readonly channel?: string;
  readonly exp?: number;
  readonly nbf?: number;
  readonly [claim: string]: Json | undefined;
}

/** What a verified handshake grants a socket. */
export interface Grant {
  readonly mode: Mode;
  /**
   * v1: the channels this socket is open on, in order, without duplicates (never empty).
   * pgws.v2: the channels the token lists (maybe none), checked at each subscribe and publish.
   */
  readonly channels: readonly string[];
  /** pgws.v2 only: the token lists no channel, so it allows every channel (as v1's `/<channel>/<jwt>` does). */
  readonly anyChannel?: boolean;
  readonly claims: Claims;
  /** Token expiry, Unix seconds, if the token has one. */
  readonly exp: number | undefined;
}

/** WebSocket close codes pgws uses (PROTOCOL.md §6). Use these, never literals. */
export const Close = {
  Normal: 1000,
  GoingAway: 1001,
  PolicyViolation: 1008,
  BadUtf8: 1007,
  TooBig: 1009,
  ServerError: 1011,
  TryAgainLater: 1013,
  JwtExpired: 3001,
} as const;
export type CloseCode = (typeof Close)[keyof typeof Close];

/** Largest NOTIFY payload PostgreSQL accepts is 7999 bytes ("must be shorter than 8000 bytes"). */
export const NOTIFY_PAYLOAD_LIMIT = 8000;
