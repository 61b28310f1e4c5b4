#!/usr/bin/env node
/**
 * `sidekick`: operations on the platform (the package's bin; `npx tsx src/cli.ts` in development).
 *
 *   sidekick clients create --name N [--tier adventurer|champion|paragon] [--id UUID]
 *   sidekick clients show --client C
 *   sidekick clients upgrade --client C [--tier champion|paragon] [--keep-source] [--abort]
 *   sidekick clients cleanup --client C
 *   sidekick docs add --client C --agent S FILE...
 *   sidekick docs list --client C [--agent S]
 *   sidekick chat [--client C --agent S] [--user U] [--conversation V]
 *
 * Exit codes: 0 done, 1 failed (run again to finish what was started), 2 usage or configuration
 * error, 3 refused by a limit (tier limits, no room in any shared pool). `--json` prints the result
 * as JSON on stdout; progress and logs go to stderr. The logic lives in src/ops; this file only
 * parses arguments, builds the dependencies from the environment and prints.
 */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Logger } from 'pino';
import { runChat } from './agent/chat.js';
import { InvalidJobMetadataError, SidekickLimitError } from './agent/errors.js';
import { parseJobMetadata } from './agent/metadata.js';
import { createRuntime, type WorkerRuntime, withEmbeddedPlatform } from './agent/runtime.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import type { Embedder } from './context/embeddings.js';
import { createRootLogger, isLogLevel } from './log.js';
import { EXIT, exitCodeOf, UsageError } from './ops/errors.js';
import { ExistingProjectProvisioner } from './ops/existing-project.js';
import { ingestDocuments, listDocuments } from './ops/ingest.js';
import { MANAGEMENT_API_URL, ManagementApiProvisioner } from './ops/management-api.js';
import { PlatformAdmin, PoolAdmins } from './ops/platform.js';
import { provisionClient } from './ops/provision.js';
import type { DedicatedProvisioner } from './ops/provisioner.js';
import { describeClient } from './ops/show.js';
import { abortUpgrade, cleanupClient, upgradeClient } from './ops/upgrade.js';
import type { ClientConnectionManager } from './tenancy/connections.js';
import type { Tier } from './tenancy/types.js';

