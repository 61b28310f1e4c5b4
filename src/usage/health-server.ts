import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { freePort } from '../stack/ports.js';
import type { WorkQueue } from '../work/queue.js';
import type { WorkerMetrics } from './metrics.js';
import { aggregatedMetrics, METRICS_SOCKET_ENV, startMetricsRelay } from './metrics-relay.js';

/**
 * The worker's HTTP server on HEALTH_PORT: `GET /metrics` (Prometheus' text format) answered here,
 * everything else (`GET /` for readiness, `GET /worker` for liveness) passed on unchanged to
 * LiveKit's own health server, which listens on a loopback port. LiveKit's server is private to its
 * worker (no way to add a route without patching it), so this one owns the public port and LiveKit's
 * stays what it is, behind it: probes and scrapes share one port, as deploy/worker.yaml expects.
 */
export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(opts: {
  port: number;
  host?: string;
  /** Where LiveKit's health server listens (127.0.0.1). */
  liveKitPort: number;
  metrics: () => Promise<{ contentType: string; body: string }>;
  log: Logger;
}): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      opts
        .metrics()
        .then(({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(req.method === 'HEAD' ? undefined : body);
        })
        .catch((err: Error) => {
          opts.log.warn({ reason: err.message }, '/metrics could not be collected');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
        });
      return;
    }
    const upstream = request(
      { host: '127.0.0.1', port: opts.liveKitPort, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // Before LiveKit's server listens (the first moments of the start): not ready (GET /), but
    // alive (GET /worker, the liveness probe: 200 whenever the process answers).
    upstream.on('error', () => {
      if (res.headersSent) return void res.end();
      if (path === '/worker') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ state: 'starting' }));
        return;
      }
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('worker starting\n');
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * The main process's metrics and health: the relay the job processes send their metrics to (its
 * socket in their environment), the process and outbox gauges, and the server on `port`. Returns
 * the port LiveKit's own health server is to listen on (loopback) behind it.
 */
export async function serveWorkerHealth(
  runtime: { metrics: WorkerMetrics; work: Pick<WorkQueue, 'depth'> },
  port: number,
  log: Logger,
  opts: {
    /** Where the job processes' environment comes from (LiveKit forks them from this process). */
    env?: NodeJS.ProcessEnv;
    /** How long one reading of the outbox's depth serves scrapes (one platform request). */
    outboxCacheMs?: number;
    /**
     * Whether the platform may be asked for the outbox now: the embedded one starts on its first
     * request, and a scrape must not be it (the gauge is empty until the platform is up).
     */
    platformUp?: () => boolean;
  } = {},
): Promise<{ health: HealthServer; liveKitPort: number }> {
  const env = opts.env ?? process.env;
  const relay = await startMetricsRelay(runtime.metrics.registry);
  // LiveKit forks the job processes from this one: they inherit the variable.
  env[METRICS_SOCKET_ENV] = relay.path;
  const platformUp = opts.platformUp ?? (() => true);
  runtime.metrics
    .withProcessMetrics()
    .withWorkQueue(() => (platformUp() ? runtime.work.depth() : Promise.resolve([])), opts.outboxCacheMs);
  const liveKitPort = await freePort();
  const health = await startHealthServer({
    port,
    liveKitPort,
    metrics: () => aggregatedMetrics(runtime.metrics.registry, relay),
    log,
  });
  return { health, liveKitPort };
}
