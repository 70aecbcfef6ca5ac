// Public API of the handshake check: turn a WebSocket request path into a Grant or a rejection.
export { createAuthenticator, createVerifier, type Authenticator, type AuthenticatorOptions, type AuthResult, type Verifier } from './verify.js';
export { parseSocketPath, channelFromPath, type ParsedPath } from './path.js';
export { loadVerificationKeys, type KeySource, type KeyKind } from './keys.js';
