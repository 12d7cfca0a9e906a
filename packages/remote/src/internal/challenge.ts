/** Challenge is a parsed WWW-Authenticate header. */
export type Challenge = {
  /** scheme in lower case: `basic`, `bearer`, … */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
};

/** parseChallenge reads the first challenge of a WWW-Authenticate value. */
export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(value);
  if (m === null) return undefined;
  const scheme = (m[1] ?? '').toLowerCase();
  const params: Record<string, string> = {};
  // (empty list elements, `a=1,,b=2`, are allowed: RFC 9110 §5.6.1)
  const re = /([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,\s*)*/gy;
  const rest = (m[2] ?? '').replace(/^[\s,]+/, '');
  let p: RegExpExecArray | null;
  while ((p = re.exec(rest)) !== null) {
    const key = (p[1] ?? '').toLowerCase();
    params[key] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
    if (re.lastIndex >= rest.length) break;
  }
  return { scheme, params };
}

/**
 * parseLinkNext returns the target of a Link header's link whose `rel` is
 * (or lists) `next` (RFC 8288): parameters are read as `name=value` pairs,
 * so `rel="next-page"` or a `title` that quotes `rel=next` is no next link.
 */
export function parseLinkNext(header: string | string[] | undefined): string | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const v of values) {
    for (const part of v.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>(.*)$/s.exec(part);
      if (m === null) continue;
      const param = /\s*;\s*([A-Za-z][\w*-]*)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*)))?/gy;
      const rest = m[2] ?? '';
      let p: RegExpExecArray | null;
      while ((p = param.exec(rest)) !== null) {
        const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
        if (
          (p[1] ?? '').toLowerCase() === 'rel' &&
          value.toLowerCase().split(/\s+/).includes('next')
        )
          return m[1];
        if (param.lastIndex >= rest.length) break;
      }
    }
  }
  return undefined;
}

/** parseRetryAfter turns a Retry-After header into milliseconds. */
export function parseRetryAfter(
  header: string | string[] | undefined,
  now = Date.now(),
): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
