// Public API of the handshake check: turn a token (from the path or elsewhere) into a Grant or a rejection.
export {
  createAuthenticator,
  createVerifier,
  EACH_REQUEST,
  type ChannelRequest,
  type Authenticator,
  type AuthenticatorOptions,
  type AuthResult,
  type ClaimRules,
  type TokenCheck,
  type Verifier,
} from './verify.js';
export { parseSocketPath, loggableChannel, type ParsedPath } from './path.js';
export { loadVerificationKeys, type KeySource, type KeyKind } from './keys.js';
