/** text is `n` bytes of compressible words. */
export function text(n: number): Buffer {
  const words = ['layer', 'digest', 'manifest', 'blob', 'tar', 'oci', '\n', ' '];
  let s = '';
  for (let i = 0; s.length < n; i++) s += words[(i * 7 + (i >> 3)) % words.length] ?? '';
  return Buffer.from(s.slice(0, n));
}
