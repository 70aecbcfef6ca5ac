// The boundary between pgws and a WebSocket/HTTP engine. Nothing outside
// src/transport/ imports an engine; the relay and server speak only this.
import type { CloseCode } from '../types.js';

/** What the server learns from an upgrade request, copied before any await. */
export interface UpgradeRequest {
  /** Raw path, percent-encoded, without the query string. Holds the token: never log it. */
  readonly path: string;
  readonly remoteAddress: string;
}

export type UpgradeDecision<S> =
  | { readonly accept: true; readonly session: S }
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
  subscribe(channel: string): void;
  bufferedAmount(): number;
  readonly remoteAddress: string;
}

export interface TransportHandlers<S> {
  /** Decide on an upgrade. May be async; the transport handles the client going away meanwhile. */
  upgrade(req: UpgradeRequest): Promise<UpgradeDecision<S>>;
  open(socket: TransportSocket<S>): void;
  /** A text frame, or a binary frame that decoded as UTF-8. Invalid UTF-8 is closed with 1007 by the transport. */
  message(socket: TransportSocket<S>, text: string): void;
  close(socket: TransportSocket<S>, code: number, reason: string): void;
  /** Any request that is not a WebSocket upgrade. */
  http(req: HttpRequest): Promise<HttpAnswer>;
}

export interface TransportOptions {
  /** `*4`, `*6`, `*`, or an address / host name. */
  readonly host: string;
  readonly port: number;
  /** Largest frame accepted; bigger ones close the socket with 1009. */
  readonly maxMessageBytes: number;
  /** Bytes queued for one slow socket before it is closed. */
  readonly maxBackpressureBytes: number;
  /** Seconds without traffic before a ping is sent (a second silent period closes). */
  readonly idleTimeoutSeconds: number;
}

export interface Transport<S> {
  readonly name: string;
  readonly version: string;
  /** Starts listening; resolves with the bound port. */
  listen(): Promise<number>;
  /** Sends text to every socket subscribed to the channel; returns whether anyone was subscribed. */
  publish(channel: string, text: string): boolean;
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
