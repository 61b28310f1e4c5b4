import { type Command, Option } from 'commander';
import {
  type CleanupOutcome,
  type ClientDeletion,
  cleanupMovedClient,
  deleteClient,
} from '../ops/client-delete.js';
import { type ClientListing, listClients } from '../ops/client-list.js';
import { updateClientRecord } from '../ops/client-update.js';
import { UsageError } from '../ops/errors.js';
import type { ClientRow } from '../ops/platform.js';
import { provisionClient, type VerifyResult, verifyClient } from '../ops/provision.js';
import { type DedicatedProjectSource, MANAGEMENT_API_URL, selectProvisioner } from '../ops/provisioners.js';
import { type ClientDescription, describeClient, effectiveFeatures } from '../ops/show.js';
import { abortUpgrade, type UpgradeResult, upgradeClient } from '../ops/upgrade.js';
import { PROVISIONING_STATUSES, type ProvisioningStatus } from '../tenancy/platform-rows.js';
import { BOOLEAN_FEATURES, DEDICATED_TIERS, type DedicatedTier, LIMIT_NAMES } from '../tenancy/tiers.js';
import { HOSTING_TYPES, type HostingType, TIERS, type Tier } from '../tenancy/types.js';
import { clientSettingsCommands } from './client-settings.js';
import {
  type CommandContext,
  confirmationNeeded,
  oneOf,
  parseCount,
  parseJsonObject,
  parseUuid,
  plural,
} from './shared.js';

