import type { Command } from 'commander';
import { runChat } from '../agent/chat.js';
import { InvalidConversationError, SidekickNotFoundError } from '../agent/errors.js';
import { parseJobMetadata } from '../agent/metadata.js';
import { createRuntime, withEmbeddedPlatform } from '../agent/runtime.js';
import { loadConfig } from '../config.js';
import { OpsError, UsageError } from '../ops/errors.js';
import { type CommandContext, parseSidekick, parseUuid, plural } from './shared.js';

/** `sidekick chat`: talk to a sidekick in the terminal through the worker's own session code. */
export function chatCommand(program: Command, ctx: CommandContext): void {
  program
    .command('chat')
    .description(
      "talk to a sidekick in the terminal (text) through the worker's own session code; needs no LiveKit. With no platform configured, starts the embedded stack and talks to its first demo sidekick",
    )
    .option('--client <id>', 'client id', parseUuid)
    .option('--agent <slug>', "the sidekick's slug", parseSidekick)
    .option('--user <id>', "the end user's id, for recall of their earlier conversations", parseUuid)
    .option('--conversation <id>', 'continue this conversation (default: a new one)', parseUuid)
    .action(async (o: { client?: string; agent?: string; user?: string; conversation?: string }) => {
      const log = ctx.logger();
      // A copy: pointing the environment at the embedded stack must not leak into the caller's.
      const env = { ...ctx.io.env };
      const config = loadConfig(env);
      if (!config.openai.apiKey) {
        throw new UsageError(
          'chat needs a language model: set OPENAI_API_KEY (and OPENAI_BASE_URL for any OpenAI-compatible server, e.g. http://localhost:11434/v1 with any key)',
        );
      }
      if (config.platform.mode === 'embedded')
        ctx.err('no PLATFORM_SUPABASE_URL: starting the embedded stack');
      const embedded = await withEmbeddedPlatform(config, log, env);
      try {
        // The demo's sidekick and user stand in for what is not given, on the embedded stack only.
        const demo = o.client ? undefined : embedded.stack?.demo;
        if (!(o.client ?? demo))
          throw new UsageError(
            '--client: which client to talk to (a uuid; `sidekick clients list` shows them): a configured platform has no demo sidekick to default to',
          );
        if (!(o.agent ?? demo)) {
          throw new UsageError(
            `--agent: required with --client: which of its sidekicks to talk to (\`sidekick agents list --client ${o.client}\` shows them)`,
          );
        }
        const metadata = parseJobMetadata(
          JSON.stringify({
            client_id: o.client ?? demo?.adventurers[0]?.clientId,
            agent_slug: o.agent ?? demo?.adventurers[0]?.agentSlug,
            user_id: o.user ?? demo?.userId,
            conversation_id: o.conversation,
          }),
        );
        const stats = await runChat(createRuntime(embedded.config, log), metadata, log, {
          input: ctx.io.stdin ?? process.stdin,
          output: ctx.io.stdout,
        }).catch((err: unknown) => {
          // The session's refusals name job-metadata fields; here the operator typed options.
          if (err instanceof SidekickNotFoundError) {
            throw new UsageError(
              `--agent: client ${metadata.clientId} has no sidekick with slug "${metadata.agentSlug}" (\`sidekick agents list --client ${metadata.clientId}\` shows them)`,
            );
          }
          if (err instanceof InvalidConversationError) {
            const said = err.message
              .replace(/^conversation_id /, '')
              .replace('omit conversation_id', 'leave --conversation out');
            throw new UsageError(`--conversation: ${said}`);
          }
          throw err;
        });
        ctx.err(
          `${plural(stats.turns, 'turn')}; transcript rows written ${stats.written}, dropped ${stats.dropped}`,
        );
        if (stats.unanswered) {
          // Not a success a script may build on: the sidekick said nothing to some of it.
          throw new OpsError(
            `the language model did not answer ${stats.unanswered} of ${stats.turns} turns (${stats.modelError}): check that OPENAI_BASE_URL (${modelHost(embedded.config.openai.baseUrl)}) is reachable and that OPENAI_API_KEY and LLM_MODEL (${embedded.config.models.llm}) are accepted there, then try again`,
          );
        }
      } finally {
        await embedded.stack?.stop();
      }
    });
}

/** Where the model is, without any credentials a URL may carry. */
function modelHost(baseUrl: string | null): string {
  if (!baseUrl) return 'api.openai.com';
  try {
    const u = new URL(baseUrl);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'not a URL';
  }
}
