import type { Readable } from 'node:stream';
import { AbortedError, ErrorCode, LadingError, throwIfAborted } from './errors.js';
import {
  MediaType,
  isImageManifestMediaType,
  isIndexMediaType,
  type MediaTypeString,
} from './media-types.js';
import type { ConfigFile, ImageManifest, IndexManifest } from './wire.js';

import { Checker, MAX_MANIFEST_SIZE, decodeJson, kind, short, type Json } from './json-checker.js';

export { MAX_MANIFEST_SIZE };

/**
 * ParsedManifest is what {@link parseManifest} found: an image manifest or
 * an index, with the media type it was identified as.
 */
export type ParsedManifest =
  | {
      readonly kind: 'image';
      readonly mediaType: MediaTypeString;
      readonly manifest: ImageManifest;
    }
  | {
      readonly kind: 'index';
      readonly mediaType: MediaTypeString;
      readonly manifest: IndexManifest;
    };

const manifestChecker = new Checker(ErrorCode.InvalidManifest, 'manifest');
const configChecker = new Checker(ErrorCode.InvalidConfig, 'config');

/** mediaTypeOf strips parameters (`; charset=utf-8`) and case from a Content-Type value. */
function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const mt = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return mt === '' ? undefined : mt;
}

/** Generic types a registry may send for a manifest it does not label properly. */
function isGenericJson(mt: string): boolean {
  return mt === 'application/json' || mt === 'text/plain' || mt === 'application/octet-stream';
}

function checkSchemaVersion(c: Checker, m: Json): void {
  if (m.schemaVersion === 1) {
    throw new LadingError(
      ErrorCode.UnsupportedMediaType,
      'Docker schema 1 manifests are not supported; ask the registry for schema 2 or OCI',
    );
  }
  if (m.schemaVersion !== 2) c.fail('$.schemaVersion', `must be 2, got ${short(m.schemaVersion)}`);
}

function checkBodyMediaType(c: Checker, m: Json, expected: string | undefined): void {
  if (m.mediaType === undefined) return;
  const body = c.string(m.mediaType, '$.mediaType', true);
  if (expected !== undefined && body !== expected) {
    c.fail(
      '$.mediaType',
      `is ${JSON.stringify(body)} but the content was served as ${JSON.stringify(expected)}`,
    );
  }
}

function unsupported(mt: string, want: string): LadingError {
  return new LadingError(
    ErrorCode.UnsupportedMediaType,
    `unsupported media type ${JSON.stringify(mt)} (want ${want})`,
  );
}

function checkCommon(c: Checker, m: Json): void {
  if (m.subject !== undefined) c.descriptor(m.subject, '$.subject');
  if (m.annotations !== undefined) c.stringMap(m.annotations, '$.annotations');
  c.optionalString(m, 'artifactType', '$');
}

function validateImageManifest(m: Json, expected: string | undefined): ImageManifest {
  const c = manifestChecker;
  checkSchemaVersion(c, m);
  checkBodyMediaType(c, m, expected);
  if (typeof m.mediaType === 'string' && !isImageManifestMediaType(m.mediaType)) {
    c.fail('$.mediaType', `is ${JSON.stringify(m.mediaType)}, not an image manifest type`);
  }
  if (m.manifests !== undefined) c.fail('$.manifests', 'must not appear in an image manifest');
  if (m.config === undefined) c.fail('$.config', 'is missing');
  c.descriptor(m.config, '$.config');
  if (m.layers === undefined) c.fail('$.layers', 'is missing');
  c.array(m.layers, '$.layers').forEach((l, i) => {
    c.descriptor(l, `$.layers[${i}]`);
  });
  checkCommon(c, m);
  return m as unknown as ImageManifest;
}

function validateIndex(m: Json, expected: string | undefined): IndexManifest {
  const c = manifestChecker;
  checkSchemaVersion(c, m);
  checkBodyMediaType(c, m, expected);
  if (typeof m.mediaType === 'string' && !isIndexMediaType(m.mediaType)) {
    c.fail('$.mediaType', `is ${JSON.stringify(m.mediaType)}, not an index type`);
  }
  if (m.config !== undefined || m.layers !== undefined) {
    c.fail(m.config !== undefined ? '$.config' : '$.layers', 'must not appear in an index');
  }
  if (m.manifests === undefined) c.fail('$.manifests', 'is missing');
  c.array(m.manifests, '$.manifests').forEach((d, i) => {
    c.descriptor(d, `$.manifests[${i}]`);
  });
  checkCommon(c, m);
  return m as unknown as IndexManifest;
}

