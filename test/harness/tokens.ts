import { SignJWT, type JWTPayload } from 'jose';
import { SECRET } from './pgws.js';

/** An HS256 token over the given claims, signed with the test secret unless another is given. */
export async function token(claims: JWTPayload, secret: string = SECRET, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}

/** A token with `alg: none` and no signature, crafted by hand (jose refuses to make one). */
export function unsignedToken(claims: JWTPayload): string {
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
}
