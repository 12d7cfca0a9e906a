// Start-up benchmark of the `lading` program (imports dist/ through bin/; not a test).
// Usage: node packages/cli/bench/startup.mjs [runs]   (build first: npx tsc -b)
// Each child reports, at exit, its wall time since process start
// (performance.now()) and its CPU time (process.cpuUsage()); CPU time is the
// steadier figure on a loaded machine. `node -e 0` is the floor.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const runs = Number(process.argv[2] ?? 20);
const bin = fileURLToPath(new URL('../bin/lading.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'lading-startup-'));
const hook = join(dir, 'hook.cjs');
writeFileSync(
  hook,
  "process.on('exit', () => { const c = process.cpuUsage(); process.stderr.write(`\\nSTARTUP ${performance.now()} ${(c.user + c.system) / 1000}\\n`); });\n",
);

const cases = [
  ['node -e 0', ['-e', '0']],
  ['lading --version', [bin, '--version']],
  ['lading --help', [bin, '--help']],
  ['lading build --help', [bin, 'build', '--help']],
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};

try {
  const results = new Map(cases.map(([name]) => [name, { wall: [], cpu: [] }]));
  // Interleave the cases so that load changes hit them alike.
  for (let i = 0; i < runs; i++) {
    for (const [name, args] of cases) {
      const r = spawnSync(process.execPath, ['-r', hook, ...args], { encoding: 'utf8' });
      const m = /STARTUP ([\d.]+) ([\d.]+)/.exec(r.stderr);
      if (r.status !== 0 || m === null) throw new Error(`${name} failed: ${r.stderr}`);
      results.get(name).wall.push(Number(m[1]));
      results.get(name).cpu.push(Number(m[2]));
    }
  }
  console.log(`node ${process.version}, ${runs} runs each, medians (min–max):`);
  for (const [name, { wall, cpu }] of results) {
    const f = (xs) =>
      `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
    console.log(`  ${name.padEnd(20)} wall ${f(wall)}   cpu ${f(cpu)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
