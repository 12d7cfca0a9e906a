import type { CorpusInfo } from './corpus.js';

/** BenchConfig is the parsed command line and the sizes it implies. */
export interface BenchConfig {
  readonly quick: boolean;
  /** runs per measurement (medians of these). */
  readonly runs: number;
  /** only: scenario ids to run (all when undefined). */
  readonly only: ReadonlySet<string> | undefined;
  /** corpusBytes is the corpus budget. */
  readonly corpusBytes: number;
  /**
   * corpusDir is a directory to measure as it is (`--corpus=DIR`) instead
   * of the corpus picked from the machine; its results go to
   * bench/results/corpus-<name>.{md,json}, not RESULTS.md.
   */
  readonly corpusDir: string | undefined;
  /** gzip level of directory builds (lading's default). */
  readonly level: number;
  /** memorySizes are the generated layer sizes of the memory scenario. */
  readonly memorySizes: readonly number[];
  readonly memoryRuns: number;
  /** load: the registry-server scenario's request counts. */
  readonly load: {
    readonly count: number;
    readonly blobSize: number;
    readonly concurrency: number;
    readonly manifestCount: number;
    readonly manifestConcurrency: number;
  };
}

/** Peers says which external programs are usable. */
export interface Peers {
  readonly skopeo: boolean;
  readonly umoci: boolean;
  readonly distribution: boolean;
  /** curl streams the copy's destination floor. */
  readonly curl: boolean;
  readonly buildah: boolean;
}

/** Context is what every scenario gets. */
export interface Context {
  readonly config: BenchConfig;
  readonly corpus: CorpusInfo;
  readonly peers: Peers;
  /** tarBytes is the size of the corpus's tar (from the floor measurement), once known. */
  tarBytes: number | undefined;
  /** pushMs are scenario 1's lading push times to the Debian registry, by workers. */
  pushMs: Map<number, number[]>;
  /** source is a Debian registry holding the corpus image (for copy and pull), once pushed. */
  source: { readonly host: string; readonly ref: string; stop(): Promise<unknown> } | undefined;
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
