import { ErrorCode, LadingError } from '@lading/core';

/** SparseHeader is the part of a tar-stream header that tells a sparse entry apart. */
interface SparseHeader {
  readonly name: string;
  readonly type: string | null;
  readonly pax?: unknown;
}

/**
 * refuseSparse throws UNSUPPORTED for a sparse entry: a GNU `S` entry
 * (tar-stream reports no type for it, and without its map it would be
 * skipped) or a PAX entry carrying `GNU.sparse.*` records (whose data is a
 * packed map plus chunks, which a plain write would store under a
 * `GNUSparseFile.N/…` name). Other entries without a known type are refused
 * the same way rather than dropped in silence.
 * @throws UNSUPPORTED
 */
export function refuseSparse(h: SparseHeader): void {
  const pax = typeof h.pax === 'object' && h.pax !== null ? h.pax : {};
  const sparse = Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'));
  if (!sparse && h.type !== null) return;
  const what = sparse ? 'a PAX sparse file' : 'a GNU sparse file or an unknown entry type';
  throw new LadingError(
    ErrorCode.Unsupported,
    `tar entry ${JSON.stringify(h.name)} is ${what}; lading does not extract those (re-create the layer without --sparse)`,
  );
}
