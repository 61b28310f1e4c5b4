#!/usr/bin/env node
/**
 * `sidekick`: operations on the platform (the package's bin; `npm run sidekick --` in a checkout).
 * Each command group lives in src/commands/ (argument parsing and printing only; the logic is in
 * src/ops and the worker's own modules). `--json` prints results as JSON on stdout; progress and
 * logs go to stderr. The exit codes are src/commands/exit-codes.ts's.
 */

import './require-node.js';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { agentCommands } from './commands/agents.js';
import { chatCommand } from './commands/chat.js';
import { clientCommands } from './commands/clients.js';
import { docsCommands } from './commands/docs.js';
import { EXIT_CODES_HELP, exitCodeFor } from './commands/exit-codes.js';
import { retentionCommands } from './commands/retention.js';
import { secretsCommands } from './commands/secrets.js';
import { type CliIo, CommandContext } from './commands/shared.js';
import { usageCommand } from './commands/usage.js';
import { userCommands } from './commands/users.js';
import { webhookCommands } from './commands/webhooks.js';
import { workCommands } from './commands/work.js';
import { ConfigError, EnvFileError, loadEnvFile } from './config.js';

export type { CliIo };

/** Runs one command; resolves to the exit code. Never calls process.exit (tests run it in-process). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const ctx = new CommandContext(io);
  const program = new Command('sidekick')
    .description(
      'Operations for the sidekick platform: clients, tier upgrades, sidekicks, documents, chat, end users, webhooks, retention, usage',
    )
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .addHelpText(
      'after',
      `
Environment (and .env in the working directory, under the environment): PLATFORM_SUPABASE_URL and
PLATFORM_SUPABASE_SERVICE_ROLE_KEY (the platform project),
SUPABASE_ACCESS_TOKEN (+ --organization or SUPABASE_ORGANIZATION_SLUG) for new dedicated projects,
embedding settings (EMBEDDING_*, OPENAI_*) for docs add, SECRETS_KEY for secrets and tools. \`npm run stack -- --seed\` prints a local set.
${EXIT_CODES_HELP}`,
    );
  clientCommands(program, ctx);
  agentCommands(program, ctx);
  docsCommands(program, ctx);
  secretsCommands(program, ctx);
  chatCommand(program, ctx);
  userCommands(program, ctx);
  webhookCommands(program, ctx);
  retentionCommands(program, ctx);
  workCommands(program, ctx);
  usageCommand(program, ctx);
  // The contract holds for every command: each one's --help says it.
  const withContract = (cmd: Command): void => {
    for (const sub of cmd.commands) {
      sub.addHelpText('after', `\n${EXIT_CODES_HELP}`);
      withContract(sub);
    }
  };
  withContract(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    // commander has printed its own message (and --help its text); everything else is ours to say.
    if (!(e instanceof CommanderError)) {
      // A ConfigError's message is already the whole list of what to set.
      ctx.err(e instanceof ConfigError ? e.message : `error: ${(e as Error).message}`);
    }
    return exitCodeFor(e);
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isMain()) {
  // .env of the working directory, under the environment; here, not in runCli: tests pass their own env.
  try {
    loadEnvFile(process.env);
  } catch (err) {
    if (!(err instanceof EnvFileError)) throw err;
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(exitCodeFor(err));
  }
  const code = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  });
  // Let stdout drain before exiting: a script piping --json output must get all of it.
  process.stdout.write('', () => process.exit(code));
}
