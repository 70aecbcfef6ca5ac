// The tokens of a run. HS256 uses the bench's HMAC secret; RS256 and ES256, as identity
// providers sign, use a key pair generated for the run: the systems get the public JWK
// (PGWS_JWT_SECRET takes a JWK), the clients tokens signed with the private key.
//
// `distinct()` gives every client its own token (a `sub` per client), as an identity
// provider issues them: no two handshakes carry the same text, so a cache of verified
// tokens cannot answer for the verification. Lists are signed once per run and reused by
// every system and repetition (an RS256 signature costs ~1 ms here; 10k of them, 10 s).
// Signing uses node:crypto directly: jose's async SignJWT is several times slower.
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';

export const HMAC_SECRET = 'bench-secret-that-is-long-enough-for-hs256';
export const ALGORITHMS = ['HS256', 'RS256', 'ES256'];

const b64url = (value) => Buffer.from(value).toString('base64url');

export function createTokens() {
  const signers = new Map();
  const lists = new Map();

  function signerFor(alg) {
    let signer = signers.get(alg);
    if (signer) return signer;
    if (alg === 'HS256') {
      signer = { secret: HMAC_SECRET, sign: (input) => createHmac('sha256', HMAC_SECRET).update(input).digest('base64url') };
    } else if (alg === 'RS256' || alg === 'ES256') {
      const pair = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
      // ES256 signatures are the raw r||s pair in a JWS (RFC 7518), not DER.
      const options = alg === 'ES256' ? { dsaEncoding: 'ieee-p1363' } : {};
      const jwk = { ...pair.publicKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `bench-${alg.toLowerCase()}` };
      signer = {
        secret: JSON.stringify(jwk),
        kid: jwk.kid,
        sign: (input) => sign('sha256', Buffer.from(input), { key: pair.privateKey, ...options }).toString('base64url'),
      };
    } else {
      throw new Error(`bench tokens: unknown algorithm ${alg}`);
    }
    signers.set(alg, signer);
    return signer;
  }

  function signed(alg, claims) {
    const signer = signerFor(alg);
    const header = { alg, typ: 'JWT', ...(signer.kid ? { kid: signer.kid } : {}) };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${signer.sign(input)}`;
  }

  return {
    /** What the system under test verifies with: the HMAC secret, or the public JWK as JSON. */
    secretFor: (alg) => signerFor(alg).secret,
    /** One token (every client of a scenario may share it). */
    one: signed,
    /**
     * Tokens `from` .. `from + count - 1` of a list: each is `claims` plus `sub: "client-<i>"`.
     * The same (alg, claims, i) always gives the same text within a run.
     */
    distinct(alg, claims, from, count) {
      const key = `${alg} ${JSON.stringify(claims)}`;
      let list = lists.get(key);
      if (!list) lists.set(key, (list = []));
      for (let i = list.length; i < from + count; i++) list.push(signed(alg, { ...claims, sub: `client-${i}` }));
      return list.slice(from, from + count);
    },
  };
}
