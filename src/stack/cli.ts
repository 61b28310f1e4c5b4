import '../require-node.js';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { createEmbedder } from '../agent/runtime.js';
import { type Config, ConfigError, EnvFileError, loadConfig, loadEnvFile } from '../config.js';
import { startStackControl } from './control.js';
import { startStack } from './stack.js';

/**
 * `npm run stack [-- --seed]`: the local Supabase-compatible stack as a command. Prints the stack as
 * KEY=value lines (pipe them into an env file), then `stack ready`, and runs until interrupted.
 * LOCAL_STACK_CONTROL_URL and LOCAL_STACK_CONTROL_TOKEN let `sidekick` commands in other terminals
 * ask this stack for new dedicated projects (control.ts: loopback only, token-protected).
 */
const program = new Command('stack')
  .description(
    'Start the local stack: platform, one shared pool and one dedicated project (PGlite + PostgREST)',
  )
  .option(
    '--seed',
    'register demo clients: two adventurers in the pool, one champion on the dedicated project',
  )
  .option(
    '--port <n>',
    'gateway port of the platform; the pool and dedicated use the next two, the control endpoint the one after (0: any free ports)',
    '54321',
  )
  .option(
    '--postgres-url <url>',
    'run the databases on this real PostgreSQL server (superuser URL, pgvector) instead of PGlite',
  )
  .option('--platform-postgres-url <url>', 'only the platform database on this server')
  .option('--pool-postgres-url <url>', 'only the shared pool database on this server')
  .option('--dedicated-postgres-url <url>', 'only the dedicated databases on this server')
  .parse();

const opts = program.opts<{
  seed?: boolean;
  port: string;
  postgresUrl?: string;
  platformPostgresUrl?: string;
  poolPostgresUrl?: string;
  dedicatedPostgresUrl?: string;
}>();
// 0: any free ports (tests, and two stacks side by side); the printed URLs say which.
const basePort = Number(opts.port);
if (!Number.isInteger(basePort) || basePort < 0 || basePort > 65532) {
  console.error(`--port: expected a port number (0 for any free ports), got "${opts.port}"`);
  process.exit(2);
}

// The demo documents are embedded with the embedder the worker and the CLI will use (the same
// environment and .env): documents and queries in one model, or retrieval finds nothing.
let config: Config;
try {
  loadEnvFile();
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError || err instanceof EnvFileError)) throw err;
  console.error(err.message);
  process.exit(2);
}

try {
  const embedder = createEmbedder(config);
  if (opts.seed)
    console.error(`# demo documents embedded with ${embedder.model} (${embedder.dimensions} dimensions)`);
  const stack = await startStack({
    seed: opts.seed ?? false,
    embedder,
    basePort: basePort || undefined,
    serverUrl: opts.postgresUrl ?? config.stack.postgresUrl ?? undefined,
    serverUrls: {
      platform: opts.platformPostgresUrl,
      pool: opts.poolPostgresUrl,
      dedicated: opts.dedicatedPostgresUrl,
    },
  });
  const control = await startStackControl(
    { platformUrl: stack.platform.url, addDedicated: (name) => stack.addDedicated(name) },
    { port: basePort ? basePort + 3 : 0 },
  ).catch(async (err: Error) => {
    await stack.stop();
    throw new Error(`the control endpoint could not listen on 127.0.0.1:${basePort + 3}: ${err.message}`);
  });
  for (const [k, v] of Object.entries(stack.env())) console.log(`${k}=${v}`);
  console.log(`LOCAL_STACK_CONTROL_URL=${control.url}`);
  console.log(`LOCAL_STACK_CONTROL_TOKEN=${control.token}`);
  // Clients' secrets (tools, webhook signatures) are encrypted under SECRETS_KEY: a key for this
  // stack's life (its databases are too), unless one is configured.
  if (!config.secrets.key) console.log(`SECRETS_KEY=${randomBytes(32).toString('base64')}`);
  const rssMb = Math.round(process.memoryUsage().rss / 1024 / 1024);
  console.error(`# started in ${Math.round(stack.startupMs)} ms, resident memory ${rssMb} MB`);
  console.log('stack ready');
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    console.error('# stopping the stack');
    await control.close();
    await stack.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
} catch (err) {
  console.error(`stack failed to start: ${(err as Error).message}`);
  process.exit(1);
}
