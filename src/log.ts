// pino, configured once. JSON lines on stdout; tokens and secrets never reach it:
// the redact paths below are a safety net, the real rule is "never log them".
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from './types.js';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  'jwt',
  'secret',
  'jwtSecret',
  'password',
  'dbUri',
  'config.jwtSecret',
  'req.url',
  'req.headers.authorization',
];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'pgws' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