export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  env: NodeJS.ProcessEnv;
  /** What `sidekick chat` reads the user's lines from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
}

interface DedicatedFlags {
  managementApiUrl?: string;
  organization?: string;
  region?: string;
  instanceSize?: string;
  existingProjectUrl?: string;
  existingProjectRef?: string;
}

/** Runs one command; resolves to the exit code. Never calls process.exit (tests run it in-process). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const out = (s: string): void => {
    io.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  };
  const err = (s: string): void => {
    io.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
  };
  const json = (value: unknown): void => out(JSON.stringify(value, null, 2));

  let runtime: Runtime | undefined;
  const rt = (): Runtime => {
    runtime ??= makeRuntime(io);
    return runtime;
  };

  const program = new Command('sidekick')
    .description('Operations for the sidekick platform: clients, tier upgrades, documents, chat')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .addHelpText(
      'after',
      `
Environment: PLATFORM_SUPABASE_URL and PLATFORM_SUPABASE_SERVICE_ROLE_KEY (the platform project),
SUPABASE_ACCESS_TOKEN (+ --organization or SUPABASE_ORGANIZATION_SLUG) for new dedicated projects,
embedding settings (EMBEDDING_*, OPENAI_*) for docs add. \`npm run stack -- --seed\` prints a local set.
Exit codes: 0 ok, 1 failure (run again to finish), 2 usage/config error, 3 refused by a limit.`,
    );

  const clients = program.command('clients').description('register, inspect and move clients');
  const docs = program.command('docs').description("load and list a sidekick's documents");

  const dedicatedOptions = (cmd: Command) =>
    cmd
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

  dedicatedOptions(
    clients
      .command('create')
      .description('register a client and provision where its data lives (re-run to finish a failed one)')
      .requiredOption('--name <name>', "the client's name")
      .addOption(
        new Option('--tier <tier>', 'tier')
          .choices(['adventurer', 'champion', 'paragon'])
          .default('adventurer'),
      )
      .option('--id <uuid>', 'client id (default: a new uuid); give it to re-run a failed provisioning')
      .option('--features <json>', 'per-client feature overrides (clients.tier_features)', parseJsonObject)
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedFlags & {
        name: string;
        tier: string;
        id?: string;
        features?: Record<string, unknown>;
        json?: boolean;
      },
    ) => {
      const r = rt();
      const tier = o.tier as Tier;
      const result = await provisionClient(
        {
          platform: r.platform,
          pools: r.pools,
          provisioner: tier === 'adventurer' ? undefined : dedicatedProvisioner(o, io.env, r.log),
          log: r.log,
        },
        { clientId: o.id, name: o.name, tier, tierFeatures: o.features },
      );
      const c = result.client;
      if (o.json) {
        json({
          client: {
            id: c.id,
            name: c.name,
            tier: c.tier,
            hosting_type: c.hosting_type,
            max_sidekicks: c.max_sidekicks,
            provisioning_status: c.provisioning_status,
            shared_pool_id: c.shared_pool_id,
            supabase_project_ref: c.supabase_project_ref,
            supabase_url: c.supabase_url,
          },
          created: result.created,
          already_ready: result.alreadyReady,
        });
      } else {
        const where =
          c.hosting_type === 'shared'
            ? `shared pool ${c.shared_pool_id}`
            : `project ${c.supabase_project_ref} (${c.supabase_url})`;
        out(
          `${result.alreadyReady ? 'already ready' : 'ready'}: client ${c.id} "${c.name}", ${c.tier}, data in ${where}`,
        );
      }
    },
  );

  clients
    .command('show')
    .description("a client's platform record, where its data lives and how many rows it has")
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const r = rt();
      const d = await describeClient({ platform: r.platform, pools: r.pools, log: r.log }, o.client);
      if (o.json) return json(d);
      out(`client      ${d.id} "${d.name}"`);
      out(`tier        ${d.tier} (${d.hostingType}), max_sidekicks ${d.maxSidekicks ?? 'unlimited'}`);
      out(`provisioned ${d.provisioning.status}${d.provisioning.error ? `: ${d.provisioning.error}` : ''}`);
      out(
        `migration   ${d.migration.status}${d.migration.state?.phase ? ` (last phase: ${d.migration.state.phase})` : ''}`,
      );
      if (d.pool)
        out(
          `pool        ${d.pool.name} (${d.pool.id}), write fence ${d.pool.writeFence ?? '(not registered)'}`,
        );
      if (d.project) {
        out(
          `project     ${d.project.ref ?? '?'} ${d.project.url ?? ''} (keys: ${d.project.hasServiceRoleKey ? 'stored' : 'missing'})`,
        );
      }
      if (d.rows)
        out(
          `rows        ${Object.entries(d.rows)
            .map(([t, n]) => `${t} ${n}`)
            .join(', ')}`,
        );
      if (d.rowsError) out(`rows        unavailable: ${d.rowsError}`);
    });

  dedicatedOptions(
    clients
      .command('upgrade')
      .description('move an adventurer into its own project (champion or paragon); re-run to resume')
      .requiredOption('--client <id>', 'client id')
      .addOption(
        new Option('--tier <tier>', 'target tier (default: champion; a resumed move keeps its own)').choices([
          'champion',
          'paragon',
        ]),
      )
      .option('--keep-source', 'keep the rows in the pool until `sidekick clients cleanup`')
      .option('--abort', 'back out of an upgrade that has not switched yet (opens the fence again)')
      .option('--page-size <n>', 'rows per request (at most 1000, the API row cap)', parseCount, 500)
      .option('--fence-settle-ms <ms>', 'wait after fencing for in-flight writes', parseCount, 2000)
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedFlags & {
        client: string;
        tier?: 'champion' | 'paragon';
        abort?: boolean;
        keepSource?: boolean;
        pageSize: number;
        fenceSettleMs: number;
        json?: boolean;
      },
    ) => {
      const r = rt();
      if (o.abort) {
        const aborted = await abortUpgrade(
          { platform: r.platform, pools: r.pools, log: r.log },
          { clientId: o.client },
        );
        if (o.json) return json(aborted);
        out(`upgrade of ${aborted.clientId} aborted: its pool writes are open again`);
        const p = aborted.abandonedProject;
        if (p && aborted.partialCopy)
          out(`project ${p.ref} holds a partial copy of the client's rows: delete them or the project`);
        else if (p) out(`project ${p.ref} is no longer referenced by the client`);
        return;
      }
      const provisioner = dedicatedProvisioner(o, io.env, r.log);
      if (!provisioner) {
        throw new UsageError(
          'an upgrade needs the target project: set SUPABASE_ACCESS_TOKEN and --organization (Management API), or pass --existing-project-url',
        );
      }
      let lastTable = '';
      const result = await upgradeClient(
        { platform: r.platform, pools: r.pools, provisioner, log: r.log },
        {
          clientId: o.client,
          tier: o.tier,
          keepSource: o.keepSource,
          pageSize: o.pageSize,
          fenceSettleMs: o.fenceSettleMs,
          onProgress: (p) => {
            if (p.table !== lastTable || p.copied > 0) err(`${p.table}: ${p.copied}/${p.total} rows copied`);
            lastTable = p.table;
          },
          hooks: { onPhase: (phase) => void err(`phase: ${phase}`) },
        },
      );
      if (o.json) return json(result);
      if (result.outcome === 'already_upgraded')
        return out(`client ${result.clientId} is already ${result.tier}: nothing to do`);
      for (const t of result.tables)
        out(
          `${t.table.padEnd(25)} ${String(t.rows).padStart(8)} rows verified${t.reconciled ? ` (${t.reconciled} copied again)` : ''}`,
        );
      out(
        `client ${result.clientId} is now ${result.tier} in project ${result.project?.ref}: ${result.rowsCopied} rows copied at ${Math.round(result.rowsPerSecond)} rows/s, ${result.totalSeconds.toFixed(1)} s in all`,
      );
      if (result.outcome === 'cleanup_pending')
        out('the pool still holds its rows: run `sidekick clients cleanup` when ready');
      out(
        'workers switch on their next lookup (CLIENT_CACHE_TTL_MS at most); stale writes are refused by the pool and retried',
      );
    },
  );

  clients
    .command('cleanup')
    .description("delete a moved client's rows from its old shared pool")
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const r = rt();
      const result = await cleanupClient(
        { platform: r.platform, pools: r.pools, log: r.log },
        { clientId: o.client },
      );
      if (o.json) return json(result);
      out(
        `old pool rows of ${result.clientId} deleted: ${Object.entries(result.deleted)
          .map(([t, n]) => `${t} ${n}`)
          .join(', ')}`,
      );
    });

  docs
    .command('add')
    .description("load .txt, .md or .pdf files into a sidekick's knowledge base")
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)')
    .argument('<files...>', 'files to load')
    .option('--chunk-size <n>', 'characters per chunk', parseCount, 1000)
    .option('--chunk-overlap <n>', 'characters shared by neighbouring chunks', parseCount, 150)
    .option('--json', 'print the result as JSON')
    .action(
      async (
        files: string[],
        o: { client: string; agent: string; chunkSize: number; chunkOverlap: number; json?: boolean },
      ) => {
        const r = rt();
        const result = await ingestDocuments(
          { connections: r.connections(), embedder: r.embedder(), log: r.log },
          {
            clientId: o.client,
            agent: o.agent,
            files,
            chunkSize: o.chunkSize,
            chunkOverlap: o.chunkOverlap,
            onProgress: (e) =>
              err(`${e.file}: ${e.stage}${e.chunks !== undefined ? ` (${e.chunks} chunks)` : ''}`),
          },
        );
        if (o.json) return json(result);
        for (const d of result.documents)
          out(`${d.outcome.padEnd(14)} ${d.documentId}  ${d.title}  ${d.chunks} chunks`);
      },
    );

  docs
    .command('list')
    .description("a client's documents (or one sidekick's)")
    .requiredOption('--client <id>', 'client id')
    .option('--agent <slug>', 'only the documents of this sidekick (slug or id)')
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; agent?: string; json?: boolean }) => {
      const r = rt();
      const result = await listDocuments(
        { connections: r.connections() },
        { clientId: o.client, agent: o.agent },
      );
      if (o.json) return json(result);
      if (!result.documents.length) return out('no documents');
      for (const d of result.documents) {
        out(
          `${d.id}  ${(d.status ?? '').padEnd(10)} ${String(d.chunks ?? '?').padStart(5)} chunks  ${d.title ?? ''}`,
        );
      }
    });

  program
    .command('chat')
    .description(
      "talk to a sidekick in the terminal (text) through the worker's own session code; needs no LiveKit. With no platform configured, starts the embedded stack and talks to its first demo sidekick",
    )
    .option('--client <id>', 'client id')
    .option('--agent <slug>', "the sidekick's slug")
    .option('--user <id>', "the end user's id, for recall of their earlier conversations")
    .option('--conversation <id>', 'continue this conversation (default: a new one)')
    .action(async (o: { client?: string; agent?: string; user?: string; conversation?: string }) => {
      const log = cliLogger(io);
      // A copy: pointing the environment at the embedded stack must not leak into the caller's.
      const env = { ...io.env };
      const config = loadConfig(env);
      if (!config.openai.apiKey) {
        throw new UsageError(
          'chat needs a language model: set OPENAI_API_KEY (and OPENAI_BASE_URL for any OpenAI-compatible server, e.g. http://localhost:11434/v1 with any key)',
        );
      }
      if (config.platform.mode === 'embedded') err('no PLATFORM_SUPABASE_URL: starting the embedded stack');
      const embedded = await withEmbeddedPlatform(config, log, env);
      try {
        // The demo's sidekick and user stand in for what is not given, on the embedded stack only.
        const demo = o.client ? undefined : embedded.stack?.demo;
        const metadata = parseJobMetadata(
          JSON.stringify({
            client_id: o.client ?? demo?.adventurers[0]?.clientId,
            agent_slug: o.agent ?? demo?.adventurers[0]?.agentSlug,
            user_id: o.user ?? demo?.userId,
            conversation_id: o.conversation,
          }),
        );
        const stats = await runChat(createRuntime(embedded.config, log), metadata, log, {
          input: io.stdin ?? process.stdin,
          output: io.stdout,
        });
        err(`${stats.turns} turns; transcript rows written ${stats.written}, dropped ${stats.dropped}`);
      } finally {
        await embedded.stack?.stop();
      }
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with code 0; everything else commander refuses is a usage error.
      exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    } else {
      // A ConfigError's message is already the whole list of what to set.
      err(e instanceof ConfigError ? e.message : `error: ${(e as Error).message}`);
      exitCode = cliExitCode(e);
    }
  }
  return exitCode;
}

/** Bad input is 2, a limit 3, anything else (tenancy, a refused session, a failure) 1. */
function cliExitCode(e: unknown): number {
  if (e instanceof ConfigError || e instanceof InvalidJobMetadataError) return EXIT.usage;
  if (e instanceof SidekickLimitError) return EXIT.limit;
  return exitCodeOf(e);
}

