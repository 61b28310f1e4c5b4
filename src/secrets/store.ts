/**
 * Client secrets in the platform database (`client_secrets`, service role only): set, listed by
 * name and age (never a value), deleted, rotated, and loaded for a session. Values are sealed by
 * the keyring before they leave the process and opened only here. A session loads only its own
 * client's rows, and opens each one bound to the client it asked for: a row of another client
 * would not decrypt even if a query returned it.
 */

import { randomBytes } from 'node:crypto';
import type { SupabaseClient } from '@supabase/supabase-js';
import { dbError, UsageError } from '../ops/errors.js';
import { type SealedSecret, SecretDecryptError, type SecretKind, type SecretsKeyring } from './keyring.js';

/** Names of tool secrets: what tools_config refers to (environment-variable style). */
export const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,63}$/;
export const SECRET_NAME_RULE = 'upper-case letters, digits and "_", starting with a letter, at most 64';
/** The longest value accepted (headers longer than this are not credentials). */
export const MAX_SECRET_CHARS = 8192;
const SIGNING = { kind: 'signing', name: 'signing' } as const;

export interface SecretListing {
  name: string;
  kind: SecretKind;
  createdAt: string;
  updatedAt: string;
  /** Encrypted with SECRETS_KEY (false: an old key; `sidekick secrets rekey` moves it). */
  currentKey: boolean;
}

/** What a session gets: the values it asked for, the signing secret, and what could not be had. */
export interface LoadedSecrets {
  values: ReadonlyMap<string, string>;
  signing: string;
  /** Names that are not set, or did not decrypt; the tools that need them are left out. */
  problems: ReadonlyArray<{ name: string; problem: string }>;
}

interface SecretRow extends SealedSecret {
  id: string;
  client_id: string;
  kind: SecretKind;
  name: string;
  created_at: string;
  updated_at: string;
}

export function checkSecretName(name: string, option = '--name'): string {
  if (!SECRET_NAME.test(name))
    throw new UsageError(
      `${option}: "${name}" is not a secret name (${SECRET_NAME_RULE}), e.g. ACME_API_KEY`,
    );
  return name;
}

export class ClientSecretStore {
  constructor(
    /** The platform database, with the service role. */
    private readonly db: SupabaseClient,
    private readonly keyring: SecretsKeyring,
  ) {}

  /** Sets (or replaces: rotation) a tool secret. */
  async set(clientId: string, name: string, value: string): Promise<{ created: boolean }> {
    checkSecretName(name);
    if (!value)
      throw new UsageError('the secret value is empty: give it on standard input or with --value-env');
    if (value.length > MAX_SECRET_CHARS)
      throw new UsageError(`the secret value is longer than ${MAX_SECRET_CHARS} characters`);
    if (/[\r\n]/.test(value))
      throw new UsageError('the secret value has a line break: a header value cannot carry one');
    const existing = await this.row(clientId, name);
    const sealed = this.keyring.seal(value, { clientId, kind: 'tool', name });
    const res = await this.db
      .from('client_secrets')
      .upsert({ client_id: clientId, kind: 'tool', name, ...sealed }, { onConflict: 'client_id,name' });
    if (res.error) throw this.refusal(`storing secret ${name} of client ${clientId}`, res.error);
    return { created: !existing };
  }

  async list(clientId: string): Promise<SecretListing[]> {
    const res = await this.db
      .from('client_secrets')
      .select('kind, name, key_id, created_at, updated_at')
      .eq('client_id', clientId)
      .order('kind')
      .order('name');
    if (res.error) throw dbError(`listing the secrets of client ${clientId}`, res.error);
    return (res.data ?? []).map((r) => ({
      name: r.name as string,
      kind: r.kind as SecretKind,
      createdAt: r.created_at as string,
      updatedAt: r.updated_at as string,
      currentKey: r.key_id === this.keyring.currentKeyId,
    }));
  }

  async delete(clientId: string, name: string): Promise<boolean> {
    checkSecretName(name);
    const res = await this.db
      .from('client_secrets')
      .delete()
      .eq('client_id', clientId)
      .eq('name', name)
      .select('id');
    if (res.error) throw dbError(`deleting secret ${name} of client ${clientId}`, res.error);
    return (res.data ?? []).length > 0;
  }

