import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A job process (job-child.ts) of `client`'s leased session, driven by its lines. */
export function startJob(
  client: { clientId: string; agentSlug: string },
  jobId: string,
  line: string,
  env: Record<string, string | undefined>,
) {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/support/job-child.ts', client.clientId, client.agentSlug, jobId, line],
    { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    /** Resolves once the process said `what`; fails if it ends first. */
    async said(what: string): Promise<void> {
      for (;;) {
        const next = await lines.next();
        if (next.done) throw new Error(`the job process ended before saying ${what}`);
        if (next.value === what) return;
      }
    },
    send(command: string): void {
      child.stdin!.write(`${command}\n`);
    },
    exited,
    /** SIGKILL, as a dying worker: no shutdown code runs. */
    async kill(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
