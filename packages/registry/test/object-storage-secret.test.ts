import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { httpObjectStorage } from '../src/index.js';
import { sha256 } from './helpers.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('httpObjectStorage', () => {
  it('signs with a secret that does not come from Math.random when none is given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-objects-secret-'));
    try {
      // Pin Math.random and the clock: a secret derived from Math.random would
      // then be the same in both instances, and so would the signatures.
      vi.spyOn(Math, 'random').mockReturnValue(0.5);
      vi.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);
      const a = httpObjectStorage({ dir });
      const b = httpObjectStorage({ dir });
      const digest = sha256('x');
      const la = await a.storage.blobs.location?.(digest);
      const lb = await b.storage.blobs.location?.(digest);
      expect(la).toMatch(/sig=/);
      expect(lb).toMatch(/sig=/);
      expect(la).not.toBe(lb);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