interface Runtime {
  config: Config;
  log: Logger;
  platform: PlatformAdmin;
  pools: PoolAdmins;
  connections(): ClientConnectionManager;
  embedder(): Embedder;
}

/** Logs go to stderr (stdout carries results); quiet unless LOG_LEVEL asks for more. */
function cliLogger(io: CliIo): Logger {
  const level = isLogLevel(io.env.LOG_LEVEL) ? io.env.LOG_LEVEL : 'warn';
  return createRootLogger({ level, destination: { write: (s: string) => io.stderr.write(s) } });
}

function makeRuntime(io: CliIo): Runtime {
  const config = loadConfig(io.env);
  if (config.platform.mode !== 'remote') {
    throw new UsageError(
      'the sidekick CLI works on a platform project: set PLATFORM_SUPABASE_URL and PLATFORM_SUPABASE_SERVICE_ROLE_KEY (`npm run stack -- --seed` prints them for the local stack)',
    );
  }
  const { url, serviceRoleKey } = config.platform;
  const log = cliLogger(io);
  const platform = PlatformAdmin.connect(url, serviceRoleKey);
  // The worker's own tenancy and embedder: documents are loaded exactly as sessions read them.
  let worker: WorkerRuntime | undefined;
  const workerRuntime = () => {
    worker ??= createRuntime(config, log);
    return worker;
  };
  return {
    config,
    log,
    platform,
    pools: new PoolAdmins(platform),
    connections: () => workerRuntime().connections,
    embedder: () => workerRuntime().embedder,
  };
}

