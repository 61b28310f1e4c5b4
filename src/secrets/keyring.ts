/**
 * Encryption of client secrets at rest: AES-256-GCM (node:crypto) with the key from SECRETS_KEY.
 *
 * - Each ciphertext carries the id of its key (a fingerprint: the first 16 hex digits of a SHA-256
 *   of the key, which says nothing about the key itself), so a key can be rotated without a flag
 *   day: the new key goes in SECRETS_KEY, the old one in SECRETS_OLD_KEYS, old rows still decrypt,
 *   new writes use the new key, and `sidekick secrets rekey` re-encrypts the old rows.
 * - The client id, the kind and the name are the AEAD's additional data: a ciphertext copied into
 *   another client's row (or under another name) fails authentication instead of decrypting.
 */

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

export const SECRET_KINDS = ['tool', 'signing'] as const;
export type SecretKind = (typeof SECRET_KINDS)[number];

/** What a stored secret is bound to: decrypting it as anything else fails. */
export interface SecretBinding {
  clientId: string;
  kind: SecretKind;
  name: string;
}

/** The encrypted form, as the `client_secrets` row stores it. */
export interface SealedSecret {
  key_id: string;
  /** base64, 12 bytes. */
  iv: string;
  /** base64: ciphertext, then the 16-byte tag. */
  ciphertext: string;
}

export class SecretDecryptError extends Error {
  override readonly name = 'SecretDecryptError';
  constructor(
    readonly binding: SecretBinding,
    readonly reason: 'unknown_key' | 'not_authentic',
    keyId: string,
  ) {
    super(
      reason === 'unknown_key'
        ? `secret ${binding.name} of client ${binding.clientId} was encrypted with key ${keyId}, which is neither SECRETS_KEY nor in SECRETS_OLD_KEYS`
        : `secret ${binding.name} of client ${binding.clientId} does not decrypt: it was not written for this client and name, or it was altered`,
    );
  }
}

const TAG_BYTES = 16;
const IV_BYTES = 12;

/** A key's id: stable, and without anything of the key an attacker could use. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('sidekick/secrets-key/v1\0').update(key).digest('hex').slice(0, 16);
}

/** Decodes a SECRETS_KEY value; null with the problem when it is not 32 bytes of base64. */
export function decodeKey(value: string): { key: Buffer } | { problem: string } {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) return { problem: 'is not base64' };
  const key = Buffer.from(value, 'base64');
  if (key.length !== 32)
    return { problem: `decodes to ${key.length} bytes; AES-256 needs 32 (openssl rand -base64 32)` };
  return { key };
}

function aad(b: SecretBinding): Buffer {
  return Buffer.from(`sidekick/client-secret/v1\0${b.clientId.toLowerCase()}\0${b.kind}\0${b.name}`, 'utf8');
}

export class SecretsKeyring {
  private readonly keys: ReadonlyMap<string, Buffer>;
  readonly currentKeyId: string;

  private constructor(
    private readonly current: Buffer,
    old: readonly Buffer[],
  ) {
    this.currentKeyId = keyId(current);
    this.keys = new Map([[this.currentKeyId, current], ...old.map((k) => [keyId(k), k] as const)]);
  }

  /** From config values (base64, already checked by config.ts); null when no key is configured. */
  static from(config: { key: string | null; oldKeys: readonly string[] }): SecretsKeyring | null {
    if (!config.key) return null;
    const decode = (v: string) => {
      const d = decodeKey(v);
      if ('problem' in d) throw new Error(`a secrets key ${d.problem}`);
      return d.key;
    };
    return new SecretsKeyring(decode(config.key), config.oldKeys.map(decode));
  }

  seal(plaintext: string, binding: SecretBinding): SealedSecret {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.current, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(binding));
    const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return { key_id: this.currentKeyId, iv: iv.toString('base64'), ciphertext: sealed.toString('base64') };
  }

  open(sealed: SealedSecret, binding: SecretBinding): string {
    const key = this.keys.get(sealed.key_id);
    if (!key) throw new SecretDecryptError(binding, 'unknown_key', sealed.key_id);
    const data = Buffer.from(sealed.ciphertext, 'base64');
    const iv = Buffer.from(sealed.iv, 'base64');
    if (data.length < TAG_BYTES || iv.length !== IV_BYTES)
      throw new SecretDecryptError(binding, 'not_authentic', sealed.key_id);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(binding));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(data.subarray(0, data.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      throw new SecretDecryptError(binding, 'not_authentic', sealed.key_id);
    }
  }
}
