import { describe, expect, it } from 'vitest';
import { isLadingError, parseConfigFile, parseManifest } from '../src/index.js';

const digest = `sha256:${'a'.repeat(64)}`;

function manifestWith(extra: string): Buffer {
  return Buffer.from(
    `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
      `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${digest}","size":1},` +
      `"layers":[],"x":${extra}}`,
  );
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return new Error('expected a throw');
}

describe('parseManifest nesting', () => {
  it('refuses a manifest nested a million levels deep with INVALID_MANIFEST, not a RangeError', () => {
    const n = 1_000_000;
    const err = caught(() =>
      JSON.stringify(parseManifest(manifestWith(`${'['.repeat(n)}${']'.repeat(n)}`))),
    );
    expect(isLadingError(err, 'INVALID_MANIFEST')).toBe(true);
  });

  it('refuses a config nested 100 levels deep with INVALID_CONFIG', () => {
    const n = 100;
    const cfg = `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`;
    expect(
      isLadingError(
        caught(() => parseConfigFile(Buffer.from(cfg))),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
  });

  it('still accepts brackets inside strings and ordinary nesting', () => {
    const m = parseManifest(manifestWith(`{"s":"${'[{'.repeat(200)}\\"]"}`));
    expect(m.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });
});
