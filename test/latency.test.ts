// The reply's latency is put together from agents' events in the order a voice session sends
// them; these are the orders that have paired the wrong LLM request with a reply.
import { llm, type metrics } from '@livekit/agents';
import { describe, expect, it } from 'vitest';
import type { TurnContext } from '../src/context/context-manager.js';
import { TurnLatencyRecorder } from '../src/usage/latency.js';

const llmMetrics = (speechId: string | undefined, ttftMs: number, cancelled = false) =>
  ({ type: 'llm_metrics', speechId, ttftMs, cancelled }) as unknown as metrics.LLMMetrics;
const endOfUtterance = (speechId: string) =>
  ({ type: 'eou_metrics', speechId }) as unknown as metrics.EOUMetrics;
const user = () =>
  llm.ChatMessage.create({
    role: 'user',
    content: 'How hard should my tyres be',
    metrics: { endOfTurnDelay: 0.5, transcriptionDelay: 0.2, stoppedSpeakingAt: 1 },
  });
const reply = () =>
  llm.ChatMessage.create({
    role: 'assistant',
    content: 'About 6 bar.',
    metrics: { llmNodeTtft: 0.31, ttsNodeTtfb: 0.05, e2eLatency: 0.9 },
  });
const context = { elapsedMs: 12, outcomes: { documents: 'ok', recall: 'ok' } } as unknown as TurnContext;

describe('TurnLatencyRecorder', () => {
  it('a preemptive generation thrown away after it finished does not lend its TTFT to the reply that answered', () => {
    const r = new TurnLatencyRecorder();
    r.userTurn(user());
    r.llmMetrics(llmMetrics('speech_preemptive', 450));
    r.endOfUtterance(endOfUtterance('speech_answer'));
    r.llmMetrics(llmMetrics('speech_answer', 290));
    expect(r.assistantTurn(reply(), context)).toMatchObject({
      llm_ttft_ms: 290,
      llm_node_ttft_ms: 310,
      context_ms: 12,
      e2e_ms: 900,
      e2e_from: 'end_of_speech',
    });
  });

  it("a used preemptive generation is the reply's; a cancelled request never is", () => {
    const r = new TurnLatencyRecorder();
    r.userTurn(user());
    r.llmMetrics(llmMetrics('speech_a', 120, true));
    r.llmMetrics(llmMetrics('speech_b', 280));
    r.endOfUtterance(endOfUtterance('speech_b'));
    expect(r.assistantTurn(reply(), context)?.llm_ttft_ms).toBe(280);
  });

  it('a text turn (no end of utterance) takes the first request that completed; a reply to nothing and the greeting get none', () => {
    const r = new TurnLatencyRecorder();
    const greeting = llm.ChatMessage.create({ role: 'assistant', content: 'Hi!' });
    expect(r.assistantTurn(greeting, undefined)).toBeUndefined();
    expect(r.assistantTurn(reply(), undefined)).toBeUndefined();
    r.userTurn(llm.ChatMessage.create({ role: 'user', content: 'hello' }));
    r.llmMetrics(llmMetrics(undefined, 200));
    r.llmMetrics(llmMetrics(undefined, 90));
    const l = r.assistantTurn(reply(), context);
    expect(l?.llm_ttft_ms).toBe(200);
    // The same lookup is not credited to a second reply.
    r.userTurn(llm.ChatMessage.create({ role: 'user', content: 'and?' }));
    expect(r.assistantTurn(reply(), context)?.context_ms).toBeNull();
  });
});
