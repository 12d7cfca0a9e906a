import type { ConfigFile, Descriptor, ImageManifest, IndexManifest } from '../wire.js';

// Fixed key orders, so that the same image always serializes to the same
// bytes (and so the same digest) whatever order its objects were built in.
// Known keys come in the order the OCI spec's examples use; unknown keys
// follow, sorted. Map-like objects (annotations, labels, ports, volumes)
// are sorted by key.
const descriptorKeys = [
  'mediaType',
  'artifactType',
  'digest',
  'size',
  'urls',
  'annotations',
  'data',
  'platform',
];
const platformKeys = ['architecture', 'os', 'os.version', 'os.features', 'variant', 'features'];
const manifestKeys = [
  'schemaVersion',
  'mediaType',
  'artifactType',
  'config',
  'layers',
  'manifests',
  'subject',
  'annotations',
];
const configKeys = [
  'created',
  'author',
  'architecture',
  'os',
  'os.version',
  'os.features',
  'variant',
  'config',
  'rootfs',
  'history',
];
const containerKeys = [
  'User',
  'ExposedPorts',
  'Env',
  'Entrypoint',
  'Cmd',
  'Volumes',
  'WorkingDir',
  'Labels',
  'StopSignal',
  'ArgsEscaped',
];
const historyKeys = ['created', 'created_by', 'author', 'comment', 'empty_layer'];
const rootfsKeys = ['type', 'diff_ids'];

type Obj = Record<string, unknown>;
type Fix = Record<string, (v: unknown) => unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** put defines an own property, so a key named "__proto__" stays a key. */
export function put(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function sorted(v: unknown): unknown {
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const k of Object.keys(v).sort()) put(out, k, v[k]);
  return out;
}

function ordered(v: unknown, keys: readonly string[], fix: Fix = {}): unknown {
  if (!isObj(v)) return v;
  const out: Obj = {};
  const add = (k: string): void => {
    const x = v[k];
    if (x === undefined) return;
    const f = fix[k];
    put(out, k, f === undefined ? x : f(x));
  };
  for (const k of keys) add(k);
  for (const k of Object.keys(v).sort()) if (!keys.includes(k)) add(k);
  return out;
}

function orderedDescriptor(d: unknown): unknown {
  return ordered(d, descriptorKeys, {
    annotations: sorted,
    platform: (p) => ordered(p, platformKeys),
  });
}

function list(f: (v: unknown) => unknown): (v: unknown) => unknown {
  return (v) => (Array.isArray(v) ? v.map(f) : v);
}

const encoder = new TextEncoder();

/** encodeManifest serializes an image manifest or index in lading's fixed key order. */
export function encodeManifest(m: ImageManifest | IndexManifest): Uint8Array {
  const o = ordered(m, manifestKeys, {
    config: orderedDescriptor,
    layers: list(orderedDescriptor),
    manifests: list(orderedDescriptor),
    subject: orderedDescriptor,
    annotations: sorted,
  });
  return encoder.encode(JSON.stringify(o));
}

/** encodeConfig serializes an image config in lading's fixed key order. */
export function encodeConfig(c: ConfigFile): Uint8Array {
  const o = ordered(c, configKeys, {
    config: (cc) =>
      ordered(cc, containerKeys, { ExposedPorts: sorted, Volumes: sorted, Labels: sorted }),
    rootfs: (r) => ordered(r, rootfsKeys),
    history: list((h) => ordered(h, historyKeys)),
  });
  return encoder.encode(JSON.stringify(o));
}

/** orderDescriptor is a descriptor in the fixed key order (for tests and tools). */
export function orderDescriptor(d: Descriptor): Descriptor {
  return orderedDescriptor(d) as Descriptor;
}
