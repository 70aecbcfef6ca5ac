// Where a token comes from and which origins may connect (PROTOCOL.md §8), one module at a
// time: every source, every conflict, the subprotocol selection, ?echo=, origin matching,
// and fast-check fuzzing of headers, cookies, query strings and subprotocol lists.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createOriginPolicy, parseAllowedOrigins } from '../src/auth/origins.js';
import { BEARER_NEEDS_VERSION, MORE_THAN_ONE_TOKEN, readSocketRequest, type TokenRequest } from '../src/auth/token-source.js';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJtb2RlIjoiciJ9.c2lnbmF0dXJl';
const OTHER = 'eyJhbGciOiJIUzI1NiJ9.eyJtb2RlIjoidyJ9.b3RoZXI';

const request = (parts: Partial<TokenRequest>): TokenRequest => ({ path: '/', query: '', authorization: '', cookie: '', protocols: '', ...parts });

describe('token sources', () => {
  it.each<[string, Partial<TokenRequest>, string | undefined, string]>([
    ['path /<channel>/<jwt>', { path: `/chat/${JWT}` }, 'chat', 'path'],
    ['path /<jwt>', { path: `/${JWT}` }, undefined, 'path'],
    ['subprotocol beside pgws.v1', { path: '/chat', protocols: `pgws.bearer.${JWT}, pgws.v1` }, 'chat', 'subprotocol'],
    ['Authorization: Bearer', { path: '/chat', authorization: `Bearer ${JWT}` }, 'chat', 'header'],
    ['Authorization with a lower-case scheme', { path: '/', authorization: `bearer ${JWT}` }, undefined, 'header'],
    ['the named cookie', { path: '/chat', cookie: `theme=dark; pgws=${JWT}; other=1` }, 'chat', 'cookie'],
    ['?access_token=', { path: '/chat', query: `access_token=${JWT}` }, 'chat', 'query'],
    ['?access_token= with / (every listed channel)', { path: '/', query: `x=1&access_token=${JWT}` }, undefined, 'query'],
  ])('reads the token from %s', (_label, parts, channel, source) => {
    expect(readSocketRequest(request(parts), 'pgws')).toMatchObject({ ok: true, token: JWT, channel, source });
  });

  it('never reads cookies when no cookie name is configured: the path rules alone', () => {
    expect(readSocketRequest(request({ path: `/chat/${JWT}`, cookie: `pgws=${OTHER}` }), undefined)).toMatchObject({
      ok: true,
      token: JWT,
      source: 'path',
    });
  });

  it('ignores other Authorization schemes (a proxy\'s Basic credentials are not a token)', () => {
    expect(readSocketRequest(request({ path: `/chat/${JWT}`, authorization: 'Basic dXNlcjpwYXNz' }), undefined)).toMatchObject({
      ok: true,
      token: JWT,
      source: 'path',
    });
  });

  it.each<[string, Partial<TokenRequest>]>([
    ['path (two segments) and a header', { path: `/chat/${JWT}`, authorization: `Bearer ${OTHER}` }],
    ['path (two segments) and a query token', { path: `/chat/${JWT}`, query: `access_token=${OTHER}` }],
    ['path (two segments) and a subprotocol', { path: `/chat/${JWT}`, protocols: `pgws.bearer.${OTHER}, pgws.v1` }],
    ['path (two segments) and the cookie', { path: `/chat/${JWT}`, cookie: `pgws=${OTHER}` }],
    ['header and query', { path: '/chat', authorization: `Bearer ${JWT}`, query: `access_token=${OTHER}` }],
    ['header and subprotocol', { path: '/chat', authorization: `Bearer ${JWT}`, protocols: `pgws.v1, pgws.bearer.${OTHER}` }],
    ['cookie and query', { path: '/', cookie: `pgws=${JWT}`, query: `access_token=${OTHER}` }],
    ['two query tokens', { path: '/', query: `access_token=${JWT}&access_token=${OTHER}` }],
    ['two bearer subprotocols', { path: '/', protocols: `pgws.bearer.${JWT}, pgws.bearer.${OTHER}, pgws.v1` }],
    ['two bearer subprotocols, after other entries', { path: '/', protocols: `x, pgws.v1, pgws.bearer.${JWT}, pgws.bearer.${OTHER}` }],
    ['the same token twice (header and query)', { path: '/', authorization: `Bearer ${JWT}`, query: `access_token=${JWT}` }],
  ])('refuses %s with 400 "More than one token"', (_label, parts) => {
    expect(readSocketRequest(request(parts), 'pgws')).toEqual({ ok: false, status: 400, reason: MORE_THAN_ONE_TOKEN });
  });

  it('refuses a bearer subprotocol offered without pgws.v1 or pgws.v2', () => {
    expect(readSocketRequest(request({ protocols: `pgws.bearer.${JWT}` }), undefined)).toEqual({ ok: false, status: 400, reason: BEARER_NEEDS_VERSION });
  });

  it.each<[string, string | undefined, boolean]>([
    [`pgws.bearer.${JWT}, pgws.v1`, 'pgws.v1', false],
    [`pgws.v1, pgws.bearer.${JWT}`, 'pgws.v1', false],
    [`pgws.bearer.${JWT}, pgws.v2`, 'pgws.v2', true],
    ['pgws.v2, pgws.v1', 'pgws.v2', true],
    ['pgws.v1, pgws.v2', 'pgws.v1', false],
    ['pgws.v1', 'pgws.v1', false],
    ['chat-app, pgws.v1', 'pgws.v1', false],
    // A client's own subprotocol is echoed, as before this extension: browsers refuse a 101 that selects none.
    ['chat-app, other', 'chat-app', false],
  ])('offered %s: selects %s, never the bearer entry', (protocols, selected, v2) => {
    const path = protocols.includes('pgws.bearer.') ? '/chat' : `/chat/${JWT}`;
    const result = readSocketRequest(request({ path, protocols }), undefined);
    expect(result).toMatchObject({ ok: true, protocol: selected, v2 });
  });

  it.each(['a, , b', ',', 'pgws.v1,', 'pgws.v1, pgws.v1', 'a b', 'pgws.v1, "quoted"', `pgws.bearer.${JWT}, pgws.bearer.${JWT}, pgws.v1`])(
    'refuses the malformed subprotocol list %j with 400 on both transports alike',
    (protocols) => {
      expect(readSocketRequest(request({ path: `/chat/${JWT}`, protocols }), undefined)).toMatchObject({ ok: false, status: 400 });
    },
  );

  it.each<[string, boolean]>([
    ['', true],
    ['echo=true', true],
    ['echo=false', false],
    ['cache=123&echo=false', false],
  ])('query %j: echo %s', (query, echo) => {
    expect(readSocketRequest(request({ path: `/chat/${JWT}`, query }), undefined)).toMatchObject({ ok: true, echo });
  });

  it('refuses an echo value other than true or false, and a malformed query escape', () => {
    expect(readSocketRequest(request({ path: `/chat/${JWT}`, query: 'echo=no' }), undefined)).toMatchObject({ ok: false, status: 400 });
    expect(readSocketRequest(request({ path: '/chat', query: 'access_token=%ZZ' }), undefined)).toMatchObject({ ok: false, status: 400 });
  });

  it('keeps v1 path rules: three segments and a bad escape are still 400', () => {
    expect(readSocketRequest(request({ path: '/a/b', authorization: `Bearer ${JWT}` }), undefined)).toEqual({
      ok: false,
      status: 400,
      reason: MORE_THAN_ONE_TOKEN,
    });
    expect(readSocketRequest(request({ path: '/a/b/c', authorization: `Bearer ${JWT}` }), undefined)).toMatchObject({ ok: false, status: 400 });
    expect(readSocketRequest(request({ path: '/%ZZ', authorization: `Bearer ${JWT}` }), undefined)).toMatchObject({ ok: false, status: 400 });
  });

  it('no refusal reason ever holds a token', () => {
    const reasons = [
      readSocketRequest(request({ path: `/chat/${JWT}`, authorization: `Bearer ${OTHER}` }), undefined),
      readSocketRequest(request({ protocols: `pgws.bearer.${JWT}` }), undefined),
      readSocketRequest(request({ path: `/%ZZ`, query: `access_token=${JWT}` }), undefined),
    ];
    for (const result of reasons) {
      expect(result.ok).toBe(false);
      expect(JSON.stringify(result)).not.toContain(JWT.slice(0, 20));
    }
  });
});

