// Configuration loading (PROTOCOL.md §7): parsing of every variable, precedence of the
// sources, @file values, error reporting and the secrecy of secrets. No network, no database.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, loadConfig } from '../src/config.js';
import { OPTION_LIST, renderSampleEnv } from '../src/options.js';
import type { Config } from '../src/types.js';
import { track } from './harness/leftovers.js';

const DB_PASSWORD = 'hunter2-db-password';
const DB_URI = `postgres://app:${DB_PASSWORD}@db:5432/x`;
const JWT_SECRET = 'jwt-secret-that-must-never-leak-0123456789';
/** The minimum for a valid configuration; everything else takes its default. */
const REQUIRED = { PGWS_DB_URI: DB_URI, PGWS_JWT_SECRET: JWT_SECRET };
const ARGV0 = ['node', 'pgws'];

/** An empty folder removed after the file's tests. */
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgws-config-'));
  track(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeFile(dir: string, name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  args?: string[];
  cwd?: string;
}

function load({ env = REQUIRED, args = [], cwd = tempDir() }: LoadOptions = {}) {
  return loadConfig({ argv: [...ARGV0, ...args], env, cwd });
}

function loadOk(options: LoadOptions = {}): Config {
  const result = load(options);
  if (!result.ok) throw new Error(`expected a valid configuration, got:\n${result.errors.join('\n')}`);
  return result.config;
}

function loadErrors(options: LoadOptions = {}): string[] {
  const result = load(options);
  if (result.ok) throw new Error('expected configuration errors, got a valid configuration');
  return result.errors;
}

describe('defaults', () => {
  it('fills every option not given with the postgres-websockets default', () => {
    expect(loadOk()).toEqual({
      dbUri: DB_URI,
      jwtSecret: JWT_SECRET,
      jwtSecretIsBase64: false,
      host: '*4',
      port: 3000,
      listenChannel: 'postgres-websockets-listener',
      metaChannel: undefined,
      rootPath: undefined,
      poolSize: 10,
      retries: 5,
      checkListenerInterval: 0,
      maxMessageSize: 7999,
      maxBackpressure: 1048576,
      maxConnections: 10000,
      handshakeTimeout: 10000,
      maxMessagesPerSecond: 0,
      maxQueuedMessages: 256,
      maxSubscriptions: 100,
      journal: false,
      journalRetention: 86_400,
      rpcSchema: undefined,
      rpcDefaultRole: undefined,
      rpcTimeout: 5000,
      certificateFile: undefined,
      keyFile: undefined,
      adminPort: undefined,
      adminHost: '127.0.0.1',
      transport: 'auto',
      logLevel: 'info',
      embedded: false,
      jwksUrl: undefined,
      jwtAudience: undefined,
      jwtIssuer: undefined,
      modeClaim: 'mode',
      channelsClaim: 'channels',
      defaultMode: undefined,
      jwtCookie: undefined,
      allowedOrigins: undefined,
    });
  });

  it('returns a frozen Config', () => {
    const config = loadOk();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('has one table row per Config field, each with a distinct variable and flag', () => {
    const keys = OPTION_LIST.map((row) => row.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(Object.keys(loadOk()).sort()).toEqual([...keys].sort());
    expect(new Set(OPTION_LIST.map((row) => row.env)).size).toBe(keys.length);
    expect(new Set(OPTION_LIST.map((row) => row.flag.split(' ')[0])).size).toBe(keys.length);
  });
});

describe('valid values', () => {
  it.each<[string, string, keyof Config, Config[keyof Config]]>([
    ['PGWS_DB_URI', 'postgresql://u:p@h/db', 'dbUri', 'postgresql://u:p@h/db'],
    ['PGWS_DB_URI', 'postgres://u:p@h1:5432,h2:5432/db', 'dbUri', 'postgres://u:p@h1:5432,h2:5432/db'],
    ['PGWS_JWT_SECRET', '{"kty":"oct","k":"c2VjcmV0"}', 'jwtSecret', '{"kty":"oct","k":"c2VjcmV0"}'],
    ['PGWS_JWT_SECRET_BASE64', 'true', 'jwtSecretIsBase64', true],
    ['PGWS_JWT_SECRET_BASE64', 'TRUE', 'jwtSecretIsBase64', true],
    ['PGWS_JWT_SECRET_BASE64', '1', 'jwtSecretIsBase64', true],
    ['PGWS_JWT_SECRET_BASE64', 'Yes', 'jwtSecretIsBase64', true],
    ['PGWS_JWT_SECRET_BASE64', 'false', 'jwtSecretIsBase64', false],
    ['PGWS_JWT_SECRET_BASE64', '0', 'jwtSecretIsBase64', false],
    ['PGWS_JWT_SECRET_BASE64', 'NO', 'jwtSecretIsBase64', false],
    ['PGWS_HOST', '*6', 'host', '*6'],
    ['PGWS_HOST', '*', 'host', '*'],
    ['PGWS_HOST', '127.0.0.1', 'host', '127.0.0.1'],
    ['PGWS_HOST', 'localhost', 'host', 'localhost'],
    ['PGWS_PORT', '0', 'port', 0],
    ['PGWS_PORT', '8080', 'port', 8080],
    ['PGWS_PORT', '65535', 'port', 65535],
    ['PGWS_PORT', ' 80 ', 'port', 80],
    ['PGWS_LISTEN_CHANNEL', 'my-listener', 'listenChannel', 'my-listener'],
    ['PGWS_LISTEN_CHANNEL', 'x'.repeat(63), 'listenChannel', 'x'.repeat(63)],
    ['PGWS_META_CHANNEL', 'meta', 'metaChannel', 'meta'],
    ['PGWS_META_CHANNEL', '', 'metaChannel', undefined],
    ['PGWS_POOL_SIZE', '1', 'poolSize', 1],
    ['PGWS_POOL_SIZE', '50', 'poolSize', 50],
    ['PGWS_RETRIES', '0', 'retries', 0],
    ['PGWS_RETRIES', '12', 'retries', 12],
    ['PGWS_CHECK_LISTENER_INTERVAL', '0', 'checkListenerInterval', 0],
    ['PGWS_CHECK_LISTENER_INTERVAL', '1000', 'checkListenerInterval', 1000],
    ['PGWS_LOG_LEVEL', 'debug', 'logLevel', 'debug'],
    ['PGWS_LOG_LEVEL', 'SILENT', 'logLevel', 'silent'],
    ['PGWS_LOG_LEVEL', 'fatal', 'logLevel', 'fatal'],
    ['PGWS_EMBEDDED', 'true', 'embedded', true],
    ['PGWS_EMBEDDED', 'no', 'embedded', false],
    ['PGWS_TRANSPORT', 'ws', 'transport', 'ws'],
    ['PGWS_TRANSPORT', 'UWS', 'transport', 'uws'],
    ['PGWS_TRANSPORT', 'auto', 'transport', 'auto'],
  ])('%s=%j sets %s', (variable, value, key, expected) => {
    expect(loadOk({ env: { ...REQUIRED, [variable]: value } })[key]).toEqual(expected);
  });

  it('accepts an existing folder as PGWS_ROOT_PATH, resolved against the working folder', () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, 'public'));
    expect(loadOk({ cwd, env: { ...REQUIRED, PGWS_ROOT_PATH: 'public' } }).rootPath).toBe(join(cwd, 'public'));
  });

  it('accepts a certificate and key given together, as absolute paths', () => {
    const cwd = tempDir();
    writeFile(cwd, 'cert.pem', 'cert');
    writeFile(cwd, 'key.pem', 'key');
    const config = loadOk({ cwd, env: { ...REQUIRED, PGWS_CERTIFICATE_FILE: 'cert.pem', PGWS_KEY_FILE: 'key.pem' } });
    expect(config.certificateFile).toBe(join(cwd, 'cert.pem'));
    expect(config.keyFile).toBe(join(cwd, 'key.pem'));
  });
});

describe('invalid values', () => {
  it.each<[string, string, string]>([
    ['PGWS_PORT', 'abc', 'PGWS_PORT (--port): must be an integer from 0 to 65535, got "abc"'],
    ['PGWS_PORT', '65536', 'PGWS_PORT (--port): must be an integer from 0 to 65535, got "65536"'],
    ['PGWS_PORT', '-1', 'PGWS_PORT (--port): must be an integer from 0 to 65535, got "-1"'],
    ['PGWS_PORT', '80.5', 'PGWS_PORT (--port): must be an integer from 0 to 65535, got "80.5"'],
    ['PGWS_PORT', '', 'PGWS_PORT (--port): must be an integer from 0 to 65535, got ""'],
    ['PGWS_POOL_SIZE', '0', 'PGWS_POOL_SIZE (--pool-size): must be an integer of at least 1, got "0"'],
    ['PGWS_POOL_SIZE', 'ten', 'PGWS_POOL_SIZE (--pool-size): must be an integer of at least 1, got "ten"'],
    ['PGWS_RETRIES', '-3', 'PGWS_RETRIES (--retries): must be an integer of at least 0, got "-3"'],
    ['PGWS_RETRIES', '2.5', 'PGWS_RETRIES (--retries): must be an integer of at least 0, got "2.5"'],
    [
      'PGWS_CHECK_LISTENER_INTERVAL',
      '1s',
      'PGWS_CHECK_LISTENER_INTERVAL (--check-listener-interval): must be an integer of at least 0, got "1s"',
    ],
    [
      'PGWS_CHECK_LISTENER_INTERVAL',
      '',
      'PGWS_CHECK_LISTENER_INTERVAL (--check-listener-interval): must be an integer of at least 0, got ""',
    ],
    [
      'PGWS_JWT_SECRET_BASE64',
      'maybe',
      'PGWS_JWT_SECRET_BASE64 (--jwt-secret-base64): must be true or false (1/0 and yes/no work too), got "maybe"',
    ],
    ['PGWS_EMBEDDED', 'on', 'PGWS_EMBEDDED (--embedded): must be true or false (1/0 and yes/no work too), got "on"'],
    ['PGWS_TRANSPORT', 'uwebsockets', 'PGWS_TRANSPORT (--transport): must be one of auto, uws, ws, got "uwebsockets"'],
    ['PGWS_HOST', '', 'PGWS_HOST (--host): must be *4, *6, *, an IP address or a host name, got ""'],
    ['PGWS_HOST', 'local host', 'PGWS_HOST (--host): must be *4, *6, *, an IP address or a host name, got "local host"'],
    ['PGWS_LISTEN_CHANNEL', '', 'PGWS_LISTEN_CHANNEL (--listen-channel): must not be empty, got ""'],
    [
      'PGWS_LISTEN_CHANNEL',
      'é'.repeat(32),
      `PGWS_LISTEN_CHANNEL (--listen-channel): must be at most 63 bytes (a PostgreSQL identifier), this one has 64, got "${'é'.repeat(32)}"`,
    ],
    [
      'PGWS_LOG_LEVEL',
      'verbose',
      'PGWS_LOG_LEVEL (--log-level): must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    ],
    [
      'PGWS_DB_URI',
      'mysql://root@localhost/db',
      'PGWS_DB_URI (--db-uri): must start with postgres:// or postgresql:// (the value is not shown: it may hold a password)',
    ],
    ['PGWS_JWT_SECRET', '   ', 'PGWS_JWT_SECRET (--jwt-secret): must not be blank'],
  ])('%s=%j is rejected', (variable, value, expected) => {
    expect(loadErrors({ env: { ...REQUIRED, [variable]: value } })).toEqual([expected]);
  });

  it('rejects a PGWS_ROOT_PATH that does not exist, naming where it looked', () => {
    const cwd = tempDir();
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_ROOT_PATH: 'missing' } })).toEqual([
      `PGWS_ROOT_PATH (--root-path): must be an existing directory; ${join(cwd, 'missing')}: no such file or directory, got "missing"`,
    ]);
  });

  it('rejects a PGWS_ROOT_PATH that is a file', () => {
    const cwd = tempDir();
    writeFile(cwd, 'index.html', '<p>hi</p>');
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_ROOT_PATH: 'index.html' } })).toEqual([
      `PGWS_ROOT_PATH (--root-path): must be an existing directory; ${join(cwd, 'index.html')} is not a directory, got "index.html"`,
    ]);
  });

  it.each([
    ['PGWS_CERTIFICATE_FILE', '--certificate-file'],
    ['PGWS_KEY_FILE', '--key-file'],
  ])('rejects a %s that does not exist or is a folder', (variable, flag) => {
    const cwd = tempDir();
    mkdirSync(join(cwd, 'folder'));
    writeFile(cwd, 'other.pem', 'pem');
    const other = variable === 'PGWS_KEY_FILE' ? 'PGWS_CERTIFICATE_FILE' : 'PGWS_KEY_FILE';
    expect(loadErrors({ cwd, env: { ...REQUIRED, [other]: 'other.pem', [variable]: 'nope.pem' } })).toEqual([
      `${variable} (${flag}): must be a readable file; ${join(cwd, 'nope.pem')}: no such file or directory, got "nope.pem"`,
    ]);
    expect(loadErrors({ cwd, env: { ...REQUIRED, [other]: 'other.pem', [variable]: 'folder' } })).toEqual([
      `${variable} (${flag}): must be a readable file; ${join(cwd, 'folder')} is not a file, got "folder"`,
    ]);
  });

  it.runIf(process.getuid?.() !== 0)('rejects a certificate file it cannot read', () => {
    const cwd = tempDir();
    writeFile(cwd, 'key.pem', 'key');
    chmodSync(writeFile(cwd, 'cert.pem', 'cert'), 0o000);
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_CERTIFICATE_FILE: 'cert.pem', PGWS_KEY_FILE: 'key.pem' } })).toEqual([
      `PGWS_CERTIFICATE_FILE (--certificate-file): must be a readable file; ${join(cwd, 'cert.pem')}: permission denied, got "cert.pem"`,
    ]);
  });

  it('rejects a certificate without its key, and a key without its certificate', () => {
    const cwd = tempDir();
    writeFile(cwd, 'cert.pem', 'cert');
    writeFile(cwd, 'key.pem', 'key');
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_CERTIFICATE_FILE: 'cert.pem' } })).toEqual([
      'PGWS_KEY_FILE (--key-file): required when PGWS_CERTIFICATE_FILE (--certificate-file) is set, since serving wss:// needs both',
    ]);
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_KEY_FILE: 'key.pem' } })).toEqual([
      'PGWS_CERTIFICATE_FILE (--certificate-file): required when PGWS_KEY_FILE (--key-file) is set, since serving wss:// needs both',
    ]);
  });

  it('rejects an admin port equal to the main port, and a bad admin port or host', () => {
    expect(loadErrors({ env: { ...REQUIRED, PGWS_PORT: '4000', PGWS_ADMIN_PORT: '4000' } })).toEqual([
      'PGWS_ADMIN_PORT (--admin-port): must differ from PGWS_PORT (--port) (4000): the admin endpoints need a port of their own',
    ]);
    expect(loadErrors({ env: { ...REQUIRED, PGWS_ADMIN_PORT: '70000', PGWS_ADMIN_HOST: 'a b' } })).toEqual([
      'PGWS_ADMIN_PORT (--admin-port): must be an integer from 0 to 65535, got "70000"',
      'PGWS_ADMIN_HOST (--admin-host): must be *4, *6, *, an IP address or a host name, got "a b"',
    ]);
    // Both 0: each gets a free port of its own.
    expect(loadOk({ env: { ...REQUIRED, PGWS_PORT: '0', PGWS_ADMIN_PORT: '0' } })).toMatchObject({ port: 0, adminPort: 0 });
  });
});

