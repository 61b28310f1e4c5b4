import { fileURLToPath } from 'node:url';
import { cli, ServerOptions } from '@livekit/agents';
import {
  type Config,
  ConfigError,
  describeConfig,
  EnvFileError,
  loadConfig,
  loadEnvFile,
} from '../config.js';
import { rootLogger } from '../log.js';
import { EmbeddedStackMissingError } from '../stack/packages.js';
import { treeFootprint } from './footprint.js';
import { liveKitLogger, routeLiveKitLogs } from './livekit-log.js';
import { LiveKitConnectionNotice } from './livekit-wait.js';
import { requestHandler } from './request.js';
import { createRuntime, withEmbeddedPlatform } from './runtime.js';

/**
 * The worker: `npm start` (production) or `npm run dev`. With no PLATFORM_SUPABASE_URL it first
 * starts the embedded local stack with the demo clients, so it runs with no configuration at all.
 */
async function main(): Promise<void> {
  let config: Config;
  try {
    // Job processes are forked from this one and inherit what .env set.
    loadEnvFile();
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof EnvFileError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  rootLogger.level = config.logLevel;
  const log = rootLogger;

  let embedded: Awaited<ReturnType<typeof withEmbeddedPlatform>>;
  try {
    embedded = await withEmbeddedPlatform(config, log);
  } catch (err) {
    // The production image has no embedded stack: say which package is missing and what to set.
    if (err instanceof EmbeddedStackMissingError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  config = embedded.config;
  if (embedded.stack) {
    const { stack } = embedded;
    // Ctrl-C in a terminal stops the stack too (its databases on a real server are dropped). On
    // SIGTERM LiveKit drains the sessions and exits; PostgREST processes end with this one.
    process.once('SIGINT', () => void stack.stop().finally(() => process.exit(0)));
  }

  log.info({ config: describeConfig(config) }, 'worker starting');
  if (config.livekit.usingDevDefaults) {
    log[config.nodeEnv === 'production' ? 'error' : 'warn'](
      'LIVEKIT_API_KEY / LIVEKIT_API_SECRET are the `livekit-server --dev` defaults: set the real ones outside local work',
    );
  }
  const runtime = createRuntime(config, log);
  // LiveKit's own lines in our format; while no LiveKit server answers, one line says so (the
  // worker keeps retrying, its health endpoint up with 503, so probes see a live process).
  // Once LiveKit takes the worker, jobs can come: the embedded platform (lazy) starts then, so the
  // first job's lookup does not wait for it (and time out under load).
  const warmPlatform = () =>
    void embedded.stack?.platform.sql.query('SELECT 1').catch((err: unknown) => {
      log.error({ err }, 'the embedded platform database did not start');
    });
  const notice = new LiveKitConnectionNotice(config.livekit.url, log, warmPlatform);
  routeLiveKitLogs(liveKitLogger(config.logLevel, notice));
  void reportReady(config.healthPort, log);
  cli.runApp(
    new ServerOptions({
      // Source under tsx (npm run dev/start) or compiled dist/ (the container).
      agent: fileURLToPath(
        new URL(`./entrypoint.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url),
      ),
      agentName: config.agentName,
      requestFunc: requestHandler(runtime, log, config.agentName),
      wsURL: config.livekit.url,
      apiKey: config.livekit.apiKey,
      apiSecret: config.livekit.apiSecret,
      port: config.healthPort,
      production: config.nodeEnv === 'production',
      // A running session gets this long to finish after SIGTERM (the Kubernetes grace period covers it).
      drainTimeout: 15 * 60 * 1000,
      // A job gets this long after the room ends before it is killed: enough for the transcript
      // grace period (LiveKit's default, 60 s, would cut a longer one short).
      shutdownProcessTimeout: config.transcripts.graceMs + 15_000,
      maxRetry: Number.MAX_SAFE_INTEGER,
      // The embedded default is local work: a job process (about 200 MB each) is started when a
      // job comes, as LiveKit's dev mode does, instead of min(cores, 4) kept idle. LiveKit reads 0
      // as "its default", so "none" is any number below 1.
      ...(embedded.stack ? { numIdleProcesses: -1 } : {}),
    }),
  );
}

/** One line once the health endpoint answers: how long the start took and what it holds. */
async function reportReady(port: number, log: typeof rootLogger): Promise<void> {
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    try {
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      const { rssMb, processes } = treeFootprint();
      const seconds = (performance.now() / 1000).toFixed(1);
      log.info(
        { ready_ms: Math.round(performance.now()), rss_mb: rssMb, processes, health_port: port },
        `worker ready in ${seconds} s, ${rssMb} MB resident in ${processes} processes; health on port ${port} (503 until LiveKit takes the worker)`,
      );
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

await main();