/**
 * parseImageManifest parses and validates an OCI image manifest or Docker
 * schema 2 manifest. When `expectedMediaType` is given (the Content-Type, or
 * the descriptor's media type), it must be an image manifest type and a
 * `mediaType` field in the body must equal it.
 * @throws MANIFEST_TOO_LARGE over {@link MAX_MANIFEST_SIZE}; UNSUPPORTED_MEDIA_TYPE when
 *   `expectedMediaType` is not an image manifest type, or the body is schema 1;
 *   INVALID_MANIFEST naming the JSON path of the bad field (including a body `mediaType`
 *   that disagrees with `expectedMediaType`).
 * @see https://github.com/opencontainers/image-spec/blob/main/manifest.md
 */
export function parseImageManifest(bytes: Uint8Array, expectedMediaType?: string): ImageManifest {
  const expected = mediaTypeOf(expectedMediaType);
  if (expected !== undefined && !isImageManifestMediaType(expected) && !isGenericJson(expected)) {
    throw unsupported(expected, 'an OCI or Docker image manifest');
  }
  const m = decodeJson(bytes, manifestChecker);
  return validateImageManifest(
    m,
    expected !== undefined && isGenericJson(expected) ? undefined : expected,
  );
}

/**
 * parseIndexManifest parses and validates an OCI image index or Docker
 * manifest list; `expectedMediaType` works as in {@link parseImageManifest}.
 * @throws MANIFEST_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, INVALID_MANIFEST (with the JSON path).
 * @see https://github.com/opencontainers/image-spec/blob/main/image-index.md
 */
export function parseIndexManifest(bytes: Uint8Array, expectedMediaType?: string): IndexManifest {
  const expected = mediaTypeOf(expectedMediaType);
  if (expected !== undefined && !isIndexMediaType(expected) && !isGenericJson(expected)) {
    throw unsupported(expected, 'an OCI index or Docker manifest list');
  }
  const m = decodeJson(bytes, manifestChecker);
  return validateIndex(m, expected !== undefined && isGenericJson(expected) ? undefined : expected);
}

/**
 * parseManifest parses a manifest of either kind. The kind comes from the
 * `Content-Type` header when it names a manifest type, else from the body's
 * `mediaType` field, else from its shape (`manifests` → index, `config` →
 * image; both then count as OCI).
 * @throws MANIFEST_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE (schema 1, or a Content-Type that is no
 *   manifest type), INVALID_MANIFEST (with the JSON path).
 */
export function parseManifest(bytes: Uint8Array, contentTypeHeader?: string): ParsedManifest {
  const header = mediaTypeOf(contentTypeHeader);
  if (header !== undefined) {
    if (isImageManifestMediaType(header)) {
      return { kind: 'image', mediaType: header, manifest: parseImageManifest(bytes, header) };
    }
    if (isIndexMediaType(header)) {
      return { kind: 'index', mediaType: header, manifest: parseIndexManifest(bytes, header) };
    }
    if (!isGenericJson(header)) {
      throw unsupported(header, 'an OCI or Docker schema 2 manifest or index');
    }
  }
  const m = decodeJson(bytes, manifestChecker);
  checkSchemaVersion(manifestChecker, m);
  const body = m.mediaType;
  if (body !== undefined) {
    const mt = manifestChecker.string(body, '$.mediaType', true);
    if (isImageManifestMediaType(mt)) {
      return { kind: 'image', mediaType: mt, manifest: validateImageManifest(m, undefined) };
    }
    if (isIndexMediaType(mt)) {
      return { kind: 'index', mediaType: mt, manifest: validateIndex(m, undefined) };
    }
    throw unsupported(mt, 'an OCI or Docker schema 2 manifest or index');
  }
  if (m.manifests !== undefined) {
    return { kind: 'index', mediaType: MediaType.OciIndex, manifest: validateIndex(m, undefined) };
  }
  return {
    kind: 'image',
    mediaType: MediaType.OciManifest,
    manifest: validateImageManifest(m, undefined),
  };
}

const containerChecks: Record<string, (c: Checker, v: unknown, p: string) => void> = {
  User: (c, v, p) => void c.string(v, p),
  WorkingDir: (c, v, p) => void c.string(v, p),
  StopSignal: (c, v, p) => void c.string(v, p),
  Env: (c, v, p) => {
    c.stringArray(v, p);
  },
  Entrypoint: (c, v, p) => {
    c.stringArray(v, p);
  },
  Cmd: (c, v, p) => {
    c.stringArray(v, p);
  },
  Labels: (c, v, p) => {
    c.stringMap(v, p);
  },
  ExposedPorts: (c, v, p) => {
    c.objectMap(v, p);
  },
  Volumes: (c, v, p) => {
    c.objectMap(v, p);
  },
  ArgsEscaped: (c, v, p) => {
    if (typeof v !== 'boolean') c.fail(p, `must be a boolean, got ${kind(v)}`);
  },
};

