// The process around a server: embedded PostgreSQL when asked, signals, exit codes.
//   exit 0  stopped by SIGINT/SIGTERM
//   exit 1  could not start (database unreachable after PGWS_RETRIES, port in use,
//           bad key material) or the listener was lost without PGWS_CHECK_LISTENER_INTERVAL
//   exit 2  configuration error (reported by cli.ts before we get here), or a transport
//           asked for by name (PGWS_TRANSPORT=uws) that cannot run here
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { describeConfig } from './config.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded.js';
import { createLogger, type Logger } from './log.js';
import { start, type RunningServer } from './server.js';
import { planTransport } from './transport/select.js';
import type { Config } from './types.js';
import { VERSION } from './version.js';

/** SIGTERM must end the process within this, even if a database connection hangs. */
const SHUTDOWN_DEADLINE_MS = 4500;

export async function runDaemon(config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  log.info({ version: VERSION, node: process.version, config: describeConfig(config) }, 'starting pgws');

  // Before any database work: an explicit transport that cannot run here is a configuration problem.
  const plan = planTransport(config.transport, config.certificateFile !== undefined);
  if (!plan.ok) {
    log.fatal({ reason: plan.error }, 'pgws could not start');
    process.stderr.write(`pgws: ${plan.error}\n`);
    process.exitCode = 2;
    return;
  }

  let embedded: EmbeddedDatabase | undefined;
  let effective = config;
  if (config.embedded) {
    if (config.dbUri === undefined) {
      log.info('no PGWS_DB_URI: starting an embedded PostgreSQL for development (its data is deleted on exit)');
      try {
        embedded = await startEmbeddedPostgres();
      } catch (err) {
        failStart(log, `cannot start the embedded PostgreSQL: ${message(err)}`);
        return;
      }
    }
    effective = embeddedConfig(config, embedded);
  }

  // Installed before start(), and never removed: a supervisor may send SIGTERM as soon as it
  // reads `pgws ready`, which start() logs just before it returns, and removing the last
  // listener drops a signal that is still pending. What a signal does depends on the phase.
  let onSignal = (signal: NodeJS.Signals): void => {
    // Until the server is up there is nothing to close.
    log.info({ why: signal }, 'stopped while starting');
    void (embedded?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
  };
  process.on('SIGINT', (signal) => onSignal(signal));
  process.on('SIGTERM', (signal) => onSignal(signal));
  let server: RunningServer;
  try {
    server = await start(effective, { log });
  } catch (err) {
    await embedded?.stop();
    failStart(log, message(err));
    return;
  }

  let exiting = false;
  const exit = async (code: number, why: string): Promise<void> => {
    if (exiting) return;
    exiting = true;
    log.info({ why }, 'shutting down');
    setTimeout(() => {
      log.error('shutdown took too long; exiting anyway');
      process.exit(code);
    }, SHUTDOWN_DEADLINE_MS).unref();
    await server.stop();
    await embedded?.stop();
    process.exit(code);
  };
  onSignal = (signal) => void exit(0, signal);
  server.events.on('fatal', (err) => void exit(1, err.message));

  // A token is printed only for a secret pgws generated itself, never for one the user gave.
  if (config.embedded) await printEmbeddedWelcome(effective, server.port, embedded !== undefined, config.jwtSecret === undefined);
}

function failStart(log: Logger, reason: string): void {
  log.fatal({ reason }, 'pgws could not start');
  process.stderr.write(`pgws: could not start: ${reason}\n`);
  process.exitCode = 1;
}

/** Development defaults of --embedded: a database if none was given, a secret, the example page. */
function embeddedConfig(config: Config, db: EmbeddedDatabase | undefined): Config {
  return Object.freeze({
    ...config,
    dbUri: config.dbUri ?? db?.uri,
    // A random secret unless one was given: the welcome line carries a token for it.
    jwtSecret: config.jwtSecret ?? randomBytes(32).toString('base64url'),
    jwtSecretIsBase64: config.jwtSecret === undefined ? false : config.jwtSecretIsBase64,
    metaChannel: config.metaChannel ?? 'meta',
    rootPath: config.rootPath ?? fileURLToPath(new URL('../client-example/', import.meta.url)),
  });
}

/**
 * Development only: one line a person can open. It carries a token for the
 * throwaway secret generated above, which is why printing it is acceptable
 * here and nowhere else. It goes to stderr so stdout stays pure JSON logs.
 */
async function printEmbeddedWelcome(config: Config, port: number, ownDatabase: boolean, generatedSecret: boolean): Promise<void> {
  if (!generatedSecret || config.jwtSecret === undefined) {
    process.stderr.write(`\npgws is running on port ${port}.\n\n`);
    return;
  }
  const token = await new SignJWT({ mode: 'rw', channels: ['chat', config.metaChannel ?? 'meta'] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .sign(new TextEncoder().encode(config.jwtSecret));
  const psqlTarget = ownDatabase ? `'${config.dbUri ?? ''}'` : '<your database>';
  process.stderr.write(
    `\npgws is running${ownDatabase ? ' with an embedded PostgreSQL' : ''}. Open this in a browser:\n\n` +
      `  http://localhost:${port}/#token=${token}\n\n` +
      `Send from the database with psql:\n` +
      `  psql ${psqlTarget} -c "SELECT pg_notify('${config.listenChannel}', json_build_object('channel','chat','payload','hello')::text)"\n\n`,
  );
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
