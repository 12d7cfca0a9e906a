/**
 * The checking half of parse.ts: a {@link Checker} that walks untrusted JSON
 * and fails with a typed error naming the path, and {@link decodeJson}, which
 * bounds size, encoding and nesting before JSON.parse sees the bytes.
 */
import { isDigest } from './digest.js';
import { ErrorCode, LadingError } from './errors.js';

/** MAX_MANIFEST_SIZE is the largest manifest or config lading reads: 4 MiB, as the distribution spec suggests. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

export type Json = Record<string, unknown>;
type Code = typeof ErrorCode.InvalidManifest | typeof ErrorCode.InvalidConfig;

export class Checker {
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

export function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

export function short(value: unknown): string {
  const s = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

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

export function decodeJson(bytes: Uint8Array, checker: Checker): Json {
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
