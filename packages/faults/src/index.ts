export { faultProxy } from './fault-proxy.js';
export type { FaultAction, FaultRule, FaultProxy, SeenRequest } from './fault-proxy.js';
export { scenarios, runScenario, ladingEnvironment, distributionEnvironment } from './scenarios.js';
export type { Scenario, Environment, Outcome } from './scenarios.js';
export { runAll, table } from './run-all.js';
