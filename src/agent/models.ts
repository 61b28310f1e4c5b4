import type { llm as llmTypes, stt as sttTypes, tts as ttsTypes } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import type { Config } from '../config.js';
import type { SessionPlan } from './session-plan.js';

/**
 * The session's OpenAI speech-to-text, LLM and text-to-speech (any OpenAI-compatible server via
 * OPENAI_BASE_URL). Voice models only when the plan has voice; the TTS voice is the plan's.
 */
export function createModels(
  config: Config,
  plan: SessionPlan,
): { llm: llmTypes.LLM; stt?: sttTypes.STT; tts?: ttsTypes.TTS } {
  const common = { apiKey: config.openai.apiKey ?? undefined, baseURL: config.openai.baseUrl ?? undefined };
  const llm = new openai.LLM({ ...common, model: config.models.llm });
  if (!plan.audio.enabled) return { llm };
  return {
    llm,
    stt: new openai.STT({ ...common, model: config.models.stt }),
    // The voice name comes from the sidekick's settings (validated by the provider at synthesis).
    tts: new openai.TTS({ ...common, model: config.models.tts, voice: plan.voice.name as openai.TTSVoices }),
  };
}
