// PGWS_TRANSPORT: which engine auto picks and why, what an explicit choice does when it
// cannot run here (start() refuses, the daemon exits 2), and what --version says.
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { createLogger } from '../src/log.js';
import { start } from '../src/server.js';
import { planTransport, TransportUnavailableError } from '../src/transport/select.js';
import { loadUws, UwsLoadError, type LoadedUws } from '../src/transport/uws-loader.js';
import { cleanEnv, runPgws } from './harness/child.js';
import { createTestDatabase } from './harness/db.js';
import { SECRET, startPgws, testConfig } from './harness/pgws.js';
import { hasOpenssl, makeCertificate } from './harness/tls.js';

/** Stand-ins for what the loader finds on other systems. */
const withTls = (): LoadedUws => ({ ...loadUws(), build: 'uWebSockets.js', version: '20.57.0', supportsTls: true });
const withoutTls = (): LoadedUws => ({ ...loadUws(), build: 'Node-20 build', version: '20.30.0', supportsTls: false });
const unloadable = (): UwsLoadError =>
  new UwsLoadError('cannot load uWebSockets.js on this system (long explanation)', 'uWebSockets.js needs glibc 2.38, this system has 2.36');

describe('planTransport', () => {
  it.each([
    ['auto', false, withTls, { ok: true, engine: 'uws' }],
    ['auto', true, withTls, { ok: true, engine: 'uws' }],
    ['auto', false, withoutTls, { ok: true, engine: 'uws' }],
    ['uws', false, withoutTls, { ok: true, engine: 'uws' }],
    ['uws', true, withTls, { ok: true, engine: 'uws' }],
    ['ws', false, withTls, { ok: true, engine: 'ws' }],
    ['ws', true, unloadable, { ok: true, engine: 'ws' }],
  ] as const)('%s, TLS %s, %o build: %o', (choice, tls, probe, expected) => {
    expect(planTransport(choice, tls, probe)).toEqual(expected);
  });

  it('auto falls back to ws with one line naming the glibc it needs and the one it has', () => {
    expect(planTransport('auto', false, unloadable)).toEqual({
      ok: true,
      engine: 'ws',
      fallback: 'uWebSockets.js needs glibc 2.38, this system has 2.36: using ws',
    });
  });

  it('auto with TLS on a build without TLS uses ws and says why', () => {
    const plan = planTransport('auto', true, withoutTls);
    expect(plan).toMatchObject({ ok: true, engine: 'ws', fallback: expect.stringMatching(/Node-20 build, has no TLS: using ws for wss:\/\//) });
  });

  it('explicit uws that cannot load is an error with the full reason', () => {
    const plan = planTransport('uws', false, unloadable);
    expect(plan).toEqual({ ok: false, error: 'PGWS_TRANSPORT=uws, but cannot load uWebSockets.js on this system (long explanation)' });
  });

  it('explicit uws with TLS on a build without TLS is an error naming the way out', () => {
    const plan = planTransport('uws', true, withoutTls);
    expect(plan.ok).toBe(false);
    if (!plan.ok) expect(plan.error).toMatch(/has no TLS\. Use PGWS_TRANSPORT=auto or ws/);
  });
});

describe('on this system', () => {
  const noTlsHere = !loadUws().supportsTls;

  it.runIf(noTlsHere && hasOpenssl())('start() refuses PGWS_TRANSPORT=uws with TLS rather than serving plain ws', async () => {
    const db = await createTestDatabase();
    const cert = makeCertificate();
    const attempt = start(testConfig(db.uri, { transport: 'uws', certificateFile: cert.certFile, keyFile: cert.keyFile }), {
      log: createLogger('silent'),
    });
    await expect(attempt).rejects.toThrow(TransportUnavailableError);
    await expect(attempt).rejects.toThrow(/has no TLS/);
  });

  it.runIf(noTlsHere && hasOpenssl())('auto with TLS serves wss:// through ws and logs one warning saying why', async () => {
    const db = await createTestDatabase();
    const cert = makeCertificate();
    const srv = await startPgws(db.uri, { transport: 'auto', certificateFile: cert.certFile, keyFile: cert.keyFile });
    expect(srv.server.transport).toBe('ws');
    const warnings = srv.logs.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/has no TLS: using ws for wss:\/\//);
    const ready = srv.logs.find((l) => l.msg === 'pgws ready');
    expect(ready).toMatchObject({ tls: true, transport: expect.stringMatching(/^ws \(ws \d+\.\d+\.\d+ on node:https\)$/) });
  });

  it('auto without TLS uses uws here, and the ready line names its build and version', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { transport: 'auto' });
    expect(srv.server.transport).toBe('uws');
    expect(srv.logs.filter((l) => l.level === 40)).toEqual([]);
    const ready = srv.logs.find((l) => l.msg === 'pgws ready');
    expect(ready?.transport).toBe(`uws (${loadUws().build} ${loadUws().version})`);
  });

  it.runIf(noTlsHere && hasOpenssl())('the daemon exits 2 with the reason when PGWS_TRANSPORT=uws cannot serve TLS', async () => {
    const cert = makeCertificate();
    const child = runPgws(
      [
        '--db-uri', 'postgres://nobody@127.0.0.1:1/none', '--jwt-secret', SECRET, '--port', String(await freePort()),
        '--certificate-file', cert.certFile, '--key-file', cert.keyFile,
      ],
      cleanEnv({ PGWS_TRANSPORT: 'uws' }),
    );
    expect((await child.exited).code).toBe(2);
    expect(child.stderr.join('\n')).toMatch(/^pgws: PGWS_TRANSPORT=uws with TLS .* has no TLS/m);
  });
});
