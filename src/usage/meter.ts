import { type llm, type metrics, voice } from '@livekit/agents';
import type { TurnContext } from '../context/context-manager.js';
import type { Embedder } from '../context/embeddings.js';
import type { TranscriptStats } from '../context/transcripts.js';
import type { Tier } from '../tenancy/types.js';
import { type TurnLatency, TurnLatencyRecorder } from './latency.js';
import type { WorkerMetrics } from './metrics.js';

/**
 * A session's usage, keyed by the usage ledger's column names (migrations/platform/008): what a
 * lease renewal carries and the ledger row is made of.
 */
export interface UsageSnapshot {
  /** Seconds the user was speaking (voice activity), voice sessions only. */
  audio_in_seconds: number;
  /** Seconds the sidekick was speaking (its audio played out), voice sessions only. */
  audio_out_seconds: number;
  llm_prompt_tokens: number;
  llm_prompt_cached_tokens: number;
  llm_completion_tokens: number;
  tts_characters: number;
  /** Seconds of speech the TTS generated (more than was played when the user interrupts). */
  tts_audio_seconds: number;
  /** Seconds of audio the STT was sent. */
  stt_audio_seconds: number;
  /** Embedding tokens of the session's lookups and transcript rows (as the embeddings API counts them). */
  embedding_tokens: number;
  tool_calls: number;
  user_turns: number;
  assistant_turns: number;
  /** agents' usage summaries, one per provider and model (what pricing by model needs). */
  models: Array<Record<string, unknown>>;
}

const seconds = (ms: number) => Math.round(ms) / 1000;

/**
 * Measures one session: agents' own usage collection (session.usage: LLM tokens, TTS characters
 * and audio, STT audio), the embedding tokens of its lookups and transcript rows (the embedder it
 * is given), its tool calls and turns, how long the user and the sidekick spoke, and each reply's
 * latency (latency.ts). It feeds the worker's metrics as it goes; snapshot() is the ledger's view.
 * Nothing here does I/O or waits: it hangs off the session's events.
 */
export class SessionMeter {
  private readonly latency = new TurnLatencyRecorder();
  private session: voice.AgentSession | undefined;
  private embeddingTokens = 0;
  private toolCalls = 0;
  private userTurns = 0;
  private assistantTurns = 0;
  private readonly spoke = { user: 0, agent: 0 };
  private readonly speakingSince: { user?: number | undefined; agent?: number | undefined } = {};
  private untrack: (() => void) | undefined;
  private active = true;

