import { importJWK, type JWK, SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';

type SigningKey = Awaited<ReturnType<typeof importJWK>>;

/** How a pool's tenant tokens are signed: Supabase's legacy JWT secret, or an imported ES256 signing key. */
export type TenantSigningKey =
  | { alg: 'HS256'; secret: string }
  | { alg: 'ES256'; privateJwk: JWK; kid: string };

export interface TokenMinterOptions {
  /** Lifetime of each token. Short, so a leaked one is soon worthless. */
  ttlSeconds: number;
  /** Tokens are re-minted once this fraction of their lifetime has passed, so none expires mid-request. */
  refreshAt?: number;
  /** How many clients' tokens to keep. */
  maxCached?: number;
  now?: () => number;
}

/**
 * Mints the short-lived JWTs the worker uses in a shared pool: role `authenticated` and a
 * `client_id` claim that the pool's RLS policies and RPCs compare with. Never the service key.
 */
export class TenantTokenMinter {
  private readonly cache: LRUCache<string, { token: string; refreshAfter: number }>;
  private key: Promise<SigningKey> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly signing: TenantSigningKey,
    private readonly opts: TokenMinterOptions,
  ) {
    this.cache = new LRUCache({ max: opts.maxCached ?? 1000 });
    this.now = opts.now ?? Date.now;
  }

  /** A valid token for the client: cached until `refreshAt` of its lifetime, then minted anew. */
  async tokenFor(clientId: string): Promise<string> {
    const hit = this.cache.get(clientId);
    if (hit && this.now() < hit.refreshAfter) return hit.token;
    const token = await this.mint(clientId);
    const lifetimeMs = this.opts.ttlSeconds * 1000;
    this.cache.set(clientId, { token, refreshAfter: this.now() + lifetimeMs * (this.opts.refreshAt ?? 0.8) });
    return token;
  }

  /**
   * Imports the signing key and signs one token that is thrown away, so the first session's token
   * costs neither (a job process calls it in prewarm).
   */
  async prepare(): Promise<void> {
    await this.mint('00000000-0000-0000-0000-000000000000');
  }

  private async mint(clientId: string): Promise<string> {
    const iat = Math.floor(this.now() / 1000);
    const jwt = new SignJWT({ role: 'authenticated', client_id: clientId })
      .setSubject(clientId)
      .setAudience('authenticated')
      .setIssuer('sidekick-worker')
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.opts.ttlSeconds);
    if (this.signing.alg === 'HS256') {
      this.key ??= Promise.resolve(new TextEncoder().encode(this.signing.secret));
      return jwt.setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(await this.key);
    }
    this.key ??= importJWK(this.signing.privateJwk, 'ES256');
    return jwt.setProtectedHeader({ alg: 'ES256', kid: this.signing.kid, typ: 'JWT' }).sign(await this.key);
  }
}