/** `sidekick clients ...`: register, inspect and move clients. */
export function clientCommands(program: Command, ctx: CommandContext): void {
  const clients = program.command('clients').description('register, inspect and move clients');
  clientSettingsCommands(clients, ctx);

  dedicatedOptions(
    clients
      .command('create')
      .description('register a client and provision where its data lives (re-run to finish a failed one)')
      .requiredOption('--name <name>', "the client's name")
      .addOption(
        new Option('--tier <tier>', 'tier').choices(TIERS).argParser(oneOf(TIERS)).default('adventurer'),
      )
      .option(
        '--id <uuid>',
        'client id (default: a new uuid); give it to re-run a failed provisioning',
        parseUuid,
      )
      .option('--features <json>', 'per-client feature overrides (clients.tier_features)', parseJsonObject)
      .option('--allow-duplicate-name', 'register it even though another client has this name')
      .option(
        '--adopt-existing-data',
        "the existing project already holds this client's own data and records no owner yet: claim it",
      )
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedProjectSource & {
        name: string;
        tier: Tier;
        id?: string;
        features?: Record<string, unknown>;
        allowDuplicateName?: boolean;
        adoptExistingData?: boolean;
        json?: boolean;
      },
    ) => {
      const ops = ctx.operations();
      const result = await provisionClient(
        {
          platform: ops.platform,
          pools: ops.pools,
          provisioner: o.tier === 'adventurer' ? undefined : selectProvisioner(o, ctx.io.env, ops.log),
          log: ops.log,
        },
        {
          clientId: o.id,
          name: o.name,
          tier: o.tier,
          tierFeatures: o.features,
          allowDuplicateName: o.allowDuplicateName,
          adoptExistingData: o.adoptExistingData,
        },
      );
      if (o.json) {
        ctx.json({
          client: publicClient(result.client),
          created: result.created,
          already_ready: result.alreadyReady,
        });
      } else {
        ctx.out(formatProvisioned(result.client, result.alreadyReady));
      }
    },
  );

  clients
    .command('verify')
    .description(
      "check that a dedicated client's project records this client as its owner; records it for projects from before the record",
    )
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await verifyClient({ platform: ops.platform, log: ops.log }, o.client);
      if (o.json) return ctx.json(result);
      ctx.out(formatVerified(result));
    });

  clients
    .command('update')
    .description(
      "change a client's name or its per-client overrides of the tier's features and limits (the tier moves only with `clients upgrade`)",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--name <name>', 'a new name')
    .option(
      '--features <json>',
      'overrides to set, merged over the stored ones, e.g. {"max_concurrent_sessions": 5}; null means unlimited',
      parseJsonObject,
    )
    .option(
      '--unset-feature <key>',
      "remove an override: the tier's value applies again (repeatable)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option('--allow-duplicate-name', 'rename it even though another client has this name')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        client: string;
        name?: string;
        features?: Record<string, unknown>;
        unsetFeature: string[];
        allowDuplicateName?: boolean;
        json?: boolean;
      }) => {
        const ops = ctx.operations();
        const { client, previousFeatures } = await updateClientRecord(
          { platform: ops.platform },
          {
            clientId: o.client,
            ...(o.name !== undefined ? { name: o.name } : {}),
            ...(o.features ? { features: o.features } : {}),
            ...(o.unsetFeature.length ? { unsetFeatures: o.unsetFeature } : {}),
            allowDuplicateName: o.allowDuplicateName === true,
          },
        );
        const effective = effectiveFeatures(client);
        if (o.json) {
          return ctx.json({
            client: publicClient(client),
            previous_features: previousFeatures,
            effective,
          });
        }
        ctx.out(`updated client ${client.id} "${client.name}" (${client.tier})`);
        ctx.out(
          `overrides   ${JSON.stringify(client.tier_features ?? {})}  (before: ${JSON.stringify(previousFeatures)})`,
        );
        for (const line of formatEffectiveFeatures(effective)) ctx.out(line);
        ctx.err(
          `note: running workers apply it within CLIENT_CACHE_TTL_MS (${Math.round(ops.config.tenancy.clientCacheTtlMs / 1000)} s); sessions already running keep what they started with`,
        );
      },
    );

  clients
    .command('show')
    .description(
      "a client's platform record, its effective tier features and limits, where its data lives and how many rows it has",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const d = await describeClient({ platform: ops.platform, pools: ops.pools, log: ops.log }, o.client);
      if (o.json) return ctx.json(d);
      for (const line of formatClientDescription(d)) ctx.out(line);
    });

  dedicatedOptions(
    clients
      .command('upgrade')
      .description('move an adventurer into its own project (champion or paragon); re-run to resume')
      .requiredOption('--client <id>', 'client id', parseUuid)
      .addOption(
        new Option('--tier <tier>', 'target tier (default: champion; a resumed move keeps its own)')
          .choices(DEDICATED_TIERS)
          .argParser(oneOf(DEDICATED_TIERS)),
      )
      .option('--keep-source', 'keep the rows in the pool until `sidekick clients cleanup`')
      .option('--abort', 'back out of an upgrade that has not switched yet (opens the fence again)')
      .option('--page-size <n>', 'rows per request (at most 1000, the API row cap)', parseCount, 500)
      .option('--fence-settle-ms <ms>', 'wait after fencing for in-flight writes', parseCount, 2000)
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedProjectSource & {
        client: string;
        tier?: DedicatedTier;
        abort?: boolean;
        keepSource?: boolean;
        pageSize: number;
        fenceSettleMs: number;
        json?: boolean;
      },
    ) => {
      const ops = ctx.operations();
      if (o.abort) {
        const aborted = await abortUpgrade(
          { platform: ops.platform, pools: ops.pools, log: ops.log },
          { clientId: o.client },
        );
        if (o.json) return ctx.json(aborted);
        ctx.out(`upgrade of ${aborted.clientId} aborted: its pool writes are open again`);
        const p = aborted.abandonedProject;
        if (p && aborted.partialCopy)
          ctx.out(`project ${p.ref} holds a partial copy of the client's rows: delete them or the project`);
        else if (p) ctx.out(`project ${p.ref} is no longer referenced by the client`);
        return;
      }
      const provisioner = selectProvisioner(o, ctx.io.env, ops.log);
      if (!provisioner) {
        throw new UsageError(
          'an upgrade needs the target project: set SUPABASE_ACCESS_TOKEN and --organization (Management API), or pass --existing-project-url, or (local stack) set LOCAL_STACK_CONTROL_URL and LOCAL_STACK_CONTROL_TOKEN from `npm run stack`',
        );
      }
      let lastTable = '';
      const result = await upgradeClient(
        { platform: ops.platform, pools: ops.pools, provisioner, log: ops.log },
        {
          clientId: o.client,
          tier: o.tier,
          keepSource: o.keepSource,
          pageSize: o.pageSize,
          fenceSettleMs: o.fenceSettleMs,
          onProgress: (p) => {
            if (p.table !== lastTable || p.copied > 0)
              ctx.err(`${p.table}: ${p.copied}/${plural(p.total, 'row')} copied`);
            lastTable = p.table;
          },
          hooks: { onPhase: (phase) => void ctx.err(`phase: ${phase}`) },
        },
      );
      if (o.json) return ctx.json(result);
      for (const line of formatUpgradeResult(result)) ctx.out(line);
    },
  );

  clients
    .command('cleanup')
    .description("delete a moved client's rows from its old shared pool (again: says there is nothing left)")
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await cleanupMovedClient(
        { platform: ops.platform, pools: ops.pools, log: ops.log },
        { clientId: o.client },
      );
      if (o.json) return ctx.json(result);
      ctx.out(formatCleanup(result));
    });

  clients
    .command('list')
    .description(
      'the clients: tier, hosting, pool, status, and how many sidekicks, documents and conversations each has',
    )
    .addOption(new Option('--tier <tier>', 'only this tier').choices(TIERS).argParser(oneOf(TIERS)))
    .addOption(
      new Option('--status <status>', 'only this provisioning status')
        .choices(PROVISIONING_STATUSES)
        .argParser(oneOf(PROVISIONING_STATUSES)),
    )
    .addOption(
      new Option('--hosting <type>', 'only this hosting type')
        .choices(HOSTING_TYPES)
        .argParser(oneOf(HOSTING_TYPES)),
    )
    .option('--pool <id>', 'only the clients of this shared pool', parseUuid)
    .option('--no-counts', "do not count each client's rows (faster: no request per client)")
    .option('--json', 'print as JSON')
    .action(
      async (o: {
        tier?: Tier;
        status?: ProvisioningStatus;
        hosting?: HostingType;
        pool?: string;
        counts: boolean;
        json?: boolean;
      }) => {
        const ops = ctx.operations();
        const listed = await listClients(
          { platform: ops.platform, pools: ops.pools, log: ops.log },
          { tier: o.tier, status: o.status, hosting: o.hosting, poolId: o.pool, counts: o.counts },
        );
        if (o.json) return ctx.json({ clients: listed });
        if (!listed.length) return ctx.out('no clients');
        for (const line of formatClientList(listed)) ctx.out(line);
      },
    );

  clients
    .command('delete')
    .description(
      "remove a client: its rows in the shared pool, its pool registration and its platform record (never another client's; a dedicated project is left for you to delete). A failed or abandoned provisioning without data goes at once; anything else shows what would go and needs --yes",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--yes', "really delete the client's data")
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; yes?: boolean; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await deleteClient(
        { platform: ops.platform, pools: ops.pools, log: ops.log },
        { clientId: o.client, yes: o.yes === true },
      );
      if (o.json) ctx.json(result);
      else for (const line of formatDeletion(result)) ctx.out(line);
      if (!result.deleted) confirmationNeeded(`client ${result.clientId}`);
    });
}

