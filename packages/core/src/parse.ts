import type { Readable } from 'node:stream';
import { isDigest } from './digest.js';
import { AbortedError, ErrorCode, LadingError, throwIfAborted } from './errors.js';
import {
  MediaType,
  isImageManifestMediaType,
  isIndexMediaType,
  type MediaTypeString,
} from './media-types.js';
import type { ConfigFile, ImageManifest, IndexManifest } from './wire.js';

/** MAX_MANIFEST_SIZE is the largest manifest or config lading reads: 4 MiB, as the distribution spec suggests. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

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

type Json = Record<string, unknown>;
type Code = typeof ErrorCode.InvalidManifest | typeof ErrorCode.InvalidConfig;

class Checker {
  readonly code: Code;
  readonly what: string;
  constructor(code: Code, what: string) {
    this.code = code;
    this.what = what;
  }

  fail(path: string, reason: string): never {
    throw new LadingError(this.code, `invalid ${this.what}: ${path} ${reason}`);
  }

  object(value: unknown, path: string): Json {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(path, `must be an object, got ${kind(value)}`);
    }
    return value as Json;
  }

  array(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) this.fail(path, `must be an array, got ${kind(value)}`);
    return value;
  }

  string(value: unknown, path: string, nonEmpty = false): string {
    if (typeof value !== 'string') this.fail(path, `must be a string, got ${kind(value)}`);
    if (nonEmpty && value === '') this.fail(path, 'must not be empty');
    return value;
  }

  optionalString(obj: Json, key: string, path: string): void {
    if (obj[key] !== undefined) this.string(obj[key], `${path}.${key}`);
  }

  stringArray(value: unknown, path: string): void {
    this.array(value, path).forEach((v, i) => this.string(v, `${path}[${i}]`));
  }

  /** nullable fields (Docker writes `null` for empty Env, Labels, ...) */
  optional(obj: Json, key: string, path: string, check: (v: unknown, p: string) => void): void {
    const v = obj[key];
    if (v !== undefined && v !== null) check(v, `${path}.${key}`);
  }

  stringMap(value: unknown, path: string): void {
    const o = this.object(value, path);
    for (const [k, v] of Object.entries(o)) this.string(v, `${path}[${JSON.stringify(k)}]`);
  }

  objectMap(value: unknown, path: string): void {
    const o = this.object(value, path);
    for (const [k, v] of Object.entries(o)) {
      if (v !== null) this.object(v, `${path}[${JSON.stringify(k)}]`);
    }
  }

  digest(value: unknown, path: string): void {
    const s = this.string(value, path);
    if (!isDigest(s)) {
      this.fail(
        path,
        `is not a valid digest (want sha256:<64 hex> or sha512:<128 hex>): ${JSON.stringify(s.slice(0, 80))}`,
      );
    }
  }

  size(value: unknown, path: string): void {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.fail(path, `must be a non-negative safe integer, got ${short(value)}`);
    }
  }

  platform(value: unknown, path: string): void {
    const p = this.object(value, path);
    this.string(p.architecture, `${path}.architecture`, true);
    this.string(p.os, `${path}.os`, true);
    this.optionalString(p, 'os.version', path);
    this.optionalString(p, 'variant', path);
    if (p['os.features'] !== undefined)
      this.stringArray(p['os.features'], `${path}["os.features"]`);
    if (p.features !== undefined) this.stringArray(p.features, `${path}.features`);
  }

  descriptor(value: unknown, path: string): void {
    const d = this.object(value, path);
    this.string(d.mediaType, `${path}.mediaType`, true);
    this.digest(d.digest, `${path}.digest`);
    this.size(d.size, `${path}.size`);
    if (d.urls !== undefined) this.stringArray(d.urls, `${path}.urls`);
    if (d.annotations !== undefined) this.stringMap(d.annotations, `${path}.annotations`);
    this.optionalString(d, 'data', path);
    this.optionalString(d, 'artifactType', path);
    if (d.platform !== undefined) this.platform(d.platform, `${path}.platform`);
  }
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

function short(value: unknown): string {
  const s = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

const manifestChecker = new Checker(ErrorCode.InvalidManifest, 'manifest');
const configChecker = new Checker(ErrorCode.InvalidConfig, 'config');
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * MAX_JSON_DEPTH bounds how deeply manifests and configs may nest arrays and
 * objects (real ones nest under 10): deeper values make recursive consumers
 * such as JSON.stringify overflow the stack with an untyped RangeError.
 */
const MAX_JSON_DEPTH = 64;

/** nestingDepth scans JSON text for its deepest array/object nesting, strings skipped. */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

function decodeJson(bytes: Uint8Array, checker: Checker): Json {
  if (!(bytes instanceof Uint8Array)) {
    throw new LadingError(ErrorCode.InvalidArgument, `${checker.what} bytes must be a Uint8Array`);
  }
  if (bytes.length > MAX_MANIFEST_SIZE) {
    throw new LadingError(
      ErrorCode.ManifestTooLarge,
      `${checker.what} of ${bytes.length} bytes exceeds the ${MAX_MANIFEST_SIZE}-byte cap`,
    );
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch (err) {
    throw new LadingError(checker.code, `invalid ${checker.what}: not UTF-8`, { cause: err });
  }
  if (nestingDepth(text) > MAX_JSON_DEPTH) {
    throw new LadingError(
      checker.code,
      `invalid ${checker.what}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LadingError(
      checker.code,
      `invalid ${checker.what}: not JSON (${(err as Error).message})`,
      { cause: err },
    );
  }
  return checker.object(value, '$');
}

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
