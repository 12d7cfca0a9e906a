import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** SelfTime is one function's share of a thread's samples. */
export interface SelfTime {
  readonly fn: string;
  readonly share: number;
}

function label(n: CpuProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName === '' ? '(anonymous)' : f.functionName;
  if (f.url === '') return name;
  const m = /\/(packages|node_modules\/\.pnpm)\/(.*)$/.exec(f.url);
  const where = m === null ? basename(f.url) : (m[2] ?? '').replace(/^[^/]*\/node_modules\//, '');
  return `${name} ${where.replace(/^node:/, '')}:${f.lineNumber + 1}`;
}

/** summarise answers the top self-time functions of one .cpuprofile (idle excluded). */
export function summarise(profile: CpuProfile, top = 8): { busyShare: number; top: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    if (node === undefined) return;
    total += dt;
    const name = node.callFrame.functionName;
    if (name === '(idle)' || name === '(program)') {
      idle += dt;
      return;
    }
    const key = label(node);
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const busy = total - idle;
  const entries = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    busyShare: total > 0 ? busy / total : 0,
    top: entries.map(([fn, t]) => ({ fn, share: busy > 0 ? t / busy : 0 })),
  };
}

/** summariseMainThread reads the main thread's profile (the first file node writes) from `dir`. */
export async function summariseMainThread(
  dir: string,
  top = 8,
): Promise<{ busyShare: number; top: SelfTime[] } | undefined> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  // node names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread.
  const main = files.find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.exec(f) !== null) ?? files[0];
  if (main === undefined) return undefined;
  return summarise(JSON.parse(await readFile(join(dir, main), 'utf8')) as CpuProfile, top);
}