function dedicatedOptions(cmd: Command): Command {
  return cmd
    .option('--management-api-url <url>', 'Supabase Management API base URL', MANAGEMENT_API_URL)
    .option('--organization <slug>', 'organization for new projects (default: SUPABASE_ORGANIZATION_SLUG)')
    .option('--region <code>', 'region of new projects', 'us-east-1')
    .option('--instance-size <size>', 'compute size of new projects (default: the smallest)')
    .option(
      '--existing-project-url <url>',
      'use this project, which already has the dedicated schema (keys from DEDICATED_SUPABASE_SERVICE_ROLE_KEY and DEDICATED_SUPABASE_ANON_KEY)',
    )
    .option(
      '--existing-project-ref <ref>',
      'the ref of --existing-project-url (default: from its host name)',
    );
}

/** A client row without its credentials: what `--json` output may show. */
export function publicClient(c: ClientRow) {
  return {
    id: c.id,
    name: c.name,
    tier: c.tier,
    hosting_type: c.hosting_type,
    max_sidekicks: c.max_sidekicks,
    provisioning_status: c.provisioning_status,
    shared_pool_id: c.shared_pool_id,
    supabase_project_ref: c.supabase_project_ref,
    supabase_url: c.supabase_url,
  };
}

export function formatProvisioned(c: ClientRow, alreadyReady: boolean): string {
  const where =
    c.hosting_type === 'shared'
      ? `shared pool ${c.shared_pool_id}`
      : `project ${c.supabase_project_ref} (${c.supabase_url})`;
  return `${alreadyReady ? 'already ready' : 'ready'}: client ${c.id} "${c.name}", ${c.tier}, data in ${where}`;
}