describe('required values and embedded mode', () => {
  it('requires PGWS_DB_URI, saying how to give one', () => {
    expect(loadErrors({ env: { PGWS_JWT_SECRET: JWT_SECRET } })).toEqual([
      'PGWS_DB_URI (--db-uri): required. Give a PostgreSQL URI such as postgres://user:pass@localhost:5432/db (or @/path/to/file), or run with --embedded for a throwaway development database',
    ]);
  });

  it('requires PGWS_JWT_SECRET', () => {
    const errors = loadErrors({ env: { PGWS_DB_URI: DB_URI } });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^PGWS_JWT_SECRET \(--jwt-secret\): required\. .*--embedded/);
  });

  it('reads an empty PGWS_DB_URI as missing', () => {
    expect(loadErrors({ env: { ...REQUIRED, PGWS_DB_URI: '' } })[0]).toMatch(/^PGWS_DB_URI \(--db-uri\): required\./);
  });

  it.each([
    ['--embedded', { args: ['--embedded'], env: {} }],
    ['PGWS_EMBEDDED=true', { env: { PGWS_EMBEDDED: 'true' } }],
  ])('needs neither the URI nor the secret with %s', (_name, options) => {
    const config = loadOk(options);
    expect(config.embedded).toBe(true);
    expect(config.dbUri).toBeUndefined();
    expect(config.jwtSecret).toBeUndefined();
  });

  it('keeps a given URI and secret in embedded mode', () => {
    const config = loadOk({ args: ['--embedded'] });
    expect(config).toMatchObject({ embedded: true, dbUri: DB_URI, jwtSecret: JWT_SECRET });
  });

  it('does not also claim a value is missing when the embedded switch itself is invalid', () => {
    expect(loadErrors({ env: { PGWS_EMBEDDED: 'sometimes' } })).toEqual([
      'PGWS_EMBEDDED (--embedded): must be true or false (1/0 and yes/no work too), got "sometimes"',
    ]);
  });
});

