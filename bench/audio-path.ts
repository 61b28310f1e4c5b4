/**
 * The turn's critical path, measured in the audio pipeline (test/support/voice-harness.ts): the
 * product's session (prepareSession: Sidekick, lookups, transcripts) and a bare voice.Agent, same
 * AgentSession options, same loopback OpenAI, in one run, turn by turn alternately.
 */
import { type inference, initializeLogger, voice } from '@livekit/agents';
import * as silero from '@livekit/agents-plugin-silero';
import pino from 'pino';
import { createAgentSession, localTurnDetector } from '../src/agent/agent-session.js';
import { parseJobMetadata } from '../src/agent/metadata.js';
import { createRuntime } from '../src/agent/runtime.js';
import { prepareSession } from '../src/agent/session.js';
import type { LookupEvent } from '../src/agent/turn-lookup.js';
import { loadConfig } from '../src/config.js';
import { OpenAIEmbedder } from '../src/context/embeddings.js';
import { startStack } from '../src/stack/stack.js';
import { startOpenAIServer } from '../test/support/openai-server.js';
import {
  inProcessTurnDetectorExecutor,
  loadSpeech,
  type SpeechClip,
  SpeechScript,
  type TurnRecord,
  VoiceRig,
} from '../test/support/voice-harness.js';
import { summarize } from './data.js';

export interface AudioPathOptions {
  serverUrl: string | undefined;
  ttfts: number[];
  /** Single-segment turns per configuration; multi-segment ones are a third of it (at least 2). */
  turns: number;
  sttMs: number;
  ttsMs: number;
  out: (line?: string) => void;
}

type Detector = 'eot' | 'vad';
const SHAPES = ['1 segment', '2 segments', '3 segments'] as const;
type Shape = (typeof SHAPES)[number];

export async function benchAudioPath(o: AudioPathOptions): Promise<void> {
  initializeLogger({ pretty: false, level: 'error' });
  const log = pino({ level: 'error' });
  const openai = await startOpenAIServer({
    responder: () => 'Here is what I know about that.',
    speechDurationMs: (text) => text.length * 20,
  });
  const embedder = new OpenAIEmbedder({ apiKey: 'sk-loopback', baseURL: openai.baseURL });
  const stack = await startStack({ seed: true, serverUrl: o.serverUrl, embedder });
  try {
    // The product's defaults (CONTEXT_BUDGET_MS and all), the embedder over HTTP.
    const config = loadConfig({
      PLATFORM_SUPABASE_URL: stack.platform.url,
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
      OPENAI_API_KEY: 'sk-loopback',
      OPENAI_BASE_URL: openai.baseURL,
      EMBEDDING_PROVIDER: 'openai',
      LOG_LEVEL: 'error',
    });
    const runtime = createRuntime(config, log);
    const vad = await silero.VAD.load();
    const executor = await inProcessTurnDetectorExecutor();
    const clips = loadSpeech();
    const demo = stack.demo!;
    const acme = demo.adventurers[0]!;
    const metadata = parseJobMetadata(
      JSON.stringify({ client_id: acme.clientId, agent_slug: acme.agentSlug, user_id: demo.userId }),
    );
    const turnsOf: Record<Shape, SpeechClip[][]> = {
      '1 segment': [[clips['tyre-pressure']!], [clips['clean-chain']!], [clips['replace-chain']!]],
      // Consecutive turns differ, so that no turn reuses the previous one's lookup.
      '2 segments': [
        [clips['brake-squeaks']!, clips['what-to-do']!],
        [clips['clean-chain']!, clips['what-to-do']!],
      ],
      '3 segments': [
        [clips['gravel-bike']!, clips.weekends!, clips['how-hard']!],
        [clips['brake-squeaks']!, clips.weekends!, clips['how-hard']!],
      ],
    };
    // Turns of several segments only with the end-of-turn model: with VAD silence alone the session
    // commits a segment by itself when the next one's transcript comes after its end-of-turn window
    // (measured: 1.5 to 2 user turns per spoken turn), so there is no one turn to measure.
    const runs: Array<{ detector: Detector; ttft: number; shapes: readonly Shape[] }> = [
      ...o.ttfts.map((ttft) => ({ detector: 'eot' as const, ttft, shapes: SHAPES })),
      ...o.ttfts.map((ttft) => ({ detector: 'vad' as const, ttft, shapes: ['1 segment'] as const })),
    ];
    o.out();
    o.out(
      `audio path: speech fixtures through the real AgentSession pipeline (Silero VAD, OpenAI plugin STT/LLM/TTS on loopback: STT ${o.sttMs} ms after the segment, TTS first byte ${o.ttsMs} ms); demo sidekick, lookup budget ${config.context.budgetMs} ms`,
    );
    o.out(
      "  per configuration the product's session and a bare voice.Agent, same options, turns alternating; times from the end of the user's voice",
    );
    for (const run of runs) {
      openai.reset();
      openai.setDelay('chat', run.ttft);
      openai.setDelay('transcriptions', o.sttMs);
      openai.setDelay('speech', o.ttsMs);
      const turnDetector = (): inference.TurnDetector | 'vad' =>
        run.detector === 'vad' ? 'vad' : localTurnDetector(executor);
      const lookups: LookupEvent[] = [];
      const script = new SpeechScript(openai);
      const prepared = await prepareSession(runtime, metadata, log, { observe: (ev) => lookups.push(ev) });
      const product = createAgentSession(config, prepared.plan, { vad, turnDetector: turnDetector() });
      prepared.attach(product);
      const rigs = {
        product: new VoiceRig({
          session: product,
          agent: prepared.agent,
          openai,
          dbRequests: () => stack.pool.gateway.requests,
          settle: async () => {
            while (prepared.transcripts.stats.pending) await new Promise((r) => setTimeout(r, 5));
          },
          lookups,
          script,
        }),
        bare: new VoiceRig({
          session: createAgentSession(config, prepared.plan, { vad, turnDetector: turnDetector() }),
          agent: new voice.Agent({ instructions: prepared.plan.sidekick.instructions }),
          openai,
          dbRequests: () => stack.pool.gateway.requests,
          script,
        }),
      };
      await rigs.product.start({ greeting: true });
      await rigs.bare.start({ greeting: false });
      const records: Record<'product' | 'bare', Record<Shape, TurnRecord[]>> = {
        product: { '1 segment': [], '2 segments': [], '3 segments': [] },
        bare: { '1 segment': [], '2 segments': [], '3 segments': [] },
      };
      for (const shape of run.shapes) {
        const n = shape === '1 segment' ? o.turns : Math.max(2, Math.ceil(o.turns / 3));
        for (let i = 0; i < n; i++) {
          const turn = turnsOf[shape][i % turnsOf[shape].length]!;
          // 450 ms between voices: past the STT's silence window (350 ms), within the VAD's (550 ms).
          for (const who of i % 2 ? (['bare', 'product'] as const) : (['product', 'bare'] as const)) {
            records[who][shape].push(await rigs[who].turn(turn, 450));
          }
        }
      }
      await rigs.product.close();
      await rigs.bare.close();
      await prepared.close();
      report(o.out, run, records);
    }
  } finally {
    await stack.stop();
    await openai.close();
  }
}

