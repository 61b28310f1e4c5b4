import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { TranscriptStats } from '../context/transcripts.js';
import type { Tier } from '../tenancy/types.js';
import type { TurnLatency } from './latency.js';
import type { LeaseOperation } from './session-leases.js';

/**
 * The worker's Prometheus metrics: one definition, used by every process. The main process
 * (requestFunc, the background work) and each job process (one session) keep their own registry;
 * job processes send theirs to the main process (metrics-relay.ts), which serves the sum on
 * `/metrics` (health-server.ts). Labels are bounded sets: the tier, a refusal code, an outcome, an
 * operation, a work kind. Never a client id (one series per client would be unbounded), never a
 * secret or a transcript.
 */

/** Seconds: from a fast lookup (10 ms) to a slow turn (10 s). */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];
/** Platform round trips: 1 ms to 1 s. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export type TierLabel = Tier | 'unknown';

/** The outbox's depth: the durable work queue's open items by kind and status (platform RPC). */
export type WorkQueueDepth = () => Promise<Array<{ kind: string; status: string; items: number }>>;

interface TrackedStore {
  tier: TierLabel;
  stats: () => Readonly<TranscriptStats>;
  /** Drops counted into the counter so far. */
  seenDropped: number;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly stores = new Set<TrackedStore>();
  private workQueueDepth: WorkQueueDepth | undefined;

  readonly sessionsActive = new Gauge({
    name: 'sidekick_sessions_active',
    help: 'Sessions running now in this worker (job processes), by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });

  readonly jobs = new Counter({
    name: 'sidekick_jobs_total',
    help: "Job requests decided by requestFunc: decision accepted or rejected, reason the refusal's code (accepted: ok)",
    labelNames: ['tier', 'decision', 'reason'] as const,
    registers: [this.registry],
  });

  readonly contextLookupSeconds = new Histogram({
    name: 'sidekick_context_lookup_seconds',
    help: 'Time of the context lookup (documents and recall) each reply was given',
    labelNames: ['tier'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly contextLookups = new Counter({
    name: 'sidekick_context_lookups_total',
    help: 'Context lookups given to replies, by part (documents, recall) and outcome (ok, skipped, timeout, error, cancelled)',
    labelNames: ['tier', 'part', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly llmTtftSeconds = new Histogram({
    name: 'sidekick_llm_ttft_seconds',
    help: "The LLM's time to first token, per completed request",
    labelNames: ['tier'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly ttsTtfbSeconds = new Histogram({
    name: 'sidekick_tts_ttfb_seconds',
    help: "Text to speech's time to first byte, per request",
    labelNames: ['tier'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly turnSeconds = new Histogram({
    name: 'sidekick_turn_e2e_seconds',
    help: "End to end, per reply: from the end of the user's speech (from=end_of_speech) or from a text message's arrival (from=text_input) to the reply's first audio or text",
    labelNames: ['tier', 'from'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly transcriptBuffered = new Gauge({
    name: 'sidekick_transcript_buffered_turns',
    help: 'Transcript turns held in memory awaiting a write, over the running sessions',
    labelNames: ['tier'] as const,
    registers: [this.registry],
    collect: () => this.collectTranscripts(),
  });

  readonly transcriptDropped = new Counter({
    name: 'sidekick_transcript_turns_dropped_total',
    help: 'Transcript turns dropped (buffer full, refused by the database, or unwritten after the grace period)',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });

  readonly leaseSeconds = new Histogram({
    name: 'sidekick_session_lease_seconds',
    help: 'Platform round trips of session leases (concurrency caps and the usage ledger), by operation',
    labelNames: ['operation'] as const,
    buckets: REQUEST_BUCKETS,
    registers: [this.registry],
  });

  readonly workItems = new Gauge({
    name: 'sidekick_work_items',
    help: "The outbox: the durable work queue's open items (pending, running) by kind, for the whole platform",
    labelNames: ['kind', 'status'] as const,
    registers: [this.registry],
    collect: () => this.collectWorkItems(),
  });

  /** The main process also reports its own Node process (memory, event loop, handles). */
  withProcessMetrics(): this {
    collectDefaultMetrics({ register: this.registry, prefix: 'sidekick_worker_' });
    return this;
  }

  /** Where the outbox gauge comes from (the main process; read at most every `cacheMs`). */
  withWorkQueue(depth: WorkQueueDepth, cacheMs = 15_000): this {
    let cached: { at: number; rows: Awaited<ReturnType<WorkQueueDepth>> } | undefined;
    this.workQueueDepth = async () => {
      if (cached && performance.now() - cached.at < cacheMs) return cached.rows;
      cached = { at: performance.now(), rows: await depth() };
      return cached.rows;
    };
    return this;
  }

  jobDecided(tier: TierLabel, decision: { accept: true } | { accept: false; code: string }): void {
    this.jobs.inc({
      tier,
      decision: decision.accept ? 'accepted' : 'rejected',
      reason: decision.accept ? 'ok' : decision.code,
    });
  }

  /** One reply's latency (the parts it has). */
  turn(tier: TierLabel, latency: TurnLatency): void {
    if (latency.context_ms !== null) this.contextLookupSeconds.observe({ tier }, latency.context_ms / 1000);
    if (latency.context_documents)
      this.contextLookups.inc({ tier, part: 'documents', outcome: latency.context_documents });
    if (latency.context_recall)
      this.contextLookups.inc({ tier, part: 'recall', outcome: latency.context_recall });
    if (latency.e2e_ms !== null && latency.e2e_from)
      this.turnSeconds.observe({ tier, from: latency.e2e_from }, latency.e2e_ms / 1000);
  }

  lease(operation: LeaseOperation, seconds: number): void {
    this.leaseSeconds.observe({ operation }, seconds);
  }

  /** Counts a session's transcript buffer and drops until the returned function is called (its end). */
  trackTranscripts(tier: TierLabel, stats: () => Readonly<TranscriptStats>): () => void {
    const store: TrackedStore = { tier, stats, seenDropped: 0 };
    this.stores.add(store);
    return () => {
      this.countDropped(store);
      this.stores.delete(store);
    };
  }

  private countDropped(store: TrackedStore): void {
    const dropped = store.stats().dropped;
    if (dropped > store.seenDropped)
      this.transcriptDropped.inc({ tier: store.tier }, dropped - store.seenDropped);
    store.seenDropped = dropped;
  }

  private collectTranscripts(): void {
    const buffered = new Map<TierLabel, number>();
    for (const store of this.stores) {
      this.countDropped(store);
      buffered.set(store.tier, (buffered.get(store.tier) ?? 0) + store.stats().pending);
    }
    this.transcriptBuffered.reset();
    for (const [tier, n] of buffered) this.transcriptBuffered.set({ tier }, n);
  }

  private async collectWorkItems(): Promise<void> {
    if (!this.workQueueDepth) return;
    // A platform that does not answer leaves the gauge empty for this scrape: /metrics still answers.
    const rows = await this.workQueueDepth().catch(() => undefined);
    this.workItems.reset();
    for (const r of rows ?? []) this.workItems.set({ kind: r.kind, status: r.status }, r.items);
  }
}
