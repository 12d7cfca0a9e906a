/**
 * evalWorkerExecArgv is the `execArgv` for a worker started from inline
 * CommonJS source (`eval: true`): the parent's flags without
 * `--input-type`, which a worker inherits and which would make that source
 * an ES module (`node --input-type=module -e …` embedding lading).
 */
export function evalWorkerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] ?? '';
    if (a.startsWith('--input-type=')) continue;
    if (a === '--input-type') {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}
