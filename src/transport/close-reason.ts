// RFC 6455 caps a close frame's reason at 123 bytes; engines throw or truncate
// mid-character past that, so every reason goes through here first.
const MAX_REASON_BYTES = 123;

export function limitCloseReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_REASON_BYTES) return reason;
  let out = '';
  for (const ch of reason) {
    if (Buffer.byteLength(out + ch) > MAX_REASON_BYTES - 3) break;
    out += ch;
  }
  return `${out}...`;
}
