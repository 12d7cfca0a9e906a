/** limiter returns a function that runs at most `max` tasks at a time. */
export function limiter(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = (): void => {
    if (active >= max) return;
    const run = queue.shift();
    if (run !== undefined) run();
  };
  return <T>(fn: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        active++;
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}

/** Deferred is a promise with its settle functions outside. */
export type Deferred<T> = {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
  readonly settled: boolean;
};

/** deferred makes a handled {@link Deferred}: an un-awaited rejection never crashes. */
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
    resolve(value: T): void {
      if (settled) return;
      settled = true;
      resolve(value);
    },
    reject(err: unknown): void {
      if (settled) return;
      settled = true;
      reject(err);
    },
    get settled(): boolean {
      return settled;
    },
  };
}
