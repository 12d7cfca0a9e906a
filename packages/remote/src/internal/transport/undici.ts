import { createRequire } from 'node:module';
import { loadUndici } from './undici-parts.js';

// The CLI's bundle replaces this module with one that passes loadUndici
// undici's files bundled (packages/cli/scripts/bundle.mjs).
const parts = loadUndici(createRequire(import.meta.url));

/** Agent is undici's Agent. */
export const Agent = parts.Agent;
/** request is undici's `request(url, options)`. */
export const request = parts.request;
