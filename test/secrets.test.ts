/**
 * Client secrets: AES-256-GCM at rest bound to the client and name, key rotation, and the
 * `sidekick secrets` commands against the local stack's platform database.
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { keyId, SecretDecryptError, SecretsKeyring } from '../src/secrets/keyring.js';
import { ClientSecretStore } from '../src/secrets/store.js';
import type { LocalStack } from '../src/stack/stack.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { platformAdmin, startTestStack } from './support/stack.js';

const newKey = () => randomBytes(32).toString('base64');
const A = 'a1a1a1a1-0000-4000-8000-000000000001';
const B = 'b2b2b2b2-0000-4000-8000-000000000002';

describe('the keyring', () => {
  const key = newKey();
  const ring = SecretsKeyring.from({ key, oldKeys: [] })!;

  it('round-trips, with a fresh nonce each time, and names its key by a fingerprint', () => {
    const a = ring.seal('sk_live_123', { clientId: A, kind: 'tool', name: 'ACME_API_KEY' });
    const b = ring.seal('sk_live_123', { clientId: A, kind: 'tool', name: 'ACME_API_KEY' });
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(a.iv).not.toBe(b.iv);
    expect(a.key_id).toBe(keyId(Buffer.from(key, 'base64')));
    expect(a.key_id).toMatch(/^[0-9a-f]{16}$/);
    expect(Buffer.from(a.ciphertext, 'base64').toString('latin1')).not.toContain('sk_live');
    expect(ring.open(a, { clientId: A, kind: 'tool', name: 'ACME_API_KEY' })).toBe('sk_live_123');
  });

  it('a ciphertext copied to another client, another name or another kind does not decrypt', () => {
    const sealed = ring.seal('sk_live_b', { clientId: B, kind: 'tool', name: 'ACME_API_KEY' });
    for (const binding of [
      { clientId: A, kind: 'tool', name: 'ACME_API_KEY' },
      { clientId: B, kind: 'tool', name: 'OTHER_KEY' },
      { clientId: B, kind: 'signing', name: 'signing' },
    ] as const) {
      const err = (() => {
        try {
          ring.open(sealed, binding);
        } catch (e) {
          return e;
        }
      })() as SecretDecryptError;
      expect(err).toBeInstanceOf(SecretDecryptError);
      expect(err.reason).toBe('not_authentic');
      expect(err.message).not.toContain('sk_live');
    }
    const tampered = {
      ...sealed,
      ciphertext: Buffer.from(
        Buffer.from(sealed.ciphertext, 'base64').map((x, i) => (i === 0 ? x ^ 1 : x)),
      ).toString('base64'),
    };
    expect(() => ring.open(tampered, { clientId: B, kind: 'tool', name: 'ACME_API_KEY' })).toThrow(
      'does not decrypt',
    );
  });

  it('rotation: the old key still opens old rows; without it they are refused naming the key', () => {
    const old = newKey();
    const before = SecretsKeyring.from({ key: old, oldKeys: [] })!;
    const sealed = before.seal('v1', { clientId: A, kind: 'tool', name: 'K' });
    const rotated = SecretsKeyring.from({ key: newKey(), oldKeys: [old] })!;
    expect(rotated.open(sealed, { clientId: A, kind: 'tool', name: 'K' })).toBe('v1');
    expect(rotated.seal('v2', { clientId: A, kind: 'tool', name: 'K' }).key_id).toBe(rotated.currentKeyId);
    expect(() => ring.open(sealed, { clientId: A, kind: 'tool', name: 'K' })).toThrow(
      `was encrypted with key ${sealed.key_id}, which is neither SECRETS_KEY nor in SECRETS_OLD_KEYS`,
    );
  });

  it('config refuses a key that is not 32 bytes of base64, without echoing it', () => {
    const bad = 'c2hvcnQ=';
    const err = (() => {
      try {
        loadConfig({ SECRETS_KEY: bad, SECRETS_OLD_KEYS: `${newKey()},nope!` });
      } catch (e) {
        return e as ConfigError;
      }
    })()!;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('SECRETS_KEY: decodes to 5 bytes; AES-256 needs 32');
    expect(err.message).toContain('SECRETS_OLD_KEYS: key 2 is not base64');
    expect(err.message).not.toContain(bad);
    expect(loadConfig({ SECRETS_KEY: newKey() }).secrets.oldKeys).toEqual([]);
  });
});

describe('sidekick secrets (platform database)', () => {
  let stack: LocalStack;
  let env: Record<string, string>;
  const key = newKey();

  beforeAll(async () => {
    stack = await startTestStack();
    env = stackEnv(stack, { SECRETS_KEY: key });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const rows = (client: string) =>
    stack.platform.sql.query<{ name: string; kind: string; key_id: string; iv: string; ciphertext: string }>(
      'SELECT name, kind, key_id, iv, ciphertext FROM client_secrets WHERE client_id = $1 ORDER BY name',
      [client],
    );

  it('set (from stdin), list (names and ages, never values), replace, delete', async () => {
    const set = await sidekick(
      ['secrets', 'set', '--client', A, '--name', 'ACME_API_KEY'],
      env,
      'sk_live_acme_001\n',
    );
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe(`set secret ACME_API_KEY of client ${A}\n`);
    const stored = await rows(A);
    expect(stored).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain('sk_live_acme_001');

    const again = await sidekick(
      ['secrets', 'set', '--client', A, '--name', 'ACME_API_KEY', '--value-env', 'NEW_VALUE'],
      {
        ...env,
        NEW_VALUE: 'sk_live_acme_002',
      },
    );
    expect(again.stdout).toContain('replaced secret ACME_API_KEY');

    const listed = await sidekick(['secrets', 'list', '--client', A], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ACME_API_KEY\s+tool secret\s+set \d+ s ago/m);
    const listedJson = await sidekick(['secrets', 'list', '--client', A, '--json'], env);
    expect(json<{ secrets: Array<{ name: string; current_key: boolean }> }>(listedJson).secrets).toEqual([
      expect.objectContaining({ name: 'ACME_API_KEY', current_key: true }),
    ]);
    for (const run of [set, again, listed, listedJson])
      expect(run.stdout + run.stderr).not.toMatch(/sk_live_acme/);

    const store = new ClientSecretStore(platformAdmin(stack), SecretsKeyring.from({ key, oldKeys: [] })!);
    expect((await store.load(A, ['ACME_API_KEY'])).values.get('ACME_API_KEY')).toBe('sk_live_acme_002');

    expect((await sidekick(['secrets', 'delete', '--client', A, '--name', 'ACME_API_KEY'], env)).code).toBe(
      0,
    );
    const gone = await sidekick(['secrets', 'delete', '--client', A, '--name', 'ACME_API_KEY'], env);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain(`client ${A} has no secret ACME_API_KEY`);
  });

  it('bad input is named: the secret name, an empty value, an unknown client, no SECRETS_KEY', async () => {
    const badName = await sidekick(['secrets', 'set', '--client', A, '--name', 'acme-key'], env, 'x');
    expect([badName.code, badName.stderr]).toEqual([
      2,
      expect.stringContaining('--name: "acme-key" is not a secret name'),
    ]);
    const empty = await sidekick(['secrets', 'set', '--client', A, '--name', 'EMPTY'], env, '\n');
    expect([empty.code, empty.stderr]).toEqual([2, expect.stringContaining('the secret value is empty')]);
    const unknown = await sidekick(
      ['secrets', 'list', '--client', '99999999-9999-4999-8999-999999999999'],
      env,
    );
    expect(unknown.code).toBe(2);
    const noKey = await sidekick(['secrets', 'list', '--client', A], stackEnv(stack));
    expect([noKey.code, noKey.stderr]).toEqual([2, expect.stringContaining('SECRETS_KEY is not set')]);
  });

  it('the signing secret: made once, the same on every read, replaced by --rotate', async () => {
    const first = await sidekick(['secrets', 'signing-secret', '--client', B], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('a new signing secret');
    const value = first.stdout.trim();
    expect(value).toMatch(/^whsec_[\w-]{43}$/);
    const second = await sidekick(['secrets', 'signing-secret', '--client', B, '--json'], env);
    expect(json<{ signing_secret: string; created: boolean }>(second)).toMatchObject({
      signing_secret: value,
      created: false,
    });
    const rotated = await sidekick(['secrets', 'signing-secret', '--client', B, '--rotate'], env);
    expect(rotated.stdout.trim()).not.toBe(value);
    const listed = await sidekick(['secrets', 'list', '--client', B], env);
    expect(listed.stdout).toMatch(/^signing\s+signing secret/m);
    expect(listed.stdout).not.toContain('whsec_');
  });

  it("a session loads only its client's secrets: B's row copied into A's does not decrypt for A", async () => {
    const store = new ClientSecretStore(platformAdmin(stack), SecretsKeyring.from({ key, oldKeys: [] })!);
    await store.set(B, 'SHARED_NAME', 'value-of-b');
    await store.set(A, 'SHARED_NAME', 'value-of-a');
    expect((await store.load(A, ['SHARED_NAME'])).values.get('SHARED_NAME')).toBe('value-of-a');
    // Someone with database access copies B's ciphertext over A's row.
    await stack.platform.sql.query(
      `UPDATE client_secrets a SET key_id = b.key_id, iv = b.iv, ciphertext = b.ciphertext
         FROM client_secrets b WHERE a.client_id = $1 AND b.client_id = $2 AND a.name = 'SHARED_NAME' AND b.name = 'SHARED_NAME'`,
      [A, B],
    );
    const loaded = await store.load(A, ['SHARED_NAME', 'ONLY_B_HAS']);
    expect(loaded.values.has('SHARED_NAME')).toBe(false);
    expect(loaded.problems.map((p) => p.name).sort()).toEqual(['ONLY_B_HAS', 'SHARED_NAME']);
    expect(JSON.stringify(loaded.problems)).not.toContain('value-of-b');
    // B's own secret of a name A does not have is not A's either.
    await store.set(B, 'ONLY_B_HAS', 'b-only');
    expect((await store.load(A, ['ONLY_B_HAS'])).values.size).toBe(0);
  });

  it('key rotation: rows of the old key keep working with SECRETS_OLD_KEYS; rekey moves them to the new key', async () => {
    const newer = newKey();
    const rotatedEnv = stackEnv(stack, { SECRETS_KEY: newer, SECRETS_OLD_KEYS: key });
    await sidekick(['secrets', 'set', '--client', A, '--name', 'ROTATE_ME'], env, 'before-rotation');
    const listed = await sidekick(['secrets', 'list', '--client', A], rotatedEnv);
    expect(listed.stdout).toMatch(/^ROTATE_ME .*\(old key: sidekick secrets rekey\)$/m);
    const rekey = await sidekick(['secrets', 'rekey', '--json'], rotatedEnv);
    expect(rekey.code, rekey.stderr).toBe(0);
    const result = json<{ rekeyed: number; failed: Array<{ name: string }> }>(rekey);
    expect(result.rekeyed).toBeGreaterThan(0);
    // The row copied across clients above cannot be opened under its own binding: it stays, reported.
    expect(result.failed.map((f) => f.name)).toEqual(['SHARED_NAME']);
    const keyIds = new Set((await rows(A)).filter((r) => r.name === 'ROTATE_ME').map((r) => r.key_id));
    expect([...keyIds]).toEqual([keyId(Buffer.from(newer, 'base64'))]);
    const store = new ClientSecretStore(
      platformAdmin(stack),
      SecretsKeyring.from({ key: newer, oldKeys: [] })!,
    );
    expect((await store.load(A, ['ROTATE_ME'])).values.get('ROTATE_ME')).toBe('before-rotation');
  });
});