describe('command-line flags', () => {
  it('sets every option from its flag', () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, 'www'));
    writeFile(cwd, 'cert.pem', 'cert');
    writeFile(cwd, 'key.pem', 'key');
    const config = loadOk({
      cwd,
      env: {},
      args: [
        '--db-uri', DB_URI,
        '--jwt-secret', JWT_SECRET,
        '--jwt-secret-base64',
        '--host', '::1',
        '--port=4000',
        '--listen-channel', 'listener',
        '--meta-channel', 'meta',
        '--root-path', 'www',
        '--pool-size', '3',
        '--retries', '1',
        '--check-listener-interval', '500',
        '--max-message-size', '4000',
        '--max-backpressure', '65536',
        '--max-connections', '50',
        '--handshake-timeout', '2000',
        '--max-messages-per-second', '20',
        '--max-queued-messages', '8',
        '--max-subscriptions', '5',
        '--journal', 'on',
        '--journal-retention', '15m',
        '--rpc-schema', 'api',
        '--rpc-default-role', 'web_anon',
        '--rpc-timeout', '250',
        '--certificate-file', 'cert.pem',
        '--key-file', 'key.pem',
        '--admin-port', '9090',
        '--admin-host', '0.0.0.0',
        '--transport', 'ws',
        '--log-level', 'warn',
        '--embedded',
        '--jwks-url', 'https://idp.example.com/.well-known/jwks.json',
        '--jwt-audience', 'api, other',
        '--jwt-issuer', 'https://idp.example.com/',
        '--mode-claim', 'app_metadata.pgws.mode',
        '--channels-claim', 'app_metadata.pgws.channels',
        '--default-mode', 'r',
        '--jwt-cookie', 'session',
        '--allowed-origins', 'https://app.example.com, https://*.example.com',
      ],
    });
    expect(config).toEqual({
      dbUri: DB_URI,
      jwtSecret: JWT_SECRET,
      jwtSecretIsBase64: true,
      host: '::1',
      port: 4000,
      listenChannel: 'listener',
      metaChannel: 'meta',
      rootPath: join(cwd, 'www'),
      poolSize: 3,
      retries: 1,
      checkListenerInterval: 500,
      maxMessageSize: 4000,
      maxBackpressure: 65536,
      maxConnections: 50,
      handshakeTimeout: 2000,
      maxMessagesPerSecond: 20,
      maxQueuedMessages: 8,
      maxSubscriptions: 5,
      journal: true,
      journalRetention: 900,
      rpcSchema: 'api',
      rpcDefaultRole: 'web_anon',
      rpcTimeout: 250,
      certificateFile: join(cwd, 'cert.pem'),
      keyFile: join(cwd, 'key.pem'),
      adminPort: 9090,
      adminHost: '0.0.0.0',
      transport: 'ws',
      logLevel: 'warn',
      embedded: true,
      jwksUrl: 'https://idp.example.com/.well-known/jwks.json',
      jwtAudience: ['api', 'other'],
      jwtIssuer: ['https://idp.example.com/'],
      modeClaim: 'app_metadata.pgws.mode',
      channelsClaim: 'app_metadata.pgws.channels',
      defaultMode: 'r',
      jwtCookie: 'session',
      allowedOrigins: ['https://app.example.com', 'https://*.example.com'],
    });
  });

  it('refuses PGWS_JWT_COOKIE without PGWS_ALLOWED_ORIGINS, saying why (cross-site WebSocket hijacking)', () => {
    expect(loadErrors({ env: { ...REQUIRED, PGWS_JWT_COOKIE: 'session' } })).toEqual([
      expect.stringMatching(/^PGWS_JWT_COOKIE \(--jwt-cookie\): needs PGWS_ALLOWED_ORIGINS \(--allowed-origins\): .*cross-site WebSocket hijacking/),
    ]);
    expect(loadOk({ env: { ...REQUIRED, PGWS_JWT_COOKIE: 'session', PGWS_ALLOWED_ORIGINS: 'https://app.example.com' } })).toMatchObject({
      jwtCookie: 'session',
      allowedOrigins: ['https://app.example.com'],
    });
  });

  it('takes PGWS_JWKS_URL instead of PGWS_JWT_SECRET, and needs one of the two', () => {
    expect(loadOk({ env: { PGWS_DB_URI: DB_URI, PGWS_JWKS_URL: 'https://idp.example.com/jwks.json' } })).toMatchObject({
      jwtSecret: undefined,
      jwksUrl: 'https://idp.example.com/jwks.json',
    });
    expect(loadErrors({ env: { PGWS_DB_URI: DB_URI } })).toEqual([expect.stringMatching(/^PGWS_JWT_SECRET \(--jwt-secret\): required\. .*PGWS_JWKS_URL/)]);
  });

  it.each<[string, string, RegExp]>([
    ['PGWS_JWKS_URL', 'ftp://idp.example.com/jwks', /https:\/\/ or http:\/\//],
    ['PGWS_ALLOWED_ORIGINS', 'app.example.com', /not an origin/],
    ['PGWS_ALLOWED_ORIGINS', 'https://app.example.com/path', /not an origin/],
    ['PGWS_DEFAULT_MODE', 'admin', /r, w or rw/],
    ['PGWS_MODE_CLAIM', 'app..mode', /dotted path/],
    ['PGWS_JWT_COOKIE', 'bad name', /cookie name/],
    ['PGWS_JWT_AUDIENCE', ' , ', /audience/],
  ])('refuses %s=%j with a clear error', (name, value, error) => {
    const errors = loadErrors({ env: { ...REQUIRED, [name]: value, ...(name === 'PGWS_JWT_COOKIE' ? { PGWS_ALLOWED_ORIGINS: '*' } : {}) } });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(error);
    expect(errors[0]?.startsWith(name)).toBe(true);
  });

  it('hides the credentials of PGWS_JWKS_URL in describeConfig, and lists origins and audiences', () => {
    const described = describeConfig(
      loadOk({ env: { ...REQUIRED, PGWS_JWKS_URL: 'https://user:pw@idp.example.com/jwks.json?key=abc', PGWS_ALLOWED_ORIGINS: 'https://a.example, https://b.example' } }),
    );
    expect(described.jwksUrl).toBe('https://***:***@idp.example.com/jwks.json?***');
    expect(described.allowedOrigins).toBe('https://a.example,https://b.example');
  });

  it('reports a bad flag value under its variable and flag', () => {
    expect(loadErrors({ args: ['--port', 'abc'] })).toEqual(['PGWS_PORT (--port): must be an integer from 0 to 65535, got "abc"']);
  });

  it('reports unknown options with a suggestion, without their values', () => {
    const errors = loadErrors({ args: ['--prot', '5', `--jwt-secert=${JWT_SECRET}`] });
    expect(errors).toEqual([
      'unknown option --prot (did you mean --port?)',
      'unknown option --jwt-secert (did you mean --jwt-secret?)',
    ]);
  });

  it('reports stray arguments without quoting them', () => {
    // An unquoted secret with a space splits into a value and a stray word.
    const errors = loadErrors({ args: ['--port', '1234', 'half-of-a-secret'] });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^unexpected argument \(1, not shown\)/);
    expect(errors.join('\n')).not.toContain('half-of-a-secret');
  });

  it('reports a flag given without its value once', () => {
    expect(loadErrors({ args: ['--db-uri'], env: { PGWS_JWT_SECRET: JWT_SECRET } })).toEqual([
      'PGWS_DB_URI (--db-uri): the flag needs a value',
    ]);
  });

  it('takes the last of a repeated flag', () => {
    expect(loadOk({ args: ['--port', '1', '--port', '2'] }).port).toBe(2);
  });
});

