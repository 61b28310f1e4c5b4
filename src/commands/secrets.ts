import type { Command } from 'commander';
import { UsageError } from '../ops/errors.js';
import { toolsNamingSecret } from '../ops/tools.js';
import { SecretsKeyring } from '../secrets/keyring.js';
import { ClientSecretStore, checkSecretName, type SecretListing } from '../secrets/store.js';
import { type CommandContext, parseUuid, plural } from './shared.js';

/**
 * `sidekick secrets ...`: a client's secrets (what its tools send in a header) and its signing
 * secret. Values are read from standard input or a named environment variable, never from an
 * argument (shell history, process lists), and never printed, except the signing secret on
 * request: the client's endpoint needs it to verify our calls.
 */
export function secretsCommands(program: Command, ctx: CommandContext): void {
  const secrets = program
    .command('secrets')
    .description(
      "a client's secrets for its tools (stored encrypted; names and ages shown, never values) and its signing secret",
    );

  secrets
    .command('set')
    .description(
      'set or replace (rotate) a secret; the value comes from standard input, or from the variable --value-env names',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--name <NAME>', 'the name tools_config refers to, e.g. ACME_API_KEY')
    .option('--value-env <VAR>', 'read the value from this environment variable instead of standard input')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; name: string; valueEnv?: string; json?: boolean }) => {
      checkSecretName(o.name);
      const value = o.valueEnv ? ctx.io.env[o.valueEnv] : await readStdin(ctx);
      if (o.valueEnv && value === undefined)
        throw new UsageError(`--value-env: the variable ${o.valueEnv} is not set`);
      const store = await storeFor(ctx, o.client);
      const { created } = await store.set(o.client, o.name, (value ?? '').replace(/\r?\n$/, ''));
      if (o.json) return ctx.json({ client_id: o.client, name: o.name, created });
      ctx.out(`${created ? 'set' : 'replaced'} secret ${o.name} of client ${o.client}`);
    });

  secrets
    .command('list')
    .description("the client's secrets: names and ages, never values")
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const store = await storeFor(ctx, o.client);
      const list = await store.list(o.client);
      if (o.json) {
        return ctx.json({
          client_id: o.client,
          secrets: list.map((s) => ({
            name: s.name,
            kind: s.kind,
            created_at: s.createdAt,
            updated_at: s.updatedAt,
            current_key: s.currentKey,
          })),
        });
      }
      if (!list.length)
        return ctx.out(`no secrets: \`sidekick secrets set --client ${o.client} --name NAME\` sets one`);
      for (const line of formatSecrets(list)) ctx.out(line);
    });

  secrets
    .command('delete')
    .description('delete a secret (tools that name it are left out of sessions until it is set again)')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--name <NAME>', 'the secret')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; name: string; json?: boolean }) => {
      const store = await storeFor(ctx, o.client);
      const deleted = await store.delete(o.client, o.name);
      // Sessions leave these out from now on: the operator hears it here, not from a caller.
      const leftOut = deleted ? await toolsNamingSecret(ctx.operations().worker(), o.client, o.name) : [];
      if (o.json) return ctx.json({ client_id: o.client, name: o.name, deleted, tools_left_out: leftOut });
      if (!deleted)
        throw new UsageError(`--name: client ${o.client} has no secret ${o.name} (sidekick secrets list)`);
      ctx.out(`deleted secret ${o.name} of client ${o.client}`);
      if (leftOut.length > 0) {
        ctx.err(
          `note: tools naming it are left out of sessions until it is set again (\`sidekick secrets set --client ${o.client} --name ${o.name}\`): ${leftOut.map((t) => `${t.sidekick}/${t.tool}`).join(', ')}`,
        );
      }
    });

  secrets
    .command('signing-secret')
    .description(
      "print the client's signing secret (made on first use), for its endpoints to verify X-Sidekick-Signature; --rotate makes a new one",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--rotate', 'replace it: calls are signed with the new one from the next session on')
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; rotate?: boolean; json?: boolean }) => {
      const store = await storeFor(ctx, o.client);
      const { value, created } = await store.signingSecret(o.client, { rotate: o.rotate === true });
      if (o.json) return ctx.json({ client_id: o.client, signing_secret: value, created });
      ctx.err(
        created
          ? `# a new signing secret for client ${o.client}: give it to the client for its endpoints (README: verifying a call)`
          : `# the signing secret of client ${o.client}`,
      );
      ctx.out(value);
    });

  secrets
    .command('rekey')
    .description('re-encrypt every secret still under an old key (SECRETS_OLD_KEYS) with SECRETS_KEY')
    .option('--json', 'print the result as JSON')
    .action(async (o: { json?: boolean }) => {
      const result = await storeFor(ctx).then((s) => s.rekey());
      if (o.json) return ctx.json(result);
      ctx.out(`re-encrypted ${plural(result.rekeyed, 'secret')} with SECRETS_KEY`);
      for (const f of result.failed) ctx.err(`not re-encrypted: ${f.problem}`);
      if (result.failed.length)
        throw new UsageError(
          `${plural(result.failed.length, 'secret')} could not be decrypted with any configured key`,
        );
    });
}

/** The store of the configured platform; with a client id, that client must exist. */
export async function storeFor(ctx: CommandContext, clientId?: string): Promise<ClientSecretStore> {
  const ops = ctx.operations();
  const keyring = SecretsKeyring.from(ops.config.secrets);
  if (!keyring) {
    throw new UsageError(
      'SECRETS_KEY is not set: secrets are stored encrypted with it (openssl rand -base64 32; see .env.example)',
    );
  }
  if (clientId) await ops.platform.getClient(clientId);
  return new ClientSecretStore(ops.platform.db, keyring);
}

async function readStdin(ctx: CommandContext): Promise<string> {
  const input = ctx.io.stdin ?? process.stdin;
  const parts: Buffer[] = [];
  for await (const chunk of input) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(parts).toString('utf8');
}

export function formatSecrets(list: readonly SecretListing[], now = Date.now()): string[] {
  return list.map((s) => {
    const age = describeAge(now - Date.parse(s.updatedAt));
    const what = s.kind === 'signing' ? 'signing secret (sidekick secrets signing-secret)' : 'tool secret';
    return `${s.name.padEnd(32)} ${what.padEnd(48)} set ${age} ago${s.createdAt !== s.updatedAt ? ` (first ${describeAge(now - Date.parse(s.createdAt))} ago)` : ''}${s.currentKey ? '' : '  (old key: sidekick secrets rekey)'}`;
  });
}

function describeAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return plural(Math.round(s / 86_400), 'day');
}
