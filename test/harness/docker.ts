// The docker CLI for the image and compose tests: find an engine (or say why there is none),
// run commands, follow a container's log lines, poll HTTP with a deadline, and remove what a
// test created even when it fails (through leftovers.ts).
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { track } from './leftovers.js';

export interface Engine {
  /** Where the Docker API answered, for messages. */
  readonly endpoint: string;
  /** Podman behind the Docker API: no BuildKit, so the CLI must use the classic builder. */
  readonly podman: boolean;
}

export type EngineProbe = { readonly ok: true; readonly engine: Engine } | { readonly ok: false; readonly reason: string };

let engineEnv: NodeJS.ProcessEnv = process.env;

/**
 * Is there a Docker engine and a docker CLI? GET /_ping on DOCKER_HOST's unix socket or
 * /var/run/docker.sock; `needCompose` also asks for `docker compose`.
 */
export async function probeEngine(needCompose = false): Promise<EngineProbe> {
  const host = process.env.DOCKER_HOST;
  let socketPath: string | undefined;
  let url = 'http://docker/_ping';
  if (host === undefined || host === '') {
    socketPath = '/var/run/docker.sock';
    if (!existsSync(socketPath)) {
      return { ok: false, reason: 'no Docker engine answered: DOCKER_HOST is unset and /var/run/docker.sock does not exist' };
    }
  } else if (host.startsWith('unix://')) {
    socketPath = host.slice('unix://'.length);
  } else if (host.startsWith('tcp://')) {
    url = `http://${host.slice('tcp://'.length)}/_ping`;
  } else {
    return { ok: false, reason: `no Docker engine answered: DOCKER_HOST=${host} is neither unix:// nor tcp://` };
  }
  const endpoint = socketPath ?? url;
  const ping = await new Promise<{ status: number; podman: boolean } | string>((resolve) => {
    const req = request(url, { socketPath, timeout: 2000 }, (res: IncomingMessage) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, podman: res.headers['libpod-api-version'] !== undefined });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 2 s')));
    req.on('error', (err) => resolve(err.message));
    req.end();
  });
  if (typeof ping === 'string') return { ok: false, reason: `no Docker engine answered at ${endpoint}: ${ping}` };
  if (ping.status !== 200) return { ok: false, reason: `no Docker engine answered at ${endpoint}: /_ping gave ${ping.status}` };
  // Podman has no BuildKit: without this, a recent docker CLI tries buildx and fails.
  if (ping.podman && process.env.DOCKER_BUILDKIT === undefined) engineEnv = { ...process.env, DOCKER_BUILDKIT: '0' };
  try {
    await docker(['version', '--format', '{{.Client.Version}}'], { timeoutMs: 15_000 });
  } catch (err) {
    return { ok: false, reason: `a Docker engine answered at ${endpoint}, but the docker CLI did not run: ${firstLine(err)}` };
  }
  if (needCompose) {
    try {
      await docker(['compose', 'version'], { timeoutMs: 15_000 });
    } catch (err) {
      return { ok: false, reason: `a Docker engine answered at ${endpoint}, but \`docker compose\` did not run: ${firstLine(err)}` };
    }
  }
  return { ok: true, engine: { endpoint, podman: ping.podman } };
}

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `docker ...args`; rejects with the command and its stderr when it exits non-zero. */
export function docker(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'docker',
      args,
      {
        cwd: options.cwd,
        env: { ...engineEnv, ...options.env },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const tail = `${stderr}`.trim().split('\n').slice(-15).join('\n');
          reject(new Error(`docker ${args.join(' ')} failed (${err.killed ? 'timed out' : `exit ${String(err.code)}`}):\n${tail}`));
        } else {
          resolve({ stdout: `${stdout}`, stderr: `${stderr}` });
        }
      },
    );
  });
}

/** Like docker(), but never rejects: for teardown and for commands expected to fail. */
export async function dockerQuiet(args: readonly string[], options: RunOptions = {}): Promise<RunResult & { ok: boolean }> {
  try {
    return { ...(await docker(args, options)), ok: true };
  } catch (err) {
    return { stdout: '', stderr: err instanceof Error ? err.message : String(err), ok: false };
  }
}

/** A name no other run uses: `<prefix>-<pid>-<random>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** `docker network create`, removed after the file's tests. */
export async function createNetwork(name: string): Promise<void> {
  await docker(['network', 'create', name]);
  track(() => dockerQuiet(['network', 'rm', name]));
}

