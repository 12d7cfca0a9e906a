import { EventEmitter } from 'eventemitter3';
import type { Digest } from './digest.js';

/**
 * ProgressEvent is what every long transfer reports. Emitting never blocks
 * I/O: listeners run synchronously and should be cheap.
 */
export type ProgressEvent =
  | { readonly type: 'session-opened'; readonly id: string }
  | {
      readonly type: 'blob-start';
      readonly id: string;
      readonly digest?: Digest;
      readonly total?: number;
      readonly kind: BlobKind;
    }
  | {
      readonly type: 'blob-progress';
      readonly id: string;
      readonly bytes: number;
      readonly total?: number;
      readonly kind: BlobKind;
    }
  | {
      readonly type: 'blob-done';
      readonly id: string;
      readonly digest: Digest;
      readonly size: number;
      readonly kind: BlobKind;
    }
  | {
      readonly type: 'blob-skipped';
      readonly id: string;
      readonly digest: Digest;
      readonly size: number;
      readonly kind: BlobKind;
    }
  | {
      readonly type: 'blob-mounted';
      readonly id: string;
      readonly digest: Digest;
      readonly size: number;
      readonly from: string;
    }
  | {
      readonly type: 'manifest-done';
      readonly digest: Digest;
      readonly size: number;
      readonly reference?: string;
    }
  | {
      readonly type: 'retry';
      readonly id: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    };

/** BlobKind tells what a transferred blob is. */
export type BlobKind = 'layer' | 'config' | 'manifest' | 'blob';

/** ProgressEvents is the event map of every lading emitter. */
export type ProgressEvents = {
  progress: [event: ProgressEvent];
};

/** ProgressEmitter is the eventemitter3 emitter every long operation exposes. */
export class ProgressEmitter extends EventEmitter<ProgressEvents> {}