describe('precedence: flag > environment > .env file > default', () => {
  const cases: [string, { args: string[]; env: NodeJS.ProcessEnv; file: string }, number][] = [
    ['the flag over the environment and the file', { args: ['--port', '1111'], env: { PGWS_PORT: '2222' }, file: 'PGWS_PORT=3333' }, 1111],
    ['the environment over the file', { args: [], env: { PGWS_PORT: '2222' }, file: 'PGWS_PORT=3333' }, 2222],
    ['the file over the default', { args: [], env: {}, file: 'PGWS_PORT=3333' }, 3333],
    ['the default when nothing is set', { args: [], env: {}, file: '# nothing here' }, 3000],
  ];
  it.each(cases)('takes %s', (_name, { args, env, file }, port) => {
    const cwd = tempDir();
    writeFile(cwd, '.env', `${file}\n`);
    expect(loadOk({ cwd, args, env: { ...REQUIRED, ...env } }).port).toBe(port);
  });

  it('mixes sources option by option', () => {
    const cwd = tempDir();
    writeFile(cwd, '.env', 'PGWS_PORT=3333\nPGWS_HOST=file-host\nPGWS_POOL_SIZE=7\nPGWS_RETRIES=9\n');
    const config = loadOk({ cwd, args: ['--port', '1111'], env: { ...REQUIRED, PGWS_HOST: 'env-host' } });
    expect(config).toMatchObject({ port: 1111, host: 'env-host', poolSize: 7, retries: 9, logLevel: 'info' });
  });

  it('can take every required value from the .env file, quoted or not', () => {
    const cwd = tempDir();
    writeFile(cwd, '.env', `PGWS_DB_URI="${DB_URI}"\nPGWS_JWT_SECRET='${JWT_SECRET}'\n`);
    expect(loadOk({ cwd, env: {} })).toMatchObject({ dbUri: DB_URI, jwtSecret: JWT_SECRET });
  });

  it('reads the file named by --env-file, relative to the working folder', () => {
    const cwd = tempDir();
    writeFile(cwd, '.env', 'PGWS_PORT=1111\n');
    mkdirSync(join(cwd, 'conf'));
    writeFile(cwd, 'conf/pgws.env', 'PGWS_PORT=2222\n');
    expect(loadOk({ cwd, args: ['--env-file', 'conf/pgws.env'] }).port).toBe(2222);
  });

  it('reports a missing --env-file by its path', () => {
    const cwd = tempDir();
    expect(loadErrors({ cwd, args: ['--env-file', 'nope.env'] })).toEqual([
      `--env-file: cannot read ${join(cwd, 'nope.env')}: no such file or directory`,
    ]);
  });

  it('leaves process.env alone', () => {
    const cwd = tempDir();
    writeFile(cwd, '.env', 'PGWS_TEST_ONLY_MARKER=1\n');
    loadOk({ cwd });
    expect(process.env.PGWS_TEST_ONLY_MARKER).toBeUndefined();
  });
});

