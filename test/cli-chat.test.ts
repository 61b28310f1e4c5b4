import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/stack/ports.js';
import type { LocalStack } from '../src/stack/stack.js';
import { sidekick, stackEnv } from './support/cli.js';
import { startTestStack } from './support/stack.js';

let stack: LocalStack;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('chat: the exit code says whether the sidekick answered', () => {
  it('a model that cannot be reached is exit 1, with what to check', async () => {
    const a = stack.demo!.adventurers[0]!;
    // A port nothing listens on: the connection is refused at once.
    const port = await freePort();
    const env = stackEnv(stack, {
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`,
    });
    const run = await sidekick(
      ['chat', '--client', a.clientId, '--agent', a.agentSlug],
      env,
      'Hello?\n/quit\n',
    );
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/# no reply: /);
    expect(run.stderr).toMatch(
      new RegExp(
        `the language model did not answer 1 of 1 turns \\(.*\\): check that OPENAI_BASE_URL \\(http://127\\.0\\.0\\.1:${port}/v1\\) is reachable and that OPENAI_API_KEY and LLM_MODEL \\(gpt-4o-mini\\) are accepted there`,
      ),
    );
    expect(run.stderr).not.toContain('sk-test');
  });

  it.each([
    [
      ['chat', '--client', 'a1a1a1a1-0000-4000-8000-000000000001', '--agent', 'bike guide'],
      /--agent.*expected a sidekick's slug/,
    ],
    [
      ['chat', '--client', 'a1a1a1a1-0000-4000-8000-000000000001', '--agent', 'bike-guide', '--user', 'me'],
      /--user.*expected a uuid/,
    ],
    [
      [
        'chat',
        '--client',
        'a1a1a1a1-0000-4000-8000-000000000001',
        '--agent',
        'bike-guide',
        '--conversation',
        '42',
      ],
      /--conversation.*expected a uuid/,
    ],
  ])('bad input %j exits 2 naming the option', async (args, message) => {
    const run = await sidekick(args as string[], stackEnv(stack, { OPENAI_API_KEY: 'sk-test' }));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message as RegExp);
  });
});
