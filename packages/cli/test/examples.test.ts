import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));
const names = readdirSync(examples).filter((n) => existsSync(join(examples, n, 'package.json')));

// Every example is a program against the embedded registry; each must run
// to completion (they check their own results and set a non-zero exit code).
describe('examples', () => {
  it('are all built', () => {
    expect(names.length).toBeGreaterThanOrEqual(4);
    for (const n of names) expect(existsSync(join(examples, n, 'dist', 'main.js')), n).toBe(true);
  });

  it.each(names)(
    '%s runs to completion',
    async (name) => {
      const { stdout } = await run(process.execPath, [join(examples, name, 'dist', 'main.js')], {
        cwd: join(examples, name),
        timeout: 60_000,
      });
      // execFile rejects on a non-zero exit; the example also has to say what it did.
      expect(stdout.trim().length).toBeGreaterThan(0);
    },
    90_000,
  );
});
