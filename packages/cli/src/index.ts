export { main, usage } from './main.js';
export { ExitCode, UsageError, classify, redact } from './exit.js';
export { parseLocation } from './transports.js';
export type { Location } from './transports.js';
