import {
  distributionEnvironment,
  ladingEnvironment,
  runScenario,
  scenarios,
  type Environment,
  type Outcome,
} from './scenarios.js';

/** runAll runs every scenario against both registries, one at a time. */
export async function runAll(onOutcome?: (o: Outcome) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const start of [ladingEnvironment, distributionEnvironment]) {
    const env: Environment = await start();
    try {
      for (const [i, s] of scenarios.entries()) {
        const o = await runScenario(env, s, i);
        outcomes.push(o);
        onOutcome?.(o);
      }
    } finally {
      await env.close();
    }
  }
  return outcomes;
}

/** table renders outcomes as Markdown with a totals row. */
export function table(outcomes: readonly Outcome[]): string {
  const rows = outcomes.map(
    (o) =>
      `| ${o.environment} | ${o.scenario} | ${o.injected} | ${o.completed ? 'completed' : o.cleanFailure ? 'clean failure' : '**untyped failure**'} | ${o.dataLost} | ${o.leaks.length === 0 ? 'none' : o.leaks.join('; ')} | ${o.error ?? ''} |`,
  );
  const sum = (f: (o: Outcome) => number): number => outcomes.reduce((a, o) => a + f(o), 0);
  return [
    '| registry | scenario | faults injected | result | data lost | leaks | error |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    `| **total** | ${outcomes.length} runs | ${sum((o) => o.injected)} | ${sum((o) => (o.completed ? 1 : 0))} completed, ${sum((o) => (o.cleanFailure ? 1 : 0))} clean failures | ${sum((o) => o.dataLost)} | ${sum((o) => o.leaks.length)} | |`,
  ].join('\n');
}