describe('origins', () => {
  const policy = (list: string) => {
    const parsed = parseAllowedOrigins(list);
    if (!parsed.ok) throw new Error(parsed.error);
    return createOriginPolicy(parsed.value);
  };

  it.each<[string, string, boolean]>([
    ['https://app.example.com', 'https://app.example.com', true],
    ['https://app.example.com', 'https://app.example.com:443', true],
    ['https://app.example.com:443', 'https://app.example.com', true],
    ['https://app.example.com', 'http://app.example.com', false],
    ['https://app.example.com', 'https://app.example.com:8443', false],
    ['https://app.example.com', 'https://evil.example.com', false],
    ['https://app.example.com', 'https://app.example.com.evil.net', false],
    ['https://APP.example.com', 'https://app.EXAMPLE.com', true],
    ['http://localhost:8080', 'http://localhost:8080', true],
    ['http://localhost:8080', 'http://localhost', false],
    ['https://*.example.com', 'https://a.example.com', true],
    ['https://*.example.com', 'https://a.b.example.com', true],
    ['https://*.example.com', 'https://example.com', false],
    ['https://*.example.com', 'https://badexample.com', false],
    ['https://*.example.com', 'http://a.example.com', false],
    ['https://a.com, https://b.com', 'https://b.com', true],
    ['https://a.com', 'null', false],
    ['*', 'https://anything.example', true],
    ['*', 'null', true],
  ])('list %j, Origin %j: %s', (list, origin, allowed) => {
    expect(policy(list).allows(origin)).toBe(allowed);
  });

  it('lets requests without Origin through (not a browser), and every origin when unset', () => {
    expect(policy('https://app.example.com').allows('')).toBe(true);
    expect(createOriginPolicy(undefined).allows('https://evil.example')).toBe(true);
  });

  it.each(['app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'https://user@app.example.com', 'https://*', '*.example.com', ''])(
    'refuses the entry %j at configuration time',
    (entry) => {
      expect(parseAllowedOrigins(entry).ok).toBe(false);
    },
  );
});

describe('fuzzing the new inputs (fast-check, fixed seed)', () => {
  const headerText = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.constantFrom('', 'Bearer', 'Bearer ', `Bearer ${JWT}`, 'pgws.v1', 'pgws.v2', `pgws.bearer.${JWT}`, 'pgws.bearer.', ',', ';', '=', '%', '%ZZ', '+'),
  );
  const joined = (sep: string) => fc.array(headerText, { maxLength: 5 }).map((parts) => parts.join(sep));
  const arbitraryRequest = fc.record({
    path: fc.oneof(fc.constantFrom('/', '/chat', `/chat/${JWT}`, `/${JWT}`, '//', '/a/b/c', '/%ZZ'), fc.string({ maxLength: 40 }).map((s) => `/${s}`)),
    query: joined('&'),
    authorization: headerText,
    cookie: joined('; '),
    protocols: joined(', '),
  });

  it('never throws, and a request that is read always names exactly one source and a selected subprotocol that is no bearer', () => {
    fc.assert(
      fc.property(arbitraryRequest, fc.constantFrom(undefined, 'pgws'), (req, cookieName) => {
        const result = readSocketRequest(req, cookieName);
        if (!result.ok) {
          expect(result.status).toBe(400);
          return;
        }
        expect(['path', 'subprotocol', 'header', 'cookie', 'query']).toContain(result.source);
        expect(result.protocol?.startsWith('pgws.bearer.') ?? false).toBe(false);
        expect(typeof result.token).toBe('string');
      }),
      { seed: 20261203, numRuns: 3000 },
    );
  });

  it('origin matching never throws, and an unlisted random origin is refused', () => {
    const allowed = policy('https://app.example.com,https://*.example.org');
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.webUrl()), (origin) => {
        const verdict = allowed.allows(origin);
        if (origin === '') expect(verdict).toBe(true);
        else if (verdict) expect(origin).toMatch(/^https:\/\/(app\.example\.com|[^/]+\.example\.org)(:443)?$/i);
      }),
      { seed: 20261203, numRuns: 3000 },
    );
  });

  function policy(list: string) {
    const parsed = parseAllowedOrigins(list);
    if (!parsed.ok) throw new Error(parsed.error);
    return createOriginPolicy(parsed.value);
  }
});
