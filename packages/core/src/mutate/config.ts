import { ErrorCode, LadingError } from '../errors.js';
import type { ConfigFile, ContainerConfig, Platform } from '../wire.js';
import { put } from './serialize.js';

/**
 * ConfigPatch is a change to an image's execution parameters, with
 * friendly names. Fields left out are kept from the base image.
 * @see https://github.com/opencontainers/image-spec/blob/main/config.md#properties
 */
export interface ConfigPatch {
  /**
   * env merges by key into `Env`: `['K=V']` or `{ K: 'V' }`; a `null`
   * value in the record form removes the variable.
   */
  readonly env?: readonly string[] | Readonly<Record<string, string | null>>;
  /**
   * entrypoint replaces `Entrypoint` (`null` clears it). As in a
   * Dockerfile, setting it without `cmd` clears the base image's `Cmd`.
   */
  readonly entrypoint?: readonly string[] | null;
  /** cmd replaces `Cmd` (`null` clears it). */
  readonly cmd?: readonly string[] | null;
  /** workingDir replaces `WorkingDir`. */
  readonly workingDir?: string;
  /** user replaces `User`. */
  readonly user?: string;
  /** labels merge into `Labels`; a `null` value removes the label. */
  readonly labels?: Readonly<Record<string, string | null>>;
  /** exposedPorts adds ports such as `8080/tcp`, `53/udp` or `8080` (tcp). */
  readonly exposedPorts?: readonly string[];
  /** volumes adds mount points. */
  readonly volumes?: readonly string[];
  /** stopSignal replaces `StopSignal`. */
  readonly stopSignal?: string;
}

function bad(message: string): LadingError {
  return new LadingError(ErrorCode.InvalidArgument, message);
}

function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

function normalizeEnv(env: ConfigPatch['env']): [string, string | null][] {
  if (env === undefined) return [];
  if (Array.isArray(env)) {
    return (env as readonly unknown[]).map((e) => {
      if (typeof e !== 'string' || e.indexOf('=') <= 0) {
        throw bad(`env entry ${JSON.stringify(e)} is not of the form NAME=value`);
      }
      return [envKey(e), e.slice(e.indexOf('=') + 1)];
    });
  }
  return Object.entries(env as Readonly<Record<string, string | null>>).map(([k, v]) => {
    if (k === '' || k.includes('=')) throw bad(`env name ${JSON.stringify(k)} is invalid`);
    if (v !== null && typeof v !== 'string') {
      throw bad(`env ${k} must be a string or null`);
    }
    return [k, v];
  });
}

const portRe = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i;

function normalizePort(p: string): string {
  const m = portRe.exec(p);
  if (m === null)
    throw bad(`exposed port ${JSON.stringify(p)} is not like 8080, 8080/tcp or 53/udp`);
  const [, from, to, proto] = m;
  for (const n of [from, to]) {
    if (n !== undefined && (Number(n) < 1 || Number(n) > 65535)) {
      throw bad(`exposed port ${JSON.stringify(p)} is out of range`);
    }
  }
  return `${from ?? ''}${to === undefined ? '' : `-${to}`}/${(proto ?? 'tcp').toLowerCase()}`;
}

function stringList(v: unknown, what: string): string[] {
  if (v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw bad(`${what} must be an array of strings`);
  }
  return [...(v as string[])];
}

/**
 * compileConfigPatch validates a patch up front (so mistakes surface where
 * the image is built) and returns the function that applies it.
 * @throws INVALID_ARGUMENT for malformed env entries, ports or values.
 */
