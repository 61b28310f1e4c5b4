import '../require-node.js';
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
import { PlatformAdmin } from '../ops/platform.js';
import { EmbeddedStackMissingError } from '../stack/packages.js';
import { serveWorkerHealth } from '../usage/health-server.js';
import { afterSessionDeps, type BackgroundWork, startBackgroundWork } from '../work/background.js';
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
    process.once('SIGINT', () => {
      log.info('SIGINT: stopping the worker and the embedded stack');
      void stack.stop().finally(() => process.exit(0));
    });
  }

  log.info({ config: describeConfig(config) }, 'worker starting');
  if (config.livekit.usingDevDefaults) {
    log[config.nodeEnv === 'production' ? 'error' : 'warn'](
      'LIVEKIT_API_KEY / LIVEKIT_API_SECRET are the `livekit-server --dev` defaults: set the real ones outside local work',
    );
  }
  const runtime = createRuntime(config, log);
  if (config.platform.mode !== 'remote') throw new Error('unreachable: the embedded stack sets the platform');
  const platform = config.platform;
  // Post-session work, webhooks and spooled turns of every worker's sessions; the retention sweep.
  let background: BackgroundWork | undefined;
  const startBackground = () => {
    background ??= startBackgroundWork(runtime, {
      platform: PlatformAdmin.connect(platform.url, platform.serviceRoleKey),
      // Reports are signed with each client's signing secret (SECRETS_KEY); without it none are sent.
      ...afterSessionDeps(runtime),
    });
  };
  // Until LiveKit's worker runs (its own handler drains and exits), a SIGTERM stops the start: a
  // listener of ours would otherwise keep Node from exiting on it, and nothing would.
  const sigtermWhileStarting = () => {
    log.info('SIGTERM while starting: stopping');
    process.exit(143);
  };
  process.once('SIGTERM', sigtermWhileStarting);
  process.once('exit', (code) => log.info({ exit_code: code }, 'worker stopped'));
  // LiveKit's own lines in our format; while no LiveKit server answers, one line says so (the
  // worker keeps retrying, its health endpoint up with 503, so probes see a live process).
  // Once LiveKit takes the worker, jobs can come: the embedded platform (lazy) starts then, so the
  // first job's lookup does not wait for it (and time out under load); so does the background
  // work, which would otherwise start it at once.
  const warmPlatform = () => {
    void embedded.stack?.platform.sql.query('SELECT 1').catch((err: unknown) => {
      log.error({ err }, 'the embedded platform database did not start');
    });
    startBackground();
  };
  if (!embedded.stack) startBackground();
  const notice = new LiveKitConnectionNotice(config.livekit.url, log, warmPlatform);
  routeLiveKitLogs(liveKitLogger(config.logLevel, notice));
  // HEALTH_PORT is ours: /metrics here, / and /worker passed to LiveKit's server behind it.
  const embeddedPlatform = embedded.stack?.platform;
  const { health, liveKitPort } = await serveWorkerHealth(runtime, config.healthPort, log, {
    platformUp: () => embeddedPlatform?.started ?? true,
  });
  void reportReady(health.port, liveKitPort, log).then((ready) => {
    if (!ready) return;
    // LiveKit's worker runs (its health server answers): its own handler drains the jobs on SIGTERM
    // and then exits. (Before that, @livekit/agents 1.9 hangs on a SIGTERM that lands while its
    // inference process starts: its close() waits for a run() that then never ends. So until
    // here, ours stops the process.) From then on this worker takes no new items, and what it was
    // doing resumes on another worker once its lease expires.
    process.off('SIGTERM', sigtermWhileStarting);
    process.once('SIGTERM', () => {
      log.info('SIGTERM: draining; running sessions may finish (up to 15 min), no new jobs are taken');
      void background?.stop();
    });
  });
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
      host: '127.0.0.1',
      port: liveKitPort,
      production: config.nodeEnv === 'production',
      // A running session gets this long to finish after SIGTERM (the Kubernetes grace period covers it).
      drainTimeout: 15 * 60 * 1000,
      // onSessionEnd flushes the transcripts (their grace period, then the spool) and queues the
      // post-session work: one platform request, well inside the margin.
      sessionEndTimeout: config.transcripts.graceMs + 30_000,
      // A job gets this long for its shutdown callbacks after that: the same flush again when
      // onSessionEnd could not run (LiveKit's default, 60 s, would cut a longer grace period short).
      shutdownProcessTimeout: config.transcripts.graceMs + 30_000,
      maxRetry: Number.MAX_SAFE_INTEGER,
      // The embedded default is local work: a job process (about 200 MB each) is started when a
      // job comes, as LiveKit's dev mode does, instead of min(cores, 4) kept idle. LiveKit reads 0
      // as "its default", so "none" is any number below 1.
      ...(embedded.stack ? { numIdleProcesses: -1 } : {}),
    }),
  );
}

/** One line once LiveKit's health server (behind ours) answers: how long the start took and what it holds; false if it never did. */
async function reportReady(port: number, liveKitPort: number, log: typeof rootLogger): Promise<boolean> {
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    try {
      await fetch(`http://127.0.0.1:${liveKitPort}/`, { signal: AbortSignal.timeout(1000) });
      const { rssMb, processes } = treeFootprint();
      const seconds = (performance.now() / 1000).toFixed(1);
      log.info(
        { ready_ms: Math.round(performance.now()), rss_mb: rssMb, processes, health_port: port },
        `worker ready in ${seconds} s, ${rssMb} MB resident in ${processes} processes; health on port ${port} (503 until LiveKit takes the worker)`,
      );
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

await main();
