import { inference, type VAD, voice } from '@livekit/agents';
import type { Config } from '../config.js';
import { createLLM, createVoiceModels } from './models.js';
import type { SessionPlan } from './session-plan.js';

/**
 * How a sidekick takes turns (LiveKit 1.9's turn handling, chosen on purpose; the README's "Turn
 * handling" gives the measurements behind each choice):
 * - end of turn: LiveKit's on-device audio end-of-turn model (`inference.TurnDetector`,
 *   `v1-mini`, run by the worker's inference process), pinned to the local model so a dev-mode
 *   worker never reaches for LiveKit Cloud; endpointing keeps the detector's defaults;
 * - preemptive generation on (1.9's default), LLM only: the reply's LLM request goes out at the
 *   final transcript and TTS starts when the turn is confirmed; the sidekick's lookups are shared
 *   with it (TurnLookups), so it adds neither LLM calls nor lookups;
 * - interruptions by voice activity (500 ms of speech): LiveKit's adaptive interruption model runs
 *   in LiveKit Cloud and needs an STT with word timings, which OpenAI's does not give.
 */
export const TURN_HANDLING = {
  preemptiveGeneration: { enabled: true, preemptiveTts: false },
  interruption: { enabled: true, mode: 'vad' as const },
};

export interface VoiceParts {
  /** Silero, loaded once per process in prewarm. */
  vad: VAD;
  /** The end-of-turn model; 'vad' ends turns on silence alone. */
  turnDetector: inference.TurnDetector | 'vad';
}

/**
 * The session's AgentSession: the LLM for every plan, and for a plan with voice STT, TTS, VAD and
 * the turn handling above. The job and the audio-path harness both build it here.
 */
export function createAgentSession(
  config: Config,
  plan: SessionPlan,
  voiceParts?: VoiceParts,
): voice.AgentSession {
  const llm = createLLM(config);
  if (!plan.audio.enabled || !voiceParts) return new voice.AgentSession({ llm });
  return new voice.AgentSession({
    llm,
    ...createVoiceModels(config, plan),
    vad: voiceParts.vad,
    turnHandling: { ...TURN_HANDLING, turnDetection: voiceParts.turnDetector },
  });
}

/**
 * The end-of-turn model, on-device. In a job it runs in the worker's inference process (the job
 * context's executor); elsewhere (the harness) pass the executor that runs it.
 */
export function localTurnDetector(
  executor?: inference.TurnDetectorOptions['executor'],
): inference.TurnDetector {
  return new inference.TurnDetector({ version: 'v1-mini', ...(executor ? { executor } : {}) });
}
