import { CommanderError } from 'commander';
import { InvalidJobMetadataError, SessionRefusedError, SidekickLimitError } from '../agent/errors.js';
import { ConfigError, EnvFileError } from '../config.js';
import { LimitError, UsageError } from '../ops/errors.js';
import { ClientNotFoundError } from '../tenancy/errors.js';

/**
 * The exit-code contract of every `sidekick` command (also in `--help` and the README):
 * 0 done; 1 a failure worth retrying (run the same command again: what was started resumes);
 * 2 bad input (the message names the field and the fix); 3 refused by a limit of the tier.
 */
export const EXIT = Object.freeze({ ok: 0, failure: 1, usage: 2, limit: 3 });
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP =
  'Exit codes: 0 done; 1 failed, worth retrying (run it again: it resumes); 2 bad input (the message names the field); 3 refused by a limit of the tier.';

/** The one mapping from what went wrong to the exit code. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof LimitError || err instanceof SidekickLimitError) return EXIT.limit;
  if (
    err instanceof UsageError ||
    err instanceof ConfigError ||
    err instanceof EnvFileError ||
    err instanceof InvalidJobMetadataError ||
    err instanceof ClientNotFoundError ||
    err instanceof SessionRefusedError
  ) {
    return EXIT.usage;
  }
  return EXIT.failure;
}
