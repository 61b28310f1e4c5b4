import { readdirSync, readFileSync } from 'node:fs';

/**
 * The worker's processes and their memory, read from Linux's /proc: the worker, LiveKit's job and
 * inference processes, the embedded stack's PostgREST. What the start-up line reports and what
 * bench/start.ts and the orphan tests measure. Elsewhere (no /proc) only this process is known.
 */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** argv joined by spaces. */
  command: string;
  /** Resident set size (kB). */
  rssKb: number;
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    // A zombie holds no memory: it is gone but for its exit status.
    if (/^State:\s+Z/m.test(status)) return undefined;
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return { pid, ppid, command, rssKb };
  } catch {
    return undefined; // exited meanwhile, or no /proc
  }
}

export function allProcesses(): ProcessInfo[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  return names.flatMap((n) => (/^\d+$/.test(n) ? (readProcess(Number(n)) ?? []) : []));
}

/** `root` and every process below it, as they are now. */
export function processTree(root: number = process.pid): ProcessInfo[] {
  const all = allProcesses();
  const children = new Map<number, ProcessInfo[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const self = all.find((p) => p.pid === root);
  const out: ProcessInfo[] = self ? [self] : [];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!.pid) ?? []));
  return out;
}

/** Which of these processes still run (the same pid with the same command line: pids are reused). */
export function survivors(procs: readonly ProcessInfo[]): ProcessInfo[] {
  return procs.filter((p) => readProcess(p.pid)?.command === p.command);
}

/** Resident memory of `root`'s whole tree (MB, the sum of each process's RSS) and its size. */
export function treeFootprint(root: number = process.pid): { rssMb: number; processes: number } {
  const tree = processTree(root);
  if (tree.length === 0) return { rssMb: Math.round(process.memoryUsage().rss / 2 ** 20), processes: 1 };
  return { rssMb: Math.round(tree.reduce((s, p) => s + p.rssKb, 0) / 1024), processes: tree.length };
}
