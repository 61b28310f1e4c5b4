import { fileURLToPath } from 'node:url';
import { cli, ServerOptions } from '@livekit/agents';
import { type Config, ConfigError, describeConfig, loadConfig } from '../config.js';
import { rootLogger } from '../log.js';
import { PlatformAdmin } from '../ops/platform.js';
import { EmbeddedStackMissingError } from '../stack/packages.js';
import { afterSessionDeps, startBackgroundWork } from '../work/background.js';
import { waitForLiveKit } from './livekit-wait.js';
import { requestHandler } from './request.js';
import { createRuntime, withEmbeddedPlatform } from './runtime.js';

/**
 * The worker: `npm start` (production) or `npm run dev`. With no PLATFORM_SUPABASE_URL it first
 * starts the embedded local stack with the demo clients, so it runs with no configuration at all.
 */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
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
  if (config.platform.mode !== 'remote') throw new Error('unreachable: the embedded stack sets the platform');
  // Post-session work, webhooks and spooled turns of every worker's sessions; the retention sweep.
  const background = startBackgroundWork(runtime, {
    platform: PlatformAdmin.connect(config.platform.url, config.platform.serviceRoleKey),
    // Reports are signed with each client's signing secret (SECRETS_KEY); without it none are sent.
    ...afterSessionDeps(runtime),
  });
  // LiveKit drains the jobs on SIGTERM and then exits; from then on this worker takes no new
  // items, and what it was doing resumes on another worker once its lease expires.
  process.once('SIGTERM', () => void background.stop());
  // Only says what the worker waits for; the worker itself keeps retrying, with its health
  // endpoint up (503 until connected) so probes see a live process that is not ready yet.
  void waitForLiveKit(config.livekit.url, log);
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
      // onSessionEnd flushes the transcripts (their grace period, then the spool) and queues the
      // post-session work: one platform request, well inside the margin.
      sessionEndTimeout: config.transcripts.graceMs + 30_000,
      // A job gets this long for its shutdown callbacks after that: the same flush again when
      // onSessionEnd could not run (LiveKit's default, 60 s, would cut a longer grace period short).
      shutdownProcessTimeout: config.transcripts.graceMs + 30_000,
      maxRetry: Number.MAX_SAFE_INTEGER,
    }),
  );
}

await main();
