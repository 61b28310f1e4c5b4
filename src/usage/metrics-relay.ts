import { randomBytes } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AggregatorRegistry,
  type MetricObjectWithValues,
  type MetricValue,
  type Registry,
} from 'prom-client';

/**
 * LiveKit runs each job in a child process, but /metrics is served by the main one: each job
 * process sends its registry (as JSON, every few seconds and when its session ends) over a Unix
 * socket that only this worker's user can open; the main process adds them up with prom-client's
 * own aggregation (AggregatorRegistry.aggregate, made for metrics of several processes). When a
 * job process goes, its counters and histograms stay in the sum (a counter must never go down),
 * its gauges leave it. Nothing of LiveKit's is touched: the socket's path reaches the job
 * processes in their environment, which they inherit from the main process.
 */

/** Set by the main process for the job processes it forks. Internal, not an operator's variable. */
export const METRICS_SOCKET_ENV = 'SIDEKICK_METRICS_SOCKET';

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/** The most one message may hold: a registry of this worker's metrics is a few kilobytes. */
const MAX_MESSAGE_BYTES = 1 << 20;

export interface MetricsRelay {
  readonly path: string;
  /** Every job process's metrics (live ones and what gone ones counted), to add to the main registry's. */
  snapshots(): Metrics[];
  close(): Promise<void>;
}

/**
 * The main process's end. Only metrics that `known` defines are taken in, with its types: a job
 * process cannot add series the worker does not have.
 */
export async function startMetricsRelay(known: Registry, path = defaultSocketPath()): Promise<MetricsRelay> {
  const types = new Map(
    known.getMetricsAsArray().map((m) => [m.name, (m as unknown as { type: string }).type]),
  );
  const live = new Map<Socket, Metrics>();
  let retired: Metrics = [];

  const accept = (raw: string): Metrics | undefined => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return undefined;
    }
    if (!Array.isArray(parsed)) return undefined;
    return parsed.filter(
      (m): m is Metrics[number] =>
        typeof m?.name === 'string' && types.get(m.name) === m.type && Array.isArray(m.values),
    );
  };

  const server = createServer((socket) => {
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_MESSAGE_BYTES) return socket.destroy();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const metrics = accept(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if (metrics) live.set(socket, metrics);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const last = live.get(socket);
      live.delete(socket);
      if (!last) return;
      // What a gone process counted stays; what it held (gauges) goes with it.
      const kept = last.filter((m) => String(m.type) !== 'gauge');
      const sum = AggregatorRegistry.aggregate([retired, kept]).getMetricsAsArray();
      // aggregate() registers wrappers whose get() is the summed metric.
      retired = (sum as unknown as Array<{ get(): Metrics[number] }>).map((m) => m.get());
    });
  });
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  // Whatever the umask: only this user's processes may connect.
  chmodSync(path, 0o600);
  server.unref();
  return {
    path,
    snapshots: () => [retired, ...live.values()],
    async close() {
      for (const s of live.keys()) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

/** What /metrics answers: the main registry's metrics and every job process's, added up. */
export async function aggregatedMetrics(
  main: Registry,
  relay: Pick<MetricsRelay, 'snapshots'> | undefined,
): Promise<{ contentType: string; body: string }> {
  const all = [await main.getMetricsAsJSON(), ...(relay?.snapshots() ?? [])] as Metrics[];
  const sum = AggregatorRegistry.aggregate(all);
  return { contentType: sum.contentType, body: await sum.metrics() };
}

export interface MetricsSender {
  /** Sends now (at a session's end: the last word before the process goes). */
  flush(): Promise<void>;
  close(): void;
}

/**
 * A job process's end: sends `registry` every `intervalMs` and on flush(). Best effort: a main
 * process that is gone or not listening costs nothing but the lost numbers; it never holds the
 * process open.
 */
export function sendMetrics(registry: Registry, path: string, intervalMs = 5000): MetricsSender {
  let socket: Socket | undefined;
  const connect = (): Socket => {
    if (socket && !socket.destroyed) return socket;
    const s = createConnection(path);
    s.on('error', () => s.destroy());
    s.unref();
    socket = s;
    return s;
  };
  const flush = async () => {
    const line = `${JSON.stringify(await registry.getMetricsAsJSON())}\n`;
    const s = connect();
    await new Promise<void>((resolve) => {
      if (!s.write(line, () => resolve())) s.once('drain', () => resolve());
      s.once('close', () => resolve());
    });
  };
  const timer = setInterval(() => void flush().catch(() => undefined), intervalMs);
  timer.unref();
  return {
    flush: () => flush().catch(() => undefined),
    close() {
      clearInterval(timer);
      socket?.end();
    },
  };
}

function defaultSocketPath(): string {
  return join(tmpdir(), `sidekick-metrics-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
}