describe('@path values', () => {
  it.each([
    ['PGWS_DB_URI', 'dbUri', DB_URI],
    ['PGWS_JWT_SECRET', 'jwtSecret', JWT_SECRET],
  ] as const)('reads %s from a file, stripping one trailing newline', (variable, key, value) => {
    const cwd = tempDir();
    writeFile(cwd, 'one.txt', `${value}\n`);
    writeFile(cwd, 'crlf.txt', `${value}\r\n`);
    writeFile(cwd, 'two.txt', `${value}\n\n`);
    writeFile(cwd, 'none.txt', value);
    const read = (file: string) => loadOk({ cwd, env: { ...REQUIRED, [variable]: file } })[key];
    expect(read('@one.txt')).toBe(value);
    expect(read('@crlf.txt')).toBe(value);
    expect(read(`@${join(cwd, 'none.txt')}`)).toBe(value);
    if (key === 'jwtSecret') expect(read('@two.txt')).toBe(`${value}\n`);
  });

  it.each([
    ['PGWS_DB_URI', '--db-uri'],
    ['PGWS_JWT_SECRET', '--jwt-secret'],
  ])('names the path when %s points at a missing file', (variable, flag) => {
    const cwd = tempDir();
    expect(loadErrors({ cwd, env: { ...REQUIRED, [variable]: '@secrets/missing' } })).toEqual([
      `${variable} (${flag}): cannot read ${join(cwd, 'secrets/missing')}: no such file or directory`,
    ]);
  });

  it('reports an empty file', () => {
    const cwd = tempDir();
    writeFile(cwd, 'empty', '\n');
    expect(loadErrors({ cwd, env: { ...REQUIRED, PGWS_JWT_SECRET: '@empty' } })).toEqual([
      `PGWS_JWT_SECRET (--jwt-secret): ${join(cwd, 'empty')} is empty`,
    ]);
  });

  it('validates what the file holds without showing it', () => {
    const cwd = tempDir();
    writeFile(cwd, 'uri', `mysql://root:${DB_PASSWORD}@db/x\n`);
    const errors = loadErrors({ cwd, env: { ...REQUIRED, PGWS_DB_URI: '@uri' } });
    expect(errors).toEqual([
      `PGWS_DB_URI (--db-uri): must start with postgres:// or postgresql:// (the value is not shown: it may hold a password) (read from ${join(cwd, 'uri')})`,
    ]);
  });
});