  constructor(
    private readonly opts: {
      tier: Tier;
      /** Audio in and out are counted for voice sessions only (a text reply also "speaks"). */
      audio: boolean;
      metrics?: WorkerMetrics | undefined;
      now?: () => number;
    },
  ) {
    opts.metrics?.sessionsActive.inc({ tier: opts.tier });
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** `inner`, counting the tokens of each embeddings call this session makes. */
  embedder(inner: Embedder): Embedder {
    return {
      model: inner.model,
      dimensions: inner.dimensions,
      embed: (texts, opts = {}) =>
        inner.embed(texts, {
          ...opts,
          onUsage: (u) => {
            this.embeddingTokens += u.promptTokens;
            opts.onUsage?.(u);
          },
        }),
    };
  }

  /** Counts the session's transcript buffer and drops in the worker's metrics until close(). */
  trackTranscripts(stats: () => Readonly<TranscriptStats>): void {
    this.untrack = this.opts.metrics?.trackTranscripts(this.opts.tier, stats);
  }

  attach(session: voice.AgentSession): void {
    this.session = session;
    const { metrics, tier } = this.opts;
    session.on(voice.AgentSessionEventTypes.MetricsCollected, ({ metrics: m }) => {
      if (m.type === 'eou_metrics') {
        this.latency.endOfUtterance(m as metrics.EOUMetrics);
      } else if (m.type === 'llm_metrics') {
        this.latency.llmMetrics(m as metrics.LLMMetrics);
        if (!m.cancelled) metrics?.llmTtftSeconds.observe({ tier }, m.ttftMs / 1000);
      } else if (m.type === 'tts_metrics' && !m.cancelled && m.ttfbMs >= 0) {
        metrics?.ttsTtfbSeconds.observe({ tier }, m.ttfbMs / 1000);
      }
    });
    session.on(voice.AgentSessionEventTypes.FunctionToolsExecuted, (ev) => {
      this.toolCalls += ev.functionCalls.length;
    });
    if (!this.opts.audio) return;
    session.on(voice.AgentSessionEventTypes.UserStateChanged, (ev) =>
      this.speaking('user', ev.newState === 'speaking', ev.createdAt),
    );
    session.on(voice.AgentSessionEventTypes.AgentStateChanged, (ev) =>
      this.speaking('agent', ev.newState === 'speaking', ev.createdAt),
    );
  }

  private speaking(who: 'user' | 'agent', now: boolean, at: number): void {
    const since = this.speakingSince[who];
    if (now && since === undefined) this.speakingSince[who] = at;
    if (!now && since !== undefined) {
      this.spoke[who] += Math.max(0, at - since);
      this.speakingSince[who] = undefined;
    }
  }

  /**
   * A turn the session added to its history: counted, and for a reply its latency (what the
   * transcript row keeps). `context` is the sidekick's last lookup (Sidekick.lastTurnContext).
   */
  turn(message: llm.ChatMessage, context: TurnContext | undefined): TurnLatency | undefined {
    if (message.role === 'user') {
      this.userTurns++;
      this.latency.userTurn(message);
      return undefined;
    }
    if (message.role !== 'assistant') return undefined;
    this.assistantTurns++;
    const latency = this.latency.assistantTurn(message, context);
    if (latency) this.opts.metrics?.turn(this.opts.tier, latency);
    return latency;
  }

  snapshot(): UsageSnapshot {
    const s: UsageSnapshot = {
      audio_in_seconds: seconds(this.spokeSoFar('user')),
      audio_out_seconds: seconds(this.spokeSoFar('agent')),
      llm_prompt_tokens: 0,
      llm_prompt_cached_tokens: 0,
      llm_completion_tokens: 0,
      tts_characters: 0,
      tts_audio_seconds: 0,
      stt_audio_seconds: 0,
      embedding_tokens: this.embeddingTokens,
      tool_calls: this.toolCalls,
      user_turns: this.userTurns,
      assistant_turns: this.assistantTurns,
      models: [],
    };
    for (const u of this.session?.usage.modelUsage ?? []) {
      s.models.push({ ...u });
      if (u.type === 'llm_usage') {
        s.llm_prompt_tokens += u.inputTokens ?? 0;
        s.llm_prompt_cached_tokens += u.inputCachedTokens ?? 0;
        s.llm_completion_tokens += u.outputTokens ?? 0;
      } else if (u.type === 'tts_usage') {
        s.tts_characters += u.charactersCount ?? 0;
        s.tts_audio_seconds += seconds(u.audioDurationMs ?? 0);
      } else if (u.type === 'stt_usage') {
        s.stt_audio_seconds += seconds(u.audioDurationMs ?? 0);
      }
    }
    return s;
  }

  private spokeSoFar(who: 'user' | 'agent'): number {
    const since = this.speakingSince[who];
    return this.spoke[who] + (since === undefined ? 0 : Math.max(0, this.now() - since));
  }

  /** The session is over: it leaves the active-sessions gauge, its transcript store the metrics. */
  close(): void {
    if (!this.active) return;
    this.active = false;
    for (const who of ['user', 'agent'] as const) this.speaking(who, false, this.now());
    this.untrack?.();
    this.opts.metrics?.sessionsActive.dec({ tier: this.opts.tier });
  }
}
