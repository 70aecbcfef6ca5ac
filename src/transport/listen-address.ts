// PGWS_HOST as postgres-websockets spells it, turned into an address both engines bind.

/** `*4` = all IPv4, `*6` / `*` = all IPv6 (and IPv4 where the OS maps it, as Node and uWS do), else as given. */
export function listenAddress(host: string): string {
  switch (host) {
    case '*4':
      return '0.0.0.0';
    case '*6':
    case '*':
      return '::';
    default:
      return host;
  }
}
