import { Command } from 'commander';
import { createEmbedder } from '../agent/runtime.js';
import { type Config, ConfigError, EnvFileError, loadConfig, loadEnvFile } from '../config.js';
import { startStack } from './stack.js';

/**
 * `npm run stack [-- --seed]`: the local Supabase-compatible stack as a command. Prints the stack as
 * KEY=value lines (pipe them into an env file), then `stack ready`, and runs until interrupted.
 */
const program = new Command('stack')
  .description(
    'Start the local stack: platform, one shared pool and one dedicated project (PGlite + PostgREST)',
  )
  .option(
    '--seed',
    'register demo clients: two adventurers in the pool, one champion on the dedicated project',
  )
  .option('--port <n>', 'gateway port of the platform; the pool and dedicated use the next two', '54321')
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
const basePort = Number(opts.port);
if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65533) {
  console.error(`--port: expected a port number, got "${opts.port}"`);
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
    basePort,
    serverUrl: opts.postgresUrl ?? config.stack.postgresUrl ?? undefined,
    serverUrls: {
      platform: opts.platformPostgresUrl,
      pool: opts.poolPostgresUrl,
      dedicated: opts.dedicatedPostgresUrl,
    },
  });
  for (const [k, v] of Object.entries(stack.env())) console.log(`${k}=${v}`);
  const rssMb = Math.round(process.memoryUsage().rss / 1024 / 1024);
  console.error(`# started in ${Math.round(stack.startupMs)} ms, resident memory ${rssMb} MB`);
  console.log('stack ready');
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    console.error('# stopping the stack');
    await stack.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
} catch (err) {
  console.error(`stack failed to start: ${(err as Error).message}`);
  process.exit(1);
}