describe('error reporting', () => {
  it('reports every problem at once', () => {
    const errors = loadErrors({ env: { ...REQUIRED, PGWS_PORT: 'abc', PGWS_POOL_SIZE: '0', PGWS_LOG_LEVEL: 'loud' } });
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^PGWS_PORT \(--port\)/);
    expect(errors[1]).toMatch(/^PGWS_POOL_SIZE \(--pool-size\)/);
    expect(errors[2]).toMatch(/^PGWS_LOG_LEVEL \(--log-level\)/);
  });

  it('collects command-line, .env file, value and cross-option problems in one list', () => {
    const cwd = tempDir();
    writeFile(cwd, 'cert.pem', 'cert');
    const errors = loadErrors({
      cwd,
      env: { PGWS_JWT_SECRET: JWT_SECRET, PGWS_CERTIFICATE_FILE: 'cert.pem', PGWS_RETRIES: 'x' },
      args: ['--bogus', '--port', '99999'],
    });
    expect(errors.map((error) => error.split(/[ :]/)[0])).toEqual([
      'unknown',
      'PGWS_PORT',
      'PGWS_RETRIES',
      'PGWS_DB_URI',
      'PGWS_KEY_FILE',
    ]);
  });

  it('never shows a secret in an error', () => {
    const errors = loadErrors({
      env: {
        PGWS_DB_URI: `mysql://app:${DB_PASSWORD}@db/x`,
        PGWS_JWT_SECRET: ' ',
        PGWS_PORT: 'nope',
      },
      args: ['--jwt-secret', JWT_SECRET, '--jwt-secret-base64', 'extra', `--db=${DB_PASSWORD}`],
    });
    expect(errors.length).toBeGreaterThanOrEqual(3);
    const text = errors.join('\n');
    expect(text).not.toContain(DB_PASSWORD);
    expect(text).not.toContain(JWT_SECRET);
  });
});

