export { Transport } from './transport.js';
export type { SendRequest, TransportOptions } from './transport.js';
export {
  ERROR_BODY_CAP,
  bodyError,
  discard,
  drain,
  errorFromBody,
  errorFromResponse,
  header,
  readWhole,
} from './response.js';
export type { Headers, SendResponse } from './response.js';
export { backoffMs, isTemporary, markExhausted, withRetry } from './retry.js';
export type { RetryOptions, RetryPolicy } from './retry.js';
