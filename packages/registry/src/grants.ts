import { readFileSync } from 'node:fs';
import { ErrorCode, LadingError } from '@lading/core';
import type { Action, GrantFunction } from './auth.js';

const actions: readonly Action[] = ['pull', 'push', 'delete'];

interface Rule {
  readonly users: readonly string[];
  readonly repositories: readonly RegExp[];
  readonly actions: readonly Action[];
}

/**
 * globPattern compiles a repository glob: `*` matches within one path
 * component, `**` across components, everything else literally.
 */
export function globPattern(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob.charAt(i);
    if (c === '*' && glob.charAt(i + 1) === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += '[^/]*';
    else out += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

function invalid(message: string): LadingError {
  return new LadingError(ErrorCode.InvalidArgument, `grants: ${message}`);
}

function strings(value: unknown, what: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === 'string')) {
    throw invalid(`${what} must be a string or a non-empty list of strings`);
  }
  return list;
}

/**
 * parseGrants reads a grants document (JSON) into a {@link GrantFunction}:
 *
 * ```json
 * { "grants": [
 *   { "users": ["ci"], "repositories": ["team/**"], "actions": ["pull", "push"] },
 *   { "users": "*", "repositories": "public/*", "actions": "pull" } ] }
 * ```
 *
 * A user may take an action on a repository when any rule lists the user
 * (or `*`, any authenticated user; `anonymous` for unauthenticated
 * clients), a glob matching the repository, and the action. Nothing else
 * is granted.
 * @throws LadingError INVALID_ARGUMENT on malformed documents
 */
export function parseGrants(text: string): GrantFunction {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalid('not valid JSON');
  }
  const list = (doc as { grants?: unknown } | null)?.grants;
  if (!Array.isArray(list)) throw invalid('expected {"grants": [ … ]}');
  const rules: Rule[] = list.map((raw: unknown, i) => {
    if (typeof raw !== 'object' || raw === null) throw invalid(`rule ${i} is not an object`);
    const r = raw as Record<string, unknown>;
    const acts = strings(r.actions, `rule ${i} actions`);
    for (const a of acts) {
      if (!actions.includes(a as Action) && a !== '*') {
        throw invalid(`rule ${i}: unknown action ${JSON.stringify(a)}`);
      }
    }
    return {
      users: strings(r.users, `rule ${i} users`),
      repositories: strings(r.repositories, `rule ${i} repositories`).map(globPattern),
      actions: acts.includes('*') ? actions : (acts as Action[]),
    };
  });
  return (user, repository) => {
    const granted = new Set<Action>();
    for (const rule of rules) {
      const who = rule.users.some((u) =>
        user === undefined ? u === 'anonymous' : u === user || u === '*',
      );
      if (!who || !rule.repositories.some((p) => p.test(repository))) continue;
      for (const a of rule.actions) granted.add(a);
    }
    return actions.filter((a) => granted.has(a));
  };
}

/**
 * grantsFromFile reads a grants file (see {@link parseGrants}).
 * @throws LadingError INVALID_ARGUMENT on malformed documents; node:fs errors when unreadable
 */
export function grantsFromFile(path: string): GrantFunction {
  return parseGrants(readFileSync(path, 'utf8'));
}