describe('describeConfig', () => {
  it('lists every option, with the secret hidden and the URI password masked', () => {
    const described = describeConfig(loadOk());
    expect(Object.keys(described).sort()).toEqual(OPTION_LIST.map((row) => row.key).sort());
    expect(described).toMatchObject({
      dbUri: 'postgres://app:***@db:5432/x',
      jwtSecret: '[redacted]',
      port: 3000,
      host: '*4',
      metaChannel: null,
      embedded: false,
    });
    const text = JSON.stringify(described);
    expect(text).not.toContain(DB_PASSWORD);
    expect(text).not.toContain(JWT_SECRET);
  });

  it('masks a password given as a query parameter', () => {
    const config = loadOk({ env: { ...REQUIRED, PGWS_DB_URI: `postgres://db/x?user=app&password=${DB_PASSWORD}` } });
    const described = describeConfig(config);
    expect(described.dbUri).toBe('postgres://db/x?user=app&password=***');
  });

  it('hides a URI it cannot parse whole', () => {
    const config = loadOk({ env: { ...REQUIRED, PGWS_DB_URI: `postgres://app:${DB_PASSWORD}@h1:5432,h2:5432/x` } });
    expect(describeConfig(config).dbUri).toBe('[redacted]');
  });

  it('shows null for unset values, including the secrets of embedded mode', () => {
    const described = describeConfig(loadOk({ env: { PGWS_EMBEDDED: 'true' } }));
    expect(described).toMatchObject({ dbUri: null, jwtSecret: null, rootPath: null, certificateFile: null });
  });
});

describe('sample.env', () => {
  it('is the rendering of the options table', () => {
    const sample = readFileSync(new URL('../sample.env', import.meta.url), 'utf8');
    const regenerate = `node -e 'import("./dist/options.js").then((m) => process.stdout.write(m.renderSampleEnv()))' > sample.env`;
    expect(sample, `sample.env is stale; after building, run: ${regenerate}`).toBe(renderSampleEnv());
  });

  it('documents every variable, commented out', () => {
    const sample = renderSampleEnv();
    for (const row of OPTION_LIST) expect(sample).toMatch(new RegExp(`^#${row.env}=`, 'm'));
    expect(sample).not.toMatch(/^PGWS_/m);
  });
});

describe('README.md', () => {
  it('has a row in its configuration table for every option, with its flag', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const row of OPTION_LIST) {
      expect(readme, `README.md lacks the row of ${row.env}`).toContain(`| \`${row.env}\` | \`${row.flag.split(' ')[0]}\` |`);
    }
  });
});
