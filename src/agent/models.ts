import type { llm as llmTypes, stt as sttTypes, tts as ttsTypes } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import type { Config } from '../config.js';
import type { SessionPlan } from './session-plan.js';

const connection = (config: Config) => ({
  apiKey: config.openai.apiKey ?? undefined,
  baseURL: config.openai.baseUrl ?? undefined,
});

/** The session's LLM (OpenAI, or any OpenAI-compatible server via OPENAI_BASE_URL). */
export function createLLM(config: Config): llmTypes.LLM {
  return new openai.LLM({ ...connection(config), model: config.models.llm });
}

/**
 * Speech-to-text and text-to-speech, for a plan with voice. The TTS voice is the sidekick's own
 * where the tier allows it, else the worker's default (TTS_VOICE); the provider validates the name.
 */
export function createVoiceModels(
  config: Config,
  plan: SessionPlan,
): { stt: sttTypes.STT; tts: ttsTypes.TTS } {
  return {
    stt: new openai.STT({ ...connection(config), model: config.models.stt }),
    tts: new openai.TTS({
      ...connection(config),
      model: config.models.tts,
      voice: (plan.voice.name ?? config.models.defaultVoice) as openai.TTSVoices,
    }),
  };
}