const ms = (x: number) => `${Math.round(x)} ms`;
const p50 = (xs: Array<number | undefined>) =>
  summarize(xs.filter((x): x is number => x !== undefined && Number.isFinite(x))).p50;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function report(
  out: (line?: string) => void,
  run: { detector: Detector; ttft: number; shapes: readonly Shape[] },
  records: Record<'product' | 'bare', Record<Shape, TurnRecord[]>>,
) {
  out();
  out(
    `  LLM time to first token ${run.ttft} ms, end of turn: ${run.detector === 'vad' ? "VAD silence only ('vad')" : 'on-device end-of-turn model (production)'}`,
  );
  for (const shape of run.shapes) {
    const p = records.product[shape];
    const b = records.bare[shape];
    const e2eP = p50(p.map((r) => r.speechEndToAudioMs));
    const e2eB = p50(b.map((r) => r.speechEndToAudioMs));
    const waitP = p50(p.map((r) => r.finalToLlmMs));
    const waitB = p50(b.map((r) => r.finalToLlmMs));
    // The lookup the reply used: its own duration.
    const lookupMs = p50(p.map((r) => r.lookups.filter((l) => l.type === 'done').at(-1)?.elapsedMs));
    const added = waitP - waitB;
    const commit = p50(p.map((r) => (r.committedAt ?? Number.NaN) - r.speechEndAt));
    const lastFinal = p50(p.map((r) => (r.finals.at(-1)?.at ?? Number.NaN) - r.speechEndAt));
    out(
      `    ${shape} (${p.length}+${b.length} turns): speech end → first audio: bare ${ms(e2eB)}, product ${ms(e2eP)} (difference ${ms(e2eP - e2eB)})`,
    );
    // The LLM's answer is on the critical path when it comes after the turn is committed (TTS starts then).
    const llmCritical = p50(p.map((r) => (r.firstTokenAt ?? Number.NaN) - (r.committedAt ?? Number.NaN))) > 0;
    out(
      `      time the product adds before the LLM request (final transcript → LLM request, product ${ms(waitP)} − bare ${ms(waitB)}): ${ms(added)} = ${(added / lookupMs).toFixed(2)}x the lookup's own ${ms(lookupMs)}; ${llmCritical ? 'on the critical path (the turn is committed before the first token)' : 'off the critical path (the turn is committed after the first token)'}`,
    );
    const userTurns = mean(p.map((r) => r.userTurns));
    // Lookups in flight at once, from the sidekick's events (a started one ends as done or cancelled).
    const inFlight = Math.max(
      0,
      ...p.map((r) => {
        let n = 0;
        let most = 0;
        for (const l of r.lookups) {
          if (l.type === 'started') most = Math.max(most, ++n);
          else if (l.type === 'done' || l.type === 'cancelled') n = Math.max(0, n - 1);
        }
        return most;
      }),
    );
    out(
      `      last final transcript at ${ms(lastFinal)}, turn committed at ${ms(commit)}${userTurns > 1 ? ` (the VAD cut it into ${userTurns.toFixed(1)} user turns)` : ''}; lookups started per turn ${mean(p.map((r) => r.lookups.filter((l) => l.type === 'started').length)).toFixed(1)}, at most ${inFlight} in flight at once; LLM requests per turn product ${mean(p.map((r) => r.llmRequests.length)).toFixed(1)}, bare ${mean(b.map((r) => r.llmRequests.length)).toFixed(1)}`,
    );
    out(
      `      per turn: embedding requests ${mean(p.map((r) => r.embeddingRequests.beforeLlm)).toFixed(1)} before the LLM request, ${mean(p.map((r) => r.embeddingRequests.total)).toFixed(1)} in all; database round trips ${mean(p.map((r) => r.dbRequests.beforeLlm)).toFixed(1)} before the LLM request, ${mean(p.map((r) => r.dbRequests.total)).toFixed(1)} in all, ${mean(p.map((r) => r.dbRequests.writes)).toFixed(1)} writes${run.detector === 'eot' ? `; end-of-turn probability p50 ${p50(p.flatMap((r) => r.eot.map((e) => e.probability))).toFixed(3)} (threshold ${p.flatMap((r) => r.eot)[0]?.threshold.toFixed(3) ?? '?'})` : ''}`,
    );
  }
}
