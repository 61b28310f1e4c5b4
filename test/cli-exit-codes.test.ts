import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { agentCommands } from '../src/commands/agents.js';
import { chatCommand } from '../src/commands/chat.js';
import { clientCommands } from '../src/commands/clients.js';
import { docsCommands } from '../src/commands/docs.js';
import { EXIT, exitCodeFor } from '../src/commands/exit-codes.js';
import { retentionCommands } from '../src/commands/retention.js';
import { CommandContext } from '../src/commands/shared.js';
import { userCommands } from '../src/commands/users.js';
import { webhookCommands } from '../src/commands/webhooks.js';
import { workCommands } from '../src/commands/work.js';
import { dbError, LimitError } from '../src/ops/errors.js';
import { ClientNotReadyError } from '../src/tenancy/errors.js';
import { sidekick } from './support/cli.js';

/** Every command path of the `sidekick` program, e.g. ['docs', 'add']. */
function commandPaths(): string[][] {
  const program = new Command('sidekick');
  const ctx = new CommandContext({ stdout: process.stdout, stderr: process.stderr, env: {} });
  clientCommands(program, ctx);
  agentCommands(program, ctx);
  docsCommands(program, ctx);
  chatCommand(program, ctx);
  userCommands(program, ctx);
  webhookCommands(program, ctx);
  retentionCommands(program, ctx);
  workCommands(program, ctx);
  const out: string[][] = [];
  const walk = (cmd: Command, path: string[]) => {
    for (const sub of cmd.commands) {
      out.push([...path, sub.name()]);
      walk(sub, [...path, sub.name()]);
    }
  };
  walk(program, []);
  return out;
}

describe('the exit-code contract', () => {
  it("every command's --help states it", async () => {
    const paths = commandPaths();
    expect(paths.length).toBeGreaterThan(15);
    for (const path of paths) {
      const help = await sidekick([...path, '--help'], {});
      expect(help.code, path.join(' ')).toBe(0);
      expect(help.stdout, path.join(' ')).toMatch(
        /Exit codes: 0 done; 1 failed, worth retrying \(run it again: it resumes\); 2 bad input \(the message names the field\); 3 refused by a limit of the tier\./,
      );
    }
  });

  it("the database's refusals: in words, naming the field, with the exit code they deserve", () => {
    const uuid = dbError('reading client x', {
      code: '22P02',
      message: 'invalid input syntax for type uuid: "x"',
    });
    expect(uuid.message).toBe('reading client x: a value is not a valid uuid');
    expect(uuid.field).toBe('uuid');
    expect(exitCodeFor(uuid)).toBe(EXIT.usage);

    const slug = dbError('creating sidekick', {
      code: '23505',
      message: 'duplicate key value violates unique constraint "unique_agent_slug_per_client"',
      details: 'Key (client_id, slug)=(a1a1a1a1-0000-4000-8000-000000000001, guide) already exists.',
    });
    expect(slug.message).toBe('creating sidekick: another row already has this slug: choose another slug');
    expect(slug.field).toBe('slug');
    expect(slug.message).not.toMatch(/a1a1a1a1|23505/);
    expect(exitCodeFor(slug)).toBe(EXIT.usage);

    const fenced = dbError('writing chunks', {
      code: '55000',
      message: 'writes for client c are fenced: tier move in progress, retry later',
    });
    expect(fenced.refusal).toBe('fenced');
    expect(fenced.message).toMatch(/run the command again in a minute/);
    expect(exitCodeFor(fenced)).toBe(EXIT.failure);

    const down = dbError('listing clients', { code: 'PGRST002', message: 'Could not query the database' });
    expect(exitCodeFor(down)).toBe(EXIT.failure);
    expect(exitCodeFor(new LimitError('max_documents', 'x'))).toBe(EXIT.limit);
    expect(exitCodeFor(new ClientNotReadyError('c', 'migrating'))).toBe(EXIT.failure);
    expect(exitCodeFor(new ClientNotReadyError('c', 'failed'))).toBe(EXIT.usage);
  });
});