/** `docker run -d ...args` under `name`; the container and its anonymous volumes go after the file's tests. */
export async function runContainer(name: string, args: readonly string[]): Promise<void> {
  // Registered before it starts: a run that fails half-way may still leave a container.
  track(() => dockerQuiet(['rm', '-f', '-v', name]));
  await docker(['run', '-d', '--name', name, ...args], { timeoutMs: 120_000 });
}

/** The host port `docker port` reports for a container port, e.g. "3000/tcp". */
export async function hostPort(container: string, containerPort: string): Promise<number> {
  const { stdout } = await docker(['port', container, containerPort]);
  const match = /:(\d+)\s*$/m.exec(stdout.trim().split('\n')[0] ?? '');
  if (!match?.[1]) throw new Error(`docker port ${container} ${containerPort}: cannot read "${stdout.trim()}"`);
  return Number(match[1]);
}

/** `docker inspect -f <format> <name>`, trimmed. */
export async function inspect(name: string, format: string): Promise<string> {
  return (await docker(['inspect', '-f', format, name])).stdout.trim();
}

export type LogLine = Record<string, unknown>;

export interface LogFollower {
  /** Every line so far, parsed as JSON where it is JSON (else `{ text }`). */
  readonly lines: LogLine[];
  /** The first line (already seen or still to come) that matches, or a rejection after `ms`. */
  waitFor(predicate: (line: LogLine) => boolean, ms: number, what: string): Promise<LogLine>;
  stop(): void;
}

/** Follows `docker logs -f` (stdout and stderr) of a container from its start. */
export function followLogs(container: string): LogFollower {
  const child = spawn('docker', ['logs', '-f', container], { env: engineEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const waiters: { predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  const onText = (): ((chunk: Buffer) => void) => {
    let rest = '';
    return (chunk) => {
      rest += chunk.toString('utf8');
      const parts = rest.split('\n');
      rest = parts.pop() ?? '';
      for (const text of parts) {
        if (text.trim() === '') continue;
        const line = parseLine(text);
        lines.push(line);
        for (const waiter of [...waiters]) {
          if (waiter.predicate(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
    };
  };
  child.stdout.on('data', onText());
  child.stderr.on('data', onText());
  const stop = (): void => {
    if (child.exitCode === null) child.kill();
  };
  track(stop);
  return {
    lines,
    stop,
    waitFor(predicate, ms, what) {
      const seen = lines.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          const tail = lines.slice(-10).map((l) => JSON.stringify(l)).join('\n');
          reject(new Error(`${what}: no such log line of ${container} within ${ms} ms; last lines:\n${tail}`));
        }, ms);
        const waiter = {
          predicate,
          resolve: (line: LogLine) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        waiters.push(waiter);
      });
    },
  };
}

function parseLine(text: string): LogLine {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as LogLine;
  } catch {
    // not JSON: kept as text
  }
  return { text };
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly contentType: string | undefined;
}

/** One GET; rejects on a connection error. */
export function httpGet(url: string, timeoutMs = 3000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: res.headers['content-type'] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls GET `url` every 250 ms until it answers `status`, or fails after `ms` with the last answer. */
export async function waitForHttp(url: string, status: number, ms: number): Promise<HttpAnswer> {
  const deadline = Date.now() + ms;
  let last = 'nothing yet';
  for (;;) {
    try {
      const answer = await httpGet(url);
      if (answer.status === status) return answer;
      last = `${answer.status} ${answer.body.trim().slice(0, 200)}`;
    } catch (err) {
      last = firstLine(err);
    }
    if (Date.now() > deadline) throw new Error(`GET ${url}: no ${status} within ${ms} ms (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Polls `probe` every `everyMs` until it returns a value, or fails after `ms` naming the last one seen. */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined>,
  ms: number,
  what: string,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** A TCP port free on 127.0.0.1 right now (for compose files that take a host port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The sum of the Prometheus samples of `name` whose labels include `labels`, e.g.
 * metricValue(text, 'pgws_upgrades_total', { status: '101' }); 0 when there is none.
 */
export function metricValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map<string, string>();
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      have.set(pair[1] ?? '', pair[2] ?? '');
    }
    if (Object.entries(labels).every(([key, value]) => have.get(key) === value)) sum += Number(match[3]);
  }
  return sum;
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').find((l) => l.trim() !== '') ?? text;
}
