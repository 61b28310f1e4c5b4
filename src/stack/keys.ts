import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';

/**
 * How a project's JWTs are signed. Hosted Supabase offers the legacy shared secret (HS256) and the
 * newer asymmetric signing keys (ES256, with a `kid`); the local stack can stand up either, and
 * PostgREST is given a JWKS that verifies both, as a project migrating between them would.
 */
export interface ProjectKeys {
  jwtSecret: string;
  anonKey: string;
  serviceRoleKey: string;
  /** ES256 signing key (private JWK with `kid`), for projects that sign tenant tokens asymmetrically. */
  es256PrivateJwk: JWK;
  /** What PostgREST's `jwt-secret` is set to: a JWKS holding the HS256 secret and the ES256 public key. */
  postgrestJwks: string;
}

const TEN_YEARS_S = 10 * 365 * 24 * 3600;

export async function createProjectKeys(ref: string): Promise<ProjectKeys> {
  const jwtSecret = randomBytes(32).toString('base64url');
  const secret = new TextEncoder().encode(jwtSecret);
  const apiKey = (role: string) =>
    new SignJWT({ role, iss: 'supabase', ref })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + TEN_YEARS_S)
      .sign(secret);

  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `local-${ref}-${randomBytes(4).toString('hex')}`;
  const es256PrivateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const octJwk = { kty: 'oct', k: Buffer.from(jwtSecret).toString('base64url'), alg: 'HS256' };

  return {
    jwtSecret,
    anonKey: await apiKey('anon'),
    serviceRoleKey: await apiKey('service_role'),
    es256PrivateJwk,
    postgrestJwks: JSON.stringify({ keys: [octJwk, publicJwk] }),
  };
}
