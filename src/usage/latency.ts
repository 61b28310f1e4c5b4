import type { llm, metrics } from '@livekit/agents';
import type { LookupOutcome, TurnContext } from '../context/context-manager.js';

/**
 * How long one reply took, part by part: stored with the assistant turn (its transcript row's
 * `metadata.latency`, written off the hot path with the transcript) and read back by
 * `sidekick usage` (turn_latency_report, migrations 008). Milliseconds, 0.1 ms resolution; null
 * where the turn did not have that part (a text turn has no end of speech, no STT, no TTS).
 */
export interface TurnLatency {
  /** From the end of the user's speech (VAD) to LiveKit's end-of-turn decision. */
  end_of_turn_ms: number | null;
  /** From the end of the user's speech to its final transcript. */
  transcription_ms: number | null;
  /** The context lookup the reply was given (documents and recall), and what each part found. */
  context_ms: number | null;
  context_documents: LookupOutcome | null;
  context_recall: LookupOutcome | null;
  /** The model's own time to first token (agents' LLM metrics, for the request that answered). */
  llm_ttft_ms: number | null;
  /** LiveKit's llmNode time to first token: the model's plus what llmNode waited for (the lookup). */
  llm_node_ttft_ms: number | null;
  /** Text to speech, time to first byte of audio. */
  tts_ttfb_ms: number | null;
  /** From the end of the user's speech (voice) or from the message's arrival (text) to the reply's first audio or text. */
  e2e_ms: number | null;
  e2e_from: 'end_of_speech' | 'text_input' | null;
}

/** The latency components a report breaks down (the turn_latency_report's `component` names). */
export const LATENCY_COMPONENTS = Object.freeze([
  'e2e',
  'end_of_turn',
  'transcription',
  'context',
  'llm_ttft',
  'tts_ttfb',
] as const);
export type LatencyComponent = (typeof LATENCY_COMPONENTS)[number];

const ms = (seconds: number | undefined): number | null =>
  seconds === undefined || !Number.isFinite(seconds) ? null : Math.round(seconds * 10_000) / 10;
const round = (value: number | undefined): number | null =>
  value === undefined || !Number.isFinite(value) ? null : Math.round(value * 10) / 10;

/**
 * Puts each reply's latency together from what the session reports, in order: the user turn (its
 * ChatMessage.metrics: end of turn, transcription), the LLM's metrics events, then the assistant
 * turn (its ChatMessage.metrics: llmNode TTFT, TTS TTFB, e2e) with the context the sidekick gave
 * that reply. What the sidekick says by itself (`say`: the greeting, a farewell) answers no user
 * turn and gets none, even when it lands between a user turn and its reply. Synchronous, no I/O.
 */
export class TurnLatencyRecorder {
  private user: { metrics: llm.MetricsReport; createdAt: number } | undefined;
  /**
   * The speech that answers the last user turn (agents' end-of-utterance metrics name it). A
   * preemptive generation that was thrown away can finish before it (not cancelled, another
   * speech id): its request is not the reply's.
   */
  private answeringSpeechId: string | undefined;
  /** Each speech's first LLM request that completed (a cancelled one is not it). */
  private readonly llmTtftBySpeech = new Map<string, number>();
  /** The first LLM request that completed since the last reply: a text turn has no speech id to match. */
  private llmTtftMs: number | undefined;
  /** The context the last reply was given: the next reply's must be a new one. */
  private usedContext: TurnContext | undefined;

  userTurn(message: llm.ChatMessage): void {
    this.user = { metrics: message.metrics ?? {}, createdAt: message.createdAt };
  }

  endOfUtterance(m: metrics.EOUMetrics): void {
    this.answeringSpeechId = m.speechId;
  }

  llmMetrics(m: metrics.LLMMetrics): void {
    if (m.cancelled) return;
    if (this.llmTtftMs === undefined) this.llmTtftMs = m.ttftMs;
    if (m.speechId !== undefined && !this.llmTtftBySpeech.has(m.speechId)) {
      this.llmTtftBySpeech.set(m.speechId, m.ttftMs);
    }
  }

  /** The latency of this reply (undefined when it answers no user turn); `context` is what the sidekick last looked up. */
  assistantTurn(message: llm.ChatMessage, context: TurnContext | undefined): TurnLatency | undefined {
    // Said by itself (text straight to speech): agents sets llmNodeTtft only on what the LLM wrote.
    if (message.metrics?.llmNodeTtft === undefined) return undefined;
    const user = this.user;
    const llmTtftMs =
      this.answeringSpeechId !== undefined
        ? this.llmTtftBySpeech.get(this.answeringSpeechId)
        : this.llmTtftMs;
    const fresh = context !== undefined && context !== this.usedContext ? context : undefined;
    this.user = undefined;
    this.answeringSpeechId = undefined;
    this.llmTtftBySpeech.clear();
    this.llmTtftMs = undefined;
    if (fresh) this.usedContext = fresh;
    if (!user) return undefined;
    const a = message.metrics ?? {};
    const speechE2e = ms(a.e2eLatency);
    const textE2e =
      a.startedSpeakingAt !== undefined ? round(a.startedSpeakingAt * 1000 - user.createdAt) : null;
    const e2e = speechE2e ?? (textE2e !== null && textE2e >= 0 ? textE2e : null);
    return {
      end_of_turn_ms: ms(user.metrics.endOfTurnDelay),
      transcription_ms: ms(user.metrics.transcriptionDelay),
      context_ms: fresh ? round(fresh.elapsedMs) : null,
      context_documents: fresh?.outcomes.documents ?? null,
      context_recall: fresh?.outcomes.recall ?? null,
      llm_ttft_ms: round(llmTtftMs),
      llm_node_ttft_ms: ms(a.llmNodeTtft),
      tts_ttfb_ms: ms(a.ttsNodeTtfb),
      e2e_ms: e2e,
      e2e_from: speechE2e !== null ? 'end_of_speech' : e2e !== null ? 'text_input' : null,
    };
  }
}
