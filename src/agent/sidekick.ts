import { llm, voice } from '@livekit/agents';
import type { Logger } from 'pino';
import type { ContextManager, TurnContext } from '../context/context-manager.js';
import { formatUserOverview, type UserOverview } from '../context/user-overview.js';
import type { SessionPlan } from './session-plan.js';
import { type LookupEvent, TurnLookups } from './turn-lookup.js';
import type { FrameSource } from './video.js';

export interface SidekickDeps {
  plan: SessionPlan;
  /** Also in a degraded session: lookups fail fast while the database is down, and work once it is back. */
  context: ContextManager;
  userId: string | undefined;
  /**
   * The conversation the turns go to (kept out of recall): the store's, which may replace the
   * job's when that one cannot be used.
   */
  conversationId: () => string;
  /** Say the sidekick's greeting on entering (not when the job continues a conversation). */
  greet?: boolean;
  /** The user overview read at session start, folded into the instructions (its one place). */
  overview: UserOverview;
  /** The user's camera or screen share, when the plan allows video. */
  video?: FrameSource | undefined;
  /** The session's tools (agent/tools/session-tools.ts). */
  tools?: llm.ToolContextEntry[];
  /** Told what each turn's lookups did (started, reused, cancelled, done). */
  observe?: ((ev: LookupEvent) => void) | undefined;
  log: Logger;
}

/** The sidekick's instructions: its own system prompt, then what we know of the user. */
export function buildInstructions(plan: SessionPlan, overview: UserOverview): string {
  const known = formatUserOverview(overview);
  return known ? `${plan.sidekick.instructions}\n\n${known}` : plan.sidekick.instructions;
}

/**
 * The voice.Agent of one session. Before each reply it adds, for that turn only, the context the
 * ContextManager found for the user's last message (documents, earlier conversations), and the
 * latest video frame where the plan allows video. This happens in llmNode, which both the audio
 * pipeline and text `session.run()` go through (onUserTurnCompleted is audio-only). In the audio
 * pipeline the lookup is started before the turn ends (TurnLookups: at each final segment, and on
 * interim transcripts where the STT streams them), so llmNode usually finds it done.
 */
export class Sidekick extends voice.Agent {
  /** The user turns' lookups; the session feeds it the transcripts (PreparedSession.attach). */
  readonly lookups: TurnLookups;
  /** What the last reply was given, for logs and tests. */
  lastTurnContext: TurnContext | undefined;

  constructor(private readonly deps: SidekickDeps) {
    super({ instructions: buildInstructions(deps.plan, deps.overview), tools: deps.tools ?? [] });
    this.lookups = new TurnLookups({
      lookup: (text, signal) => this.lookup(text, signal),
      observe: (ev) => {
        deps.log.debug(
          { lookup: ev.type, source: ev.source, elapsed_ms: ev.elapsedMs },
          'turn context lookup',
        );
        deps.observe?.(ev);
      },
    });
  }

  override async onEnter(): Promise<void> {
    const greeting = this.deps.plan.sidekick.greeting;
    // A continued conversation was greeted when it began: the opening line is not said twice.
    if (greeting && this.deps.greet !== false) this.session.say(greeting);
  }

  override async llmNode(
    chatCtx: llm.ChatContext,
    toolCtx: llm.ToolContext,
    modelSettings: voice.ModelSettings,
  ): Promise<ReadableStream<llm.ChatChunk | string> | null> {
    const ctx = chatCtx.copy();
    const items = ctx.items;
    const userIndex = items.findLastIndex((i) => i.type === 'message' && i.role === 'user');
    const userMessage = userIndex >= 0 ? (items[userIndex] as llm.ChatMessage) : undefined;
    const text = userMessage?.textContent?.trim();
    if (userMessage && text) {
      const turn = await this.lookups.forReply(text);
      this.lastTurnContext = turn;
      const frame = this.deps.video?.latest();
      // A new message object, so neither the context nor the image stays in the session history.
      items[userIndex] = llm.ChatMessage.create({
        id: userMessage.id,
        role: 'user',
        createdAt: userMessage.createdAt,
        content: [
          ...userMessage.content,
          ...(frame ? [llm.createImageContent({ image: frame, inferenceDetail: 'auto' })] : []),
        ],
      });
      if (turn?.text) {
        items.splice(
          userIndex,
          0,
          llm.ChatMessage.create({
            role: 'system',
            content: [
              `Context for the next reply (use it if relevant; do not mention this note):\n${turn.text}`,
            ],
            createdAt: userMessage.createdAt - 1,
          }),
        );
      }
    }
    return voice.Agent.default.llmNode(this, ctx, toolCtx, modelSettings);
  }

  private async lookup(text: string, signal: AbortSignal): Promise<TurnContext | undefined> {
    const { context, plan, userId, conversationId, log } = this.deps;
    try {
      return await context.retrieve({
        query: text,
        agentSlug: plan.sidekick.slug,
        userId,
        conversationId: conversationId(),
        signal,
      });
    } catch (err) {
      log.warn({ reason: (err as Error).message }, 'context lookup failed; replying without it');
      return undefined;
    }
  }
}