/**
 * parseConfigFile parses and validates an image configuration: architecture
 * and os strings, `rootfs.type` "layers" with digest `diff_ids`, and the
 * types of the known `config` and `history` fields (Docker's `null`s for
 * empty fields are accepted). Unknown fields are kept.
 * @throws MANIFEST_TOO_LARGE over {@link MAX_MANIFEST_SIZE}; INVALID_CONFIG with the JSON path.
 * @see https://github.com/opencontainers/image-spec/blob/main/config.md
 */
export function parseConfigFile(bytes: Uint8Array): ConfigFile {
  const c = configChecker;
  const cfg = decodeJson(bytes, c);
  c.string(cfg.architecture, '$.architecture', true);
  c.string(cfg.os, '$.os', true);
  for (const key of ['created', 'author', 'variant', 'os.version']) {
    if (cfg[key] !== undefined) c.string(cfg[key], `$[${JSON.stringify(key)}]`);
  }
  if (cfg['os.features'] !== undefined && cfg['os.features'] !== null) {
    c.stringArray(cfg['os.features'], '$["os.features"]');
  }
  if (cfg.rootfs === undefined) c.fail('$.rootfs', 'is missing');
  const rootfs = c.object(cfg.rootfs, '$.rootfs');
  if (rootfs.type !== 'layers')
    c.fail('$.rootfs.type', `must be "layers", got ${short(rootfs.type)}`);
  // Go writes a nil slice as null; read it as no layers.
  if (rootfs.diff_ids === null) rootfs.diff_ids = [];
  c.array(rootfs.diff_ids, '$.rootfs.diff_ids').forEach((d, i) => {
    c.digest(d, `$.rootfs.diff_ids[${i}]`);
  });
  if (cfg.config !== undefined && cfg.config !== null) {
    const cc = c.object(cfg.config, '$.config');
    for (const [key, check] of Object.entries(containerChecks)) {
      c.optional(cc, key, '$.config', (v, p) => {
        check(c, v, p);
      });
    }
  }
  if (cfg.history !== undefined && cfg.history !== null) {
    c.array(cfg.history, '$.history').forEach((h, i) => {
      const p = `$.history[${i}]`;
      const entry = c.object(h, p);
      for (const key of ['created', 'created_by', 'author', 'comment']) {
        c.optionalString(entry, key, p);
      }
      if (entry.empty_layer !== undefined && typeof entry.empty_layer !== 'boolean') {
        c.fail(`${p}.empty_layer`, `must be a boolean, got ${kind(entry.empty_layer)}`);
      }
    });
  }
  return cfg as unknown as ConfigFile;
}

/**
 * readCapped reads a stream into one Buffer, refusing more than `max`
 * bytes: past the cap it destroys the stream and throws. Meant for
 * manifests, configs and error bodies, never for layers.
 * @throws MANIFEST_TOO_LARGE past the cap; ABORTED when `signal` fires; the stream's own error.
 */
export async function readCapped(
  stream: Readable | AsyncIterable<Uint8Array>,
  max: number,
  signal?: AbortSignal,
): Promise<Buffer> {
  // Leaving the for-await early destroys a Readable; destroy() covers the
  // paths that never start or that must interrupt a pending read.
  const destroy = (err?: Error): void => {
    const s = stream as Partial<Readable>;
    if (typeof s.destroy === 'function') s.destroy(err);
  };
  if (signal?.aborted === true) {
    destroy();
    throw new AbortedError(signal.reason);
  }
  let aborted: AbortedError | undefined;
  const onAbort = (): void => {
    aborted = new AbortedError(signal?.reason);
    destroy(aborted);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
      throwIfAborted(signal);
      const buf = typeof chunk === 'string' || !Buffer.isBuffer(chunk) ? Buffer.from(chunk) : chunk;
      total += buf.length;
      if (total > max) {
        throw new LadingError(
          ErrorCode.ManifestTooLarge,
          `content exceeds the ${max}-byte cap (read ${total} bytes so far)`,
        );
      }
      chunks.push(buf);
    }
  } catch (err) {
    if (aborted !== undefined) throw aborted;
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  throwIfAborted(signal);
  return Buffer.concat(chunks, total);
}