/** The dedicated-project provisioner the flags and environment ask for, if any. */
function dedicatedProvisioner(
  o: DedicatedFlags,
  env: NodeJS.ProcessEnv,
  log: Logger,
): DedicatedProvisioner | undefined {
  if (o.existingProjectUrl) {
    const serviceRoleKey = env.DEDICATED_SUPABASE_SERVICE_ROLE_KEY?.trim();
    const anonKey = env.DEDICATED_SUPABASE_ANON_KEY?.trim();
    if (!serviceRoleKey || !anonKey) {
      throw new UsageError(
        '--existing-project-url needs DEDICATED_SUPABASE_SERVICE_ROLE_KEY and DEDICATED_SUPABASE_ANON_KEY in the environment (keys are never taken as arguments)',
      );
    }
    let url: URL;
    try {
      url = new URL(o.existingProjectUrl);
    } catch {
      throw new UsageError(`--existing-project-url: not a URL: ${o.existingProjectUrl}`);
    }
    // https://<ref>.supabase.co names its ref; any other host stands for itself.
    const hosted = /^([a-z]{20})\.supabase\.co$/.exec(url.hostname);
    const ref = o.existingProjectRef ?? hosted?.[1] ?? url.host.replace(/[^a-z0-9]+/gi, '-');
    return new ExistingProjectProvisioner({ ref, url: o.existingProjectUrl, anonKey, serviceRoleKey });
  }
  const token = env.SUPABASE_ACCESS_TOKEN?.trim();
  if (!token) return undefined;
  const organizationSlug = o.organization ?? env.SUPABASE_ORGANIZATION_SLUG?.trim();
  if (!organizationSlug) {
    throw new UsageError(
      'new projects need an organization: pass --organization or set SUPABASE_ORGANIZATION_SLUG',
    );
  }
  return new ManagementApiProvisioner({
    baseUrl: o.managementApiUrl,
    accessToken: token,
    organizationSlug,
    region: o.region,
    desiredInstanceSize: o.instanceSize,
    log,
  });
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

function parseJsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('expected a JSON object');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new InvalidArgumentError('expected a JSON object');
  return parsed as Record<string, unknown>;
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isMain()) {
  const code = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  });
  // Let stdout drain before exiting: a script piping --json output must get all of it.
  process.stdout.write('', () => process.exit(code));
}
