import type { Logger } from 'pino';
import { createRootLogger } from '../../src/log.js';

/** A real root logger (redaction included) whose lines are kept for the test to read. */
export function captureLogs(level: 'trace' | 'debug' | 'info' | 'warn' = 'debug'): {
  log: Logger;
  /** Everything written, as the process would print it. */
  output: () => string;
  records: () => Array<Record<string, unknown>>;
} {
  const lines: string[] = [];
  const log = createRootLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  return {
    log,
    output: () => lines.join(''),
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
