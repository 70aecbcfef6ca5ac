// The admin port (PGWS_ADMIN_PORT): /health, /ready and /metrics on plain node:http,
// apart from the WebSocket port so that metrics need not be public and a probe never
// queues behind socket traffic. Anything else is 404.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Metrics } from '../metrics.js';
import { listenAddress } from '../transport/listen-address.js';
import type { HttpAnswer } from '../transport/types.js';
import { healthAnswer, metricsAnswer, readyAnswer, type ReadinessProbes } from './endpoints.js';

export interface AdminServer {
  readonly port: number;
  stop(): Promise<void>;
}

export async function startAdminServer(host: string, port: number, probes: ReadinessProbes, metrics: Metrics): Promise<AdminServer> {
  metrics.collectProcessMetrics();
  const server = http.createServer((req, res) => void answer(req, res));
  // Probes and scrapers come back every few seconds: keep their connections, but not forever.
  server.keepAliveTimeout = 65_000;

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = (req.url ?? '/').split('?')[0];
    let reply: HttpAnswer;
    if (method !== 'GET' && method !== 'HEAD') {
      reply = { status: 405, headers: { Allow: 'GET, HEAD' }, body: 'Method not allowed\n' };
    } else if (path === '/health') {
      reply = healthAnswer();
    } else if (path === '/ready') {
      reply = await readyAnswer(probes);
    } else if (path === '/metrics') {
      reply = await metricsAnswer(metrics).catch(() => ({ status: 500, headers: {}, body: 'Internal error\n' }));
    } else {
      reply = { status: 404, headers: {}, body: 'Not found: this port serves /health, /ready and /metrics\n' };
    }
    const headers = { 'Content-Type': 'text/plain; charset=utf-8', ...reply.headers, 'Content-Length': String(Buffer.byteLength(reply.body)) };
    res.writeHead(reply.status, headers);
    res.end(method === 'HEAD' ? undefined : reply.body);
  }

  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on the admin port ${host}:${port} (${err.message})`)));
    server.listen({ host: listenAddress(host), port }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });

  return {
    port: bound,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
