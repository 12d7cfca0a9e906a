import { describe, expect, it } from 'vitest';
import { runAll, table, type Outcome } from '../src/index.js';

// The same scenarios as `pnpm run faults`: each operation completes with
// bit-identical content or fails with a typed error; nothing is lost or leaked.
describe('client under injected faults', () => {
  it('completes or fails cleanly in every scenario, losing and leaking nothing', async () => {
    const outcomes: Outcome[] = await runAll();
    const report = table(outcomes);
    expect(outcomes.length).toBeGreaterThanOrEqual(30);
    for (const o of outcomes) {
      expect(
        o.injected,
        `${o.environment} · ${o.scenario}: no fault was injected\n${report}`,
      ).toBeGreaterThan(0);
      expect(
        o.completed || o.cleanFailure,
        `${o.environment} · ${o.scenario}: ${o.error ?? ''}`,
      ).toBe(true);
      expect(o.dataLost, `${o.environment} · ${o.scenario}`).toBe(0);
      expect(o.leaks, `${o.environment} · ${o.scenario}`).toEqual([]);
    }
  }, 240_000);
});