export function compileConfigPatch(patch: ConfigPatch): (cfg: ConfigFile) => void {
  const env = normalizeEnv(patch.env);
  const ports = (patch.exposedPorts ?? []).map(normalizePort);
  const volumes = stringList(patch.volumes ?? [], 'volumes');
  for (const v of volumes) if (v === '') throw bad('a volume path is empty');
  const entrypoint =
    patch.entrypoint === undefined ? undefined : stringList(patch.entrypoint, 'entrypoint');
  const cmd = patch.cmd === undefined ? undefined : stringList(patch.cmd, 'cmd');
  for (const key of ['workingDir', 'user', 'stopSignal'] as const) {
    const v = patch[key];
    if (v !== undefined && typeof v !== 'string') throw bad(`${key} must be a string`);
  }
  const labels = Object.entries(patch.labels ?? {});
  for (const [k, v] of labels) {
    if (v !== null && typeof v !== 'string') throw bad(`label ${k} must be a string or null`);
  }

  return (cfg) => {
    const c: ContainerConfig = (cfg.config ??= {});
    if (env.length > 0) {
      const vars = [...(c.Env ?? [])];
      for (const [k, v] of env) {
        const at = vars.findIndex((e) => envKey(e) === k);
        if (v === null) {
          if (at >= 0) vars.splice(at, 1);
        } else if (at >= 0) {
          vars[at] = `${k}=${v}`;
        } else {
          vars.push(`${k}=${v}`);
        }
      }
      c.Env = vars;
    }
    // Cleared fields are left out, never written as null (`"Cmd": null`).
    if (entrypoint !== undefined) {
      if (patch.entrypoint === null) delete c.Entrypoint;
      else c.Entrypoint = entrypoint;
      // As in a Dockerfile, a new ENTRYPOINT drops the base image's CMD.
      if (cmd === undefined) delete c.Cmd;
    }
    if (cmd !== undefined) {
      if (patch.cmd === null) delete c.Cmd;
      else c.Cmd = cmd;
    }
    if (patch.workingDir !== undefined) c.WorkingDir = patch.workingDir;
    if (patch.user !== undefined) c.User = patch.user;
    if (patch.stopSignal !== undefined) c.StopSignal = patch.stopSignal;
    if (labels.length > 0) {
      const merged: Record<string, string> = { ...(c.Labels ?? {}) };
      for (const [k, v] of labels) {
        if (v === null) Reflect.deleteProperty(merged, k);
        else put(merged, k, v);
      }
      c.Labels = merged;
    }
    if (ports.length > 0) {
      const merged: Record<string, object> = { ...(c.ExposedPorts ?? {}) };
      for (const p of ports) put(merged, p, {});
      c.ExposedPorts = merged;
    }
    if (volumes.length > 0) {
      const merged: Record<string, object> = { ...(c.Volumes ?? {}) };
      for (const v of volumes) put(merged, v, {});
      c.Volumes = merged;
    }
  };
}

/** applyPlatform sets every platform field of a config, removing the ones `platform` lacks. */
export function applyPlatform(cfg: ConfigFile, platform: Platform): void {
  cfg.architecture = platform.architecture;
  cfg.os = platform.os;
  for (const key of ['variant', 'os.version'] as const) {
    const v = platform[key];
    if (v === undefined) Reflect.deleteProperty(cfg, key);
    else cfg[key] = v;
  }
  const features = platform['os.features'];
  if (features === undefined) Reflect.deleteProperty(cfg, 'os.features');
  else cfg['os.features'] = [...features];
}

/** checkPlatform validates a platform given by a caller. @throws INVALID_ARGUMENT */
export function checkPlatform(platform: Platform): Platform {
  if (typeof platform !== 'object' || (platform as unknown) === null) {
    throw bad('platform must be an object with architecture and os');
  }
  if (typeof platform.architecture !== 'string' || platform.architecture === '') {
    throw bad('platform.architecture must be a non-empty string');
  }
  if (typeof platform.os !== 'string' || platform.os === '') {
    throw bad('platform.os must be a non-empty string');
  }
  return platform;
}

/** platformOf reads the platform an image config describes. */
export function platformOf(cfg: ConfigFile): Platform {
  const p: Platform = { architecture: cfg.architecture, os: cfg.os };
  if (cfg['os.version'] !== undefined) p['os.version'] = cfg['os.version'];
  if (cfg['os.features'] !== undefined) p['os.features'] = [...cfg['os.features']];
  if (cfg.variant !== undefined) p.variant = cfg.variant;
  return p;
}

/**
 * formatCreated renders a timestamp as RFC 3339 in UTC, without a
 * fractional part when it is zero (as Go writes it).
 * @throws INVALID_ARGUMENT for an invalid date.
 */
export function formatCreated(date: Date | string | number): string {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) throw bad(`invalid date ${JSON.stringify(String(date))}`);
  return d.toISOString().replace('.000Z', 'Z');
}
