/**
 * Deferred is a promise with its settle functions outside. The first
 * `resolve` or `reject` wins; later calls are ignored.
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  readonly resolve: (value: T) => void;
  readonly reject: (err: unknown) => void;
  /** settled tells whether `resolve` or `reject` has been called. */
  readonly settled: boolean;
}

/**
 * deferred makes a {@link Deferred} whose promise is marked handled: nobody
 * has to await it, and an un-awaited rejection never crashes the process
 * (awaiting it still sees the rejection). It is the one deferred of lading.
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  let settled = false;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return {
    promise,
    resolve: (value: T): void => {
      if (settled) return;
      settled = true;
      resolve(value);
    },
    reject: (err: unknown): void => {
      if (settled) return;
      settled = true;
      reject(err);
    },
    get settled(): boolean {
      return settled;
    },
  };
}