export function formatVerified(r: VerifyResult): string {
  if (r.hosting === 'shared') {
    return `client ${r.clientId} lives in shared pool ${r.poolId}: the pool tells its clients apart by client_id; no owner record to verify`;
  }
  return r.owner === 'recorded'
    ? `client ${r.clientId} is now recorded as the owner of project ${r.projectRef} (it had no owner record; ${plural(r.sidekicks, 'sidekick')})`
    : `client ${r.clientId} is the recorded owner of project ${r.projectRef}`;
}

/** The limits and features in force, those a client's overrides set marked with `*`. */
export function formatEffectiveFeatures(e: ClientDescription['effective']): string[] {
  const mark = (f: string) => (e.overridden.includes(f as never) ? '*' : '');
  const lines = [
    `limits      ${LIMIT_NAMES.map((l) => `${l} ${e.features[l] ?? 'unlimited'}${mark(l)}`).join(', ')}`,
    `features    ${BOOLEAN_FEATURES.filter((f) => e.features[f])
      .map((f) => `${f}${mark(f)}`)
      .join(', ')}`,
    `off         ${
      BOOLEAN_FEATURES.filter((f) => !e.features[f])
        .map((f) => `${f}${mark(f)}`)
        .join(', ') || '(none)'
    }`,
  ];
  if (e.overridden.length)
    lines.push(
      `            * set by this client's overrides (tier_features / max_sidekicks), not by the ${e.tier} tier`,
    );
  for (const w of e.warnings) lines.push(`warning     ${w}`);
  return lines;
}

export function formatClientDescription(d: ClientDescription): string[] {
  const lines = [
    `client      ${d.id} "${d.name}"`,
    // The limits line below has max_sidekicks as it is in force (column, override or tier).
    `tier        ${d.tier} (${d.hostingType})`,
    `provisioned ${d.provisioning.status}${d.provisioning.error ? `: ${d.provisioning.error}` : ''}`,
    `migration   ${d.migration.status}${d.migration.state?.phase ? ` (last phase: ${d.migration.state.phase})` : ''}`,
  ];
  lines.push(...formatEffectiveFeatures(d.effective));
  if (d.pool) {
    lines.push(
      `pool        ${d.pool.name} (${d.pool.id}), write fence ${d.pool.writeFence ?? '(not registered)'}`,
    );
  }
  if (d.project) {
    lines.push(
      `project     ${d.project.ref ?? '?'} ${d.project.url ?? ''} (keys: ${d.project.hasServiceRoleKey ? 'stored' : 'missing'})`,
    );
  }
  if (d.rows) {
    lines.push(
      `rows        ${Object.entries(d.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ')}`,
    );
  }
  if (d.rowsError) lines.push(`rows        unavailable: ${d.rowsError}`);
  return lines;
}

