// `node dist/healthcheck.js [/path]`: the container HEALTHCHECK (the slim image has no curl).
// It reads the PGWS_* variables the server reads and asks the server for /health (or the path
// given): on the admin port when PGWS_ADMIN_PORT is set, else on the main port, over https
// when the main port serves TLS (certificate not checked: it names the public host, and this
// asks 127.0.0.1). Exit 0 on 200, 1 otherwise, with one line saying why.
// Imports nothing but node: it runs every few seconds and must start fast.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pathToFileURL } from 'node:url';

const TIMEOUT_MS = 3000;

export interface HealthTarget {
  readonly url: string;
  readonly tls: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

/** Where the server answers /health, from the same variables the server reads. */
export function healthTarget(env: Env, path = '/health'): HealthTarget {
  const adminPort = nonEmpty(env.PGWS_ADMIN_PORT);
  if (adminPort !== undefined) {
    return { url: `http://${connectHost(nonEmpty(env.PGWS_ADMIN_HOST) ?? '127.0.0.1')}:${adminPort}${path}`, tls: false };
  }
  const tls = nonEmpty(env.PGWS_CERTIFICATE_FILE) !== undefined;
  const port = nonEmpty(env.PGWS_PORT) ?? '3000';
  return { url: `${tls ? 'https' : 'http'}://${connectHost(nonEmpty(env.PGWS_HOST) ?? '*4')}:${port}${path}`, tls };
}

/** A listen address as a place to connect to: a wildcard means this machine's loopback. */
function connectHost(listen: string): string {
  if (['*', '*4', '*6', '0.0.0.0', '::', '[::]'].includes(listen)) return '127.0.0.1';
  if (listen.includes(':') && !listen.startsWith('[')) return `[${listen}]`;
  return listen;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

/** GET the target: undefined when it answered 200, else why not. */
export function probe(target: HealthTarget, timeoutMs = TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    const onResponse = (res: IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 200) body += chunk;
      });
      res.on('end', () => {
        const text = body.trim().split('\n')[0]?.slice(0, 120) ?? '';
        resolve(res.statusCode === 200 ? undefined : `${target.url} answered ${res.statusCode ?? '?'} ${text}`.trim());
      });
      res.on('error', (err: Error) => resolve(`${target.url}: ${err.message}`));
    };
    const req = target.tls
      ? httpsRequest(target.url, { rejectUnauthorized: false, timeout: timeoutMs }, onResponse)
      : httpRequest(target.url, { timeout: timeoutMs }, onResponse);
    req.on('timeout', () => {
      req.destroy();
      resolve(`${target.url}: no answer within ${timeoutMs} ms`);
    });
    req.on('error', (err: Error) => resolve(`${target.url}: ${err.message}`));
    req.end();
  });
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  const target = healthTarget(process.env, arg !== undefined && arg.startsWith('/') ? arg : '/health');
  const failure = await probe(target);
  // Exit at once: an idle keep-alive connection must not hold the process open.
  const code = failure === undefined ? 0 : 1;
  const line = failure === undefined ? `ok: ${target.url}` : `unhealthy: ${failure.replace(/\s+/g, ' ').trim()}`;
  process.stdout.write(`${line}\n`, () => process.exit(code));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
