/** The device and inode numbers of a file, as a bigint lstat answers them. */
export interface ExactIds {
  readonly dev: bigint;
  readonly ino: bigint;
}

/**
 * linkKey names the inode behind a file that has more than one link
 * (`dev:ino`), so that the walk writes its second path as a link to the
 * first. A Stats holds both numbers as doubles, exact only up to 2^53; a
 * larger one (NFS file ids, XFS inode numbers on large disks) is read
 * again through `exact` (an lstat with `bigint: true`), so that two files
 * whose numbers round to the same double are never taken for one.
 */
export function linkKey(st: { dev: number; ino: number }, exact: () => ExactIds): string {
  if (st.ino <= Number.MAX_SAFE_INTEGER && st.dev <= Number.MAX_SAFE_INTEGER)
    return `${st.dev}:${st.ino}`;
  const ids = exact();
  return `${ids.dev}:${ids.ino}`;
}