  /**
   * The client's signing secret, made on first use; `rotate` replaces it (endpoints must switch to
   * the new one: calls signed with the old one stop at once).
   */
  async signingSecret(
    clientId: string,
    opts: { rotate?: boolean } = {},
  ): Promise<{ value: string; created: boolean }> {
    if (!opts.rotate) {
      const found = await this.row(clientId, SIGNING.name);
      if (found) return { value: this.keyring.open(found, { clientId, ...SIGNING }), created: false };
    }
    const value = `whsec_${randomBytes(32).toString('base64url')}`;
    const sealed = this.keyring.seal(value, { clientId, ...SIGNING });
    const res = await this.db.from('client_secrets').upsert(
      { client_id: clientId, ...SIGNING, ...sealed },
      // Two sessions making the first one at once: one wins, both read the winner back.
      { onConflict: 'client_id,name', ignoreDuplicates: !opts.rotate },
    );
    if (res.error) throw this.refusal(`storing the signing secret of client ${clientId}`, res.error);
    if (opts.rotate) return { value, created: true };
    const stored = await this.row(clientId, SIGNING.name);
    if (!stored)
      throw new Error(`the signing secret of client ${clientId} was written but cannot be read back`);
    const kept = this.keyring.open(stored, { clientId, ...SIGNING });
    return { value: kept, created: kept === value };
  }

  /**
   * For a session: the named tool secrets and the signing secret of this client only, in one
   * request (the signing secret is made here on a client's first session with tools).
   */
  async load(clientId: string, names: readonly string[]): Promise<LoadedSecrets> {
    const wanted = [...new Set(names)];
    const values = new Map<string, string>();
    const problems: Array<{ name: string; problem: string }> = [];
    const res = await this.db
      .from('client_secrets')
      .select('id, client_id, kind, name, key_id, iv, ciphertext, created_at, updated_at')
      .eq('client_id', clientId)
      .in('name', [...wanted, SIGNING.name]);
    if (res.error) throw dbError(`reading the secrets of client ${clientId}`, res.error);
    let signing: string | undefined;
    for (const row of (res.data ?? []) as SecretRow[]) {
      try {
        // Bound to the client this session is for, whatever the row says.
        const value = this.keyring.open(row, { clientId, kind: row.kind, name: row.name });
        if (row.kind === 'signing') signing = value;
        else values.set(row.name, value);
      } catch (err) {
        if (!(err instanceof SecretDecryptError)) throw err;
        // A signing secret that does not open is not replaced behind the operator's back.
        if (row.kind === 'signing') throw err;
        problems.push({ name: row.name, problem: err.message });
      }
    }
    for (const name of wanted) {
      if (!values.has(name) && !problems.some((p) => p.name === name)) {
        problems.push({
          name,
          problem: `secret ${name} is not set for client ${clientId} (sidekick secrets set)`,
        });
      }
    }
    signing ??= (await this.signingSecret(clientId)).value;
    return { values, signing, problems };
  }

  /** Re-encrypts every secret not under SECRETS_KEY with it (after a key rotation). */
  async rekey(): Promise<{
    rekeyed: number;
    failed: Array<{ clientId: string; name: string; problem: string }>;
  }> {
    let rekeyed = 0;
    const failed: Array<{ clientId: string; name: string; problem: string }> = [];
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const res = await this.db
        .from('client_secrets')
        .select('id, client_id, kind, name, key_id, iv, ciphertext, created_at, updated_at')
        .neq('key_id', this.keyring.currentKeyId)
        .gt('id', after)
        .order('id')
        .limit(500);
      if (res.error) throw dbError('reading secrets of old keys', res.error);
      const rows = (res.data ?? []) as SecretRow[];
      if (!rows.length) break;
      for (const row of rows) {
        after = row.id;
        const binding = { clientId: row.client_id, kind: row.kind, name: row.name };
        let value: string;
        try {
          value = this.keyring.open(row, binding);
        } catch (err) {
          failed.push({ clientId: row.client_id, name: row.name, problem: (err as Error).message });
          continue;
        }
        const up = await this.db
          .from('client_secrets')
          .update(this.keyring.seal(value, binding))
          .eq('id', row.id)
          .eq('key_id', row.key_id);
        if (up.error) throw dbError(`re-encrypting secret ${row.name} of client ${row.client_id}`, up.error);
        rekeyed++;
      }
    }
    return { rekeyed, failed };
  }

  private async row(clientId: string, name: string): Promise<SecretRow | null> {
    const res = await this.db
      .from('client_secrets')
      .select('id, client_id, kind, name, key_id, iv, ciphertext, created_at, updated_at')
      .eq('client_id', clientId)
      .eq('name', name)
      .maybeSingle();
    if (res.error) throw dbError(`reading secret ${name} of client ${clientId}`, res.error);
    return (res.data as SecretRow | null) ?? null;
  }

  private refusal(what: string, error: { message: string; code?: string }) {
    if (error.code === '23503')
      return new UsageError(`${what}: there is no such client (sidekick clients list)`);
    return dbError(what, error);
  }
}