export function formatUpgradeResult(result: UpgradeResult): string[] {
  if (result.outcome === 'already_upgraded') {
    return [`client ${result.clientId} is already ${result.tier}: nothing to do`];
  }
  const lines = result.tables.map(
    (t) =>
      `${t.table.padEnd(25)} ${plural(t.rows, 'row').padStart(13)} verified${t.reconciled ? ` (${t.reconciled} copied again)` : ''}`,
  );
  lines.push(
    `client ${result.clientId} is now ${result.tier} in project ${result.project?.ref}: ${plural(result.rowsCopied, 'row')} copied at ${Math.round(result.rowsPerSecond)} rows/s, ${result.totalSeconds.toFixed(1)} s in all`,
  );
  if (result.outcome === 'cleanup_pending') {
    lines.push('the pool still holds its rows: run `sidekick clients cleanup` when ready');
  }
  lines.push(
    'workers switch on their next lookup (CLIENT_CACHE_TTL_MS at most); stale writes are refused by the pool and retried',
  );
  return lines;
}

export function formatCleanup(r: CleanupOutcome): string {
  const rows = Object.entries(r.deleted)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  if (r.nothingLeft) {
    return `nothing left: client ${r.clientId} has no rows in its old pool${r.completedAt ? ` (cleaned up at ${r.completedAt})` : ''}`;
  }
  return `old pool rows of ${r.clientId} deleted: ${rows}`;
}

export function formatClientList(list: readonly ClientListing[]): string[] {
  const whereOf = (c: ClientListing) =>
    c.pool ? `pool ${c.pool.name}` : c.project?.ref ? `project ${c.project.ref}` : '-';
  const statusOf = (c: ClientListing) => (c.migration !== 'none' ? `${c.status}/${c.migration}` : c.status);
  const w = Math.max(5, ...list.map((c) => whereOf(c).length));
  const s = Math.max(6, ...list.map((c) => statusOf(c).length));
  const n = (v: number | undefined) => (v === undefined ? '?' : String(v));
  return [
    `${'id'.padEnd(36)}  ${'tier'.padEnd(10)} ${'hosting'.padEnd(9)} ${'status'.padEnd(s)} ${'where'.padEnd(w)} ${'sidekicks'.padStart(9)} ${'docs'.padStart(6)} ${'convs'.padStart(6)}  name`,
    ...list.map(
      (c) =>
        `${c.id}  ${c.tier.padEnd(10)} ${c.hostingType.padEnd(9)} ${statusOf(c).padEnd(s)} ${whereOf(c).padEnd(w)} ${n(c.counts?.sidekicks).padStart(9)} ${n(c.counts?.documents).padStart(6)} ${n(c.counts?.conversations).padStart(6)}  ${c.name}${c.countsError ? `  (counts: ${c.countsError})` : ''}`,
    ),
  ];
}

export function formatDeletion(d: ClientDeletion): string[] {
  const rows = (r: Partial<Record<string, number>> | null) =>
    r === null
      ? 'could not be counted'
      : Object.entries(r)
          .map(([t, n]) => `${t} ${n}`)
          .join(', ');
  const lines = [
    `${d.deleted ? 'deleted' : 'would delete'} client ${d.clientId} "${d.name}" (${d.tier}, ${d.status})`,
  ];
  for (const p of d.pools) {
    lines.push(
      `  pool ${p.name} (${p.role}): ${d.deleted ? rows(d.deletedRows) : rows(p.rows)}${p.registered ? '; and its registration' : ''}`,
    );
  }
  lines.push('  its platform record (clients row)');
  if (d.project) {
    if (d.project.rows) lines.push(`  kept: project ${d.project.ref ?? '?'} with ${rows(d.project.rows)}`);
    lines.push(`note: ${d.project.note}`);
  }
  return lines;
}
