/** SchemeOptions choose between http and https for a registry host. */
export interface SchemeOptions {
  /** insecure talks plain http to any host. */
  readonly insecure?: boolean | undefined;
  /** scheme forces `http` or `https` (default: http for loopback hosts or `insecure`, else https). */
  readonly scheme?: 'http' | 'https' | undefined;
}

function isLocalHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h.startsWith('127.');
}

/**
 * registryBase is the origin requests to `registry` go to: docker.io maps to
 * its API host; loopback hosts (and `insecure`) use http unless `scheme`
 * says otherwise.
 */
export function registryBase(registry: string, options: SchemeOptions): URL {
  const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
  const probe = new URL(`http://${host}`);
  const scheme =
    options.scheme ?? (options.insecure === true || isLocalHost(probe.hostname) ? 'http' : 'https');
  return new URL(`${scheme}://${host}`);
}
