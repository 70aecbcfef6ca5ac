// Stalls PostgreSQL processes with SIGSTOP, as a network cut without FIN would:
// connections stay open, nothing answers. Every stall is undone on teardown.
import { readFileSync } from 'node:fs';
import { track } from './leftovers.js';

/** The postmaster and every process it started (backends, checkpointer, walwriter...). */
export function clusterPids(postmasterPid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${postmasterPid}/task/${postmasterPid}/children`, 'utf8')
      .split(/\s+/)
      .filter((p) => p !== '')
      .map(Number);
  } catch {
    // Not Linux, or the process is gone: only the postmaster then.
  }
  return [postmasterPid, ...children];
}

export interface Stall {
  /** SIGCONT to every stopped process; safe to call twice. */
  resume(): void;
}

export function stall(pids: readonly number[]): Stall {
  let resumed = false;
  const resume = (): void => {
    if (resumed) return;
    resumed = true;
    for (const pid of pids) signal(pid, 'SIGCONT');
  };
  track(resume);
  for (const pid of pids) signal(pid, 'SIGSTOP');
  return { resume };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}
