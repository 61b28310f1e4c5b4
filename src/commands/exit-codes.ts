import { CommanderError } from 'commander';
import { InvalidJobMetadataError, SessionRefusedError, SidekickLimitError } from '../agent/errors.js';
import { ConfigError, EnvFileError } from '../config.js';
import { DatabaseApiError, LimitError, UsageError } from '../ops/errors.js';
import { EmbeddedStackMissingError } from '../stack/packages.js';
import { ClientNotFoundError, ClientNotReadyError, CrossTenantAccessError } from '../tenancy/errors.js';

/**
 * The exit-code contract of every `sidekick` command (also in `--help` and the README):
 * 0 done; 1 a failure worth retrying (run the same command again: what was started resumes);
 * 2 bad input (the message names the field and the fix); 3 refused by a limit of the tier.
 */
export const EXIT = Object.freeze({ ok: 0, failure: 1, usage: 2, limit: 3 });
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP =
  'Exit codes: 0 done; 1 failed, worth retrying (run it again: it resumes); 2 bad input (the message names the field); 3 refused by a limit of the tier.';

/** Client states that pass by themselves: the same command works again in a while. */
const PASSING_STATES: ReadonlySet<string> = new Set(['provisioning', 'migrating']);

/** The one mapping from what went wrong to the exit code. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof LimitError || err instanceof SidekickLimitError) return EXIT.limit;
  if (err instanceof DatabaseApiError) {
    return err.refusal === 'input' || err.refusal === 'conflict' ? EXIT.usage : EXIT.failure;
  }
  if (err instanceof ClientNotReadyError) return PASSING_STATES.has(err.status) ? EXIT.failure : EXIT.usage;
  if (
    err instanceof UsageError ||
    err instanceof ConfigError ||
    err instanceof EnvFileError ||
    err instanceof InvalidJobMetadataError ||
    err instanceof ClientNotFoundError ||
    err instanceof CrossTenantAccessError ||
    err instanceof SessionRefusedError ||
    // Configure a platform (PLATFORM_SUPABASE_URL) or install the embedded stack's package.
    err instanceof EmbeddedStackMissingError
  ) {
    return EXIT.usage;
  }
  return EXIT.failure;
}
