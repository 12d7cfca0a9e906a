import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import * as pub from '@lading/core';
import * as internal from '@lading/core/internal';

describe('@lading/core entry points', () => {
  it('keeps sibling plumbing out of the public entry point when a user imports it', () => {
    expect(Object.keys(pub)).not.toContain('childrenToWrite');
    expect(Object.keys(pub)).not.toContain('manifestAccept');
    expect(Object.keys(pub)).not.toContain('deferredStream');
    expect(Object.keys(pub)).not.toContain('layerTarStream');
    expect(Object.keys(pub)).not.toContain('pushImageInOrder');
    expect(Object.keys(pub)).not.toContain('openRead');
    for (const name of [
      'sniffCompression',
      'blockGzipHeader',
      'blockGzipSize',
      'blockGzipSync',
      'blockGzipTrailer',
      'RawDeflater',
      'libdeflateModule',
      'incompressible',
      'storedDeflate',
      'storedDeflateSize',
      'zstdFrameSync',
      'zstdFramer',
      'zstdLevelRange',
      'zstdUnsupported',
    ])
      expect(Object.keys(pub)).not.toContain(name);
    // Used inside core only: on neither entry point.
    for (const name of ['decompressSync', 'zstdNodeVersion', 'isMounter', 'isBlobWriter']) {
      expect(Object.keys(pub)).not.toContain(name);
      expect(Object.keys(internal)).not.toContain(name);
    }
    expect(Object.keys(pub)).not.toContain('markVerified');
    expect(pub.emptyImage).toBeTypeOf('function');
  });

  it('serves the plumbing from @lading/core/internal when a sibling package imports it', () => {
    expect(Object.keys(internal).sort()).toEqual([
      'ByteCounter',
      'Limiter',
      'RawDeflater',
      'blockGzipHeader',
      'blockGzipSize',
      'blockGzipSync',
      'blockGzipTrailer',
      'checkOutputFile',
      'childrenToWrite',
      'decompressionError',
      'deferred',
      'deferredStream',
      'discardSink',
      'encodeTarHeader',
      'evalWorkerExecArgv',
      'formatCreated',
      'incompressible',
      'isLayerMediaType',
      'isReferrersTag',
      'isVerified',
      'libdeflateModule',
      'makeDirectory',
      'manifestAccept',
      'markDigesting',
      'markVerified',
      'openRead',
      'ownDigest',
      'pushImageInOrder',
      'referrersTag',
      'sniffCompression',
      'storedDeflate',
      'storedDeflateSize',
      'tarPadding',
      'tarTrailer',
      'writeOutputFile',
      'zstdFrameSync',
      'zstdFramer',
      'zstdLevelRange',
      'zstdUnsupported',
    ]);
    expect(internal.manifestAccept).toContain('application/vnd.oci.image.manifest.v1+json');
  });

  it('declares the internal subpath in package.json exports when packed', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, unknown>;
    };
    expect(Object.keys(pkg.exports)).toEqual(['.', './internal', './package.json']);
  });
});
