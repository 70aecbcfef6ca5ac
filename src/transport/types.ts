// The boundary between pgws and a WebSocket/HTTP engine. Nothing outside
// src/transport/ imports an engine; the relay and server speak only this.
import type { CloseCode } from '../types.js';

/** Why the transport itself answered an upgrade before (or instead of) the server's decision. */
export type TransportRefusal = 'max-connections' | 'handshake-timeout' | 'shutting-down' | 'internal-error';

/**
 * What the server learns from an upgrade request, copied before any await (uWS frees its
 * request when the callback returns). Header values are as sent, '' when absent.
 */
export interface UpgradeRequest {
  /** Raw path, percent-encoded, without the query string. May hold the token: never log it. */
  readonly path: string;
  /** Raw query string without the '?', '' when none. May hold the token: never log it. */
  readonly query: string;
  readonly remoteAddress: string;
  /** `Authorization`. May hold the token: never log it. */
  readonly authorization: string;
  /** `Cookie`. May hold the token: never log it. */
  readonly cookie: string;
  /** `Sec-WebSocket-Protocol`: the offered subprotocols. May hold the token: never log it. */
  readonly protocols: string;
  /** `Origin`, sent by browsers. */
  readonly origin: string;
}

export type UpgradeDecision<S> =
  /** `protocol`: the subprotocol the 101 selects (`Sec-WebSocket-Protocol`); none when undefined. */
  | { readonly accept: true; readonly session: S; readonly protocol?: string | undefined }
  | { readonly accept: false; readonly status: number; readonly reason: string };

/** A plain HTTP answer (static files, banner, errors). */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer | string;
}

export interface HttpRequest {
  readonly method: string;
  /** Raw path, percent-encoded, without the query string. */
  readonly path: string;
}

/** Outcome of a send: written, queued under backpressure, or refused (socket over its limit or closed). */
export type SendResult = 'sent' | 'queued' | 'dropped';

/** One open socket, as the relay sees it. */
export interface TransportSocket<S> {
  readonly session: S;
  send(text: string): SendResult;
  /** Close with a code and a short reason (trimmed to the 123-byte limit). Safe to call twice. */
  close(code: CloseCode, reason: string): void;
  /**
   * Receive what is published to this topic from now on. Topics are the relay's names (a v1
   * channel, a v2 subscription); the transport attaches no meaning to them. Safe when closed.
   */
  subscribe(topic: string): void;
  /** Stop receiving a topic's publishes. Safe when not subscribed or closed. */
  unsubscribe(topic: string): void;
  /**
   * Runs `write`, whose sends the engine may gather into one write (uWS: `cork`; ws gathers a
   * tick's frames anyway). For many sends outside an engine callback, such as a history replay.
   */
  cork(write: () => void): void;
  bufferedAmount(): number;
  /**
   * Stop reading from the socket (flow control): TCP then slows the client down. Frames
   * already read still arrive. Returns false where the engine cannot stop reading.
   * While paused, the socket is never closed as idle: pgws is the side not reading.
   */
  pause(): boolean;
  /** Read from the socket again. Safe on a socket that is not paused or is closed. */
  resume(): void;
  readonly remoteAddress: string;
}

export interface TransportHandlers<S> {
  /**
   * Decide on an upgrade. A decision known at once is returned as a value and answered
   * within the request's own callback; one that needs I/O is a Promise, and the transport
   * handles the client going away meanwhile. Never throws or rejects.
   */
  upgrade(req: UpgradeRequest): UpgradeDecision<S> | Promise<UpgradeDecision<S>>;
  open(socket: TransportSocket<S>): void;
  /** A text frame, or a binary frame that decoded as UTF-8. Invalid UTF-8 is closed with 1007 by the transport. */
  message(socket: TransportSocket<S>, text: string): void;
  close(socket: TransportSocket<S>, code: number, reason: string): void;
  /** Any request that is not a WebSocket upgrade. */
  http(req: HttpRequest): Promise<HttpAnswer>;
  /**
   * The socket has more than `maxBackpressureBytes` waiting to be written: its
   * reader is not keeping up. The handler decides (pgws closes it with 1008).
   * Called again on later checks while the socket stays over and open.
   */
  overBackpressure?(socket: TransportSocket<S>, bufferedBytes: number): void;
  /**
   * An upgrade was answered by the transport itself, before or instead of `upgrade`'s
   * decision: 503 (too many connections, decision too slow, shutting down) or 500 (the
   * decision threw or rejected).
   */
  refused?(why: TransportRefusal): void;
}

export interface TransportOptions {
  /** `*4`, `*6`, `*`, or an address / host name. */
  readonly host: string;
  readonly port: number;
  /** Largest frame accepted; bigger ones close the socket with 1009. */
  readonly maxMessageBytes: number;
  /**
   * Bytes queued for one slow socket before `overBackpressure` is called. The
   * transport must never drop a message or the close frame in silence (uWS:
   * `maxBackpressure` 0 and `closeOnBackpressureLimit` off), and must check the
   * sockets often enough that a buffer stays near this: uWS checks on the turn
   * after every half-limit of published bytes, so a slow socket holds at most
   * this plus one event-loop turn of notifications.
   */
  readonly maxBackpressureBytes: number;
  /** Seconds without traffic before a ping is sent (a second silent period closes). */
  readonly idleTimeoutSeconds: number;
  /**
   * Sockets open plus upgrades being decided; at this many, a new upgrade is
   * answered 503 "Too many connections" and `refused('max-connections')` is
   * called. 0 or undefined: no limit.
   */
  readonly maxConnections?: number;
  /**
   * Milliseconds an upgrade may wait for `upgrade`'s decision; after that it is
   * answered 503 "Handshake timed out" (`refused('handshake-timeout')`) and the
   * late decision is ignored. Undefined: no limit.
   */
  readonly handshakeTimeoutMs?: number;
}


export interface Transport<S> {
  readonly name: string;
  readonly version: string;
  /** Whether this engine can serve wss:// here (the uWebSockets.js build that loaded has TLS). */
  readonly tlsAvailable: boolean;
  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number>;
  /**
   * Sends text to every socket subscribed to the topic, except `except` when given (a
   * socket that asked not to receive what it caused itself); returns how many sockets that was.
   */
  publish(topic: string, text: string, except?: TransportSocket<S>): number;
  /** Stops accepting connections, closes every socket with the code, and releases the port. */
  shutdown(code: CloseCode, reason: string): Promise<void>;
  socketCount(): number;
}

export type TransportFactory = <S>(options: TransportOptions, handlers: TransportHandlers<S>) => Transport<S>;

/** Certificate and key (PEM files) to serve wss:// and https://. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}
