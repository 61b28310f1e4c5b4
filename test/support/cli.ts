import { Readable } from 'node:stream';
import { runCli } from '../../src/cli.js';
import type { LocalStack } from '../../src/stack/stack.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The `sidekick` command as a user runs it, in this process: its exit code and both streams. */
export async function sidekick(
  args: string[],
  env: Record<string, string | undefined>,
  stdin = '',
): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    stdin: Readable.from([stdin]),
  });
  return { code, stdout, stderr };
}

/** What an operator working on a local stack has in the environment (local embedder unless told). */
export function stackEnv(stack: Pick<LocalStack, 'platform'>, more: Record<string, string> = {}) {
  return {
    PLATFORM_SUPABASE_URL: stack.platform.url,
    PLATFORM_SUPABASE_SERVICE_ROLE_KEY: stack.platform.serviceRoleKey,
    EMBEDDING_PROVIDER: 'local',
    ...more,
  };
}

/** stdout as JSON, or a failure that shows what the command printed instead. */
export function json<T = Record<string, unknown>>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(
      `expected JSON on stdout (exit ${run.code}):\n${run.stdout}\n--- stderr ---\n${run.stderr}`,
    );
  }
}
