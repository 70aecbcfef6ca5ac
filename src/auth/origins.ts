// PGWS_ALLOWED_ORIGINS (PROTOCOL.md §8, Origins): which web pages may open sockets.
// Browsers send `Origin` on every WebSocket upgrade and let any page open a socket to any
// host, cookies included; checking it is what stops cross-site WebSocket hijacking.
// A request without `Origin` is not from a browser page and is not subject to the list.

/** One parsed entry: `*` (any origin), or scheme + host (maybe `*.` wildcard) + port. */
type OriginRule =
  | { readonly any: true }
  | { readonly any: false; readonly scheme: string; readonly host: string; readonly subdomains: boolean; readonly port: string };

export interface OriginPolicy {
  /** Whether an upgrade with this `Origin` header ('' when absent) may proceed. */
  allows(origin: string): boolean;
}

export type ParsedOrigins = { readonly ok: true; readonly value: readonly string[] } | { readonly ok: false; readonly error: string };

/** The ports URL leaves out (it normalises an explicit default port to ''). */
const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' };

/**
 * Checks the comma-separated list (config time): every entry is `*` or `scheme://host[:port]`
 * with no path, query or credentials. Returns the entries, trimmed.
 */
export function parseAllowedOrigins(raw: string): ParsedOrigins {
  const entries = raw
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) return { ok: false, error: 'expected a comma-separated list of origins such as https://app.example.com, or *' };
  for (const entry of entries) {
    if (parseRule(entry) === undefined) {
      return {
        ok: false,
        error: `${JSON.stringify(entry)} is not an origin: expected scheme://host[:port] (host may start with *.), or * alone`,
      };
    }
  }
  return { ok: true, value: entries };
}

/** The policy for a parsed list; undefined allows every origin (postgres-websockets behaviour). */
export function createOriginPolicy(entries: readonly string[] | undefined): OriginPolicy {
  if (entries === undefined) return { allows: () => true };
  const rules = entries.flatMap((entry) => parseRule(entry) ?? []);
  if (rules.some((rule) => rule.any)) return { allows: () => true };
  // Browsers send the same few origins over and over: remember each verdict (bounded).
  const verdicts = new Map<string, boolean>();
  return {
    allows(origin) {
      if (origin === '') return true;
      const known = verdicts.get(origin);
      if (known !== undefined) return known;
      const verdict = matches(rules, origin);
      if (verdicts.size >= 1000) verdicts.clear();
      verdicts.set(origin, verdict);
      return verdict;
    },
  };
}

function matches(rules: readonly OriginRule[], origin: string): boolean {
  const parsed = parseOrigin(origin);
  // `null` (sandboxed frames, file: pages) and anything unparsable is no listed origin.
  if (parsed === undefined) return false;
  return rules.some(
    (rule) =>
      !rule.any &&
      rule.scheme === parsed.scheme &&
      rule.port === parsed.port &&
      (rule.subdomains ? parsed.host.endsWith(`.${rule.host}`) : parsed.host === rule.host),
  );
}

function parseRule(entry: string): OriginRule | undefined {
  if (entry === '*') return { any: true };
  const wildcard = /^([a-z][a-z0-9+.-]*:\/\/)\*\.(.+)$/i.exec(entry);
  const parsed = parseOrigin(wildcard ? `${wildcard[1]}${wildcard[2]}` : entry);
  if (parsed === undefined) return undefined;
  return { any: false, ...parsed, subdomains: wildcard !== null };
}

/** scheme, lower-case host and explicit port of `scheme://host[:port]`; undefined for anything else. */
function parseOrigin(text: string): { scheme: string; host: string; port: string } | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  // A '*' left in the host is a wildcard in the wrong place (`https://*`): no host has one.
  if (url.host === '' || url.hostname.includes('*') || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
  // An origin has no path: URL gives "/" for none, so anything longer was a path.
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  if (text.endsWith('/')) return undefined;
  return { scheme: url.protocol, host: url.hostname, port: url.port === '' ? (DEFAULT_PORTS[url.protocol] ?? '') : url.port };
}
