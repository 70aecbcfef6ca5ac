// One line describing a database error, for logs and start-up failures.
// postgres.js errors carry the host and port but never the password, so their
// message is safe to show; the URI itself is never included.

export function describeDbError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const errors = (err as { errors?: unknown }).errors;
  // Node's AggregateError (e.g. localhost resolving to ::1 and 127.0.0.1) hides the real causes.
  if (Array.isArray(errors) && errors.length > 0 && err.message === '') {
    return errors.map((e) => describeDbError(e)).join('; ');
  }
  const message = err.message || err.name;
  return typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
}
