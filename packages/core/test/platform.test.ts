import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import {
  MediaType,
  copy,
  formatPlatform,
  isLadingError,
  memoryTarget,
  parsePlatform,
  platformMatches,
  selectPlatform,
  type Descriptor,
  type MemoryTarget,
  type Platform,
} from '../src/index.js';
import { pushImage, pushIndex } from './copy-helpers.js';

const p = (text: string, extra: Partial<Platform> = {}): Platform => ({
  ...parsePlatform(text),
  ...extra,
});

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

function loader(t: MemoryTarget) {
  return async (d: Descriptor): Promise<Uint8Array> => {
    const chunks: Buffer[] = [];
    for await (const c of await t.fetch(d)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
}

describe('parsePlatform', () => {
  it('writes the spec spelling: lower case, GOARCH names for aliases', () => {
    expect(parsePlatform('LINUX/AMD64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/aarch64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/armhf')).toEqual({
      os: 'linux',
      architecture: 'arm',
      variant: 'v7',
    });
    expect(parsePlatform('Linux/ARM/V6')).toEqual({
      os: 'linux',
      architecture: 'arm',
      variant: 'v6',
    });
    expect(parsePlatform('windows/amd64')).toEqual({ os: 'windows', architecture: 'amd64' });
    for (const bad of ['linux', 'linux/', '/amd64', 'a/b/c/d'])
      expect(() => parsePlatform(bad)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
  });
});

describe('platformMatches', () => {
  it.each([
    ['linux/arm64', p('linux/arm64/v8'), true],
    ['linux/arm64/v8', p('linux/arm64'), true],
    ['linux/arm64/v8', p('linux/arm64/v8'), true],
    ['linux/arm64/v9', p('linux/arm64'), false],
    ['linux/arm', p('linux/arm/v7'), true],
    ['linux/arm/v7', p('linux/arm'), true],
    ['linux/arm', p('linux/arm/v6'), false],
    ['linux/arm/v6', p('linux/arm/v7'), false],
    ['linux/amd64', p('linux/amd64/v3'), true],
    ['linux/amd64/v3', p('linux/amd64'), false],
    ['linux/arm64', p('linux/aarch64'), true],
    ['linux/amd64', p('linux/x86_64'), true],
    ['linux/amd64', p('windows/amd64'), false],
    ['linux/riscv64', p('linux/amd64'), false],
  ] as const)('%s against %j is %s', (want, have, expected) => {
    expect(platformMatches(parsePlatform(want), have)).toBe(expected);
  });

  it('compares os.version (a longer dotted version matches) and requires every os.features entry', () => {
    const win = p('windows/amd64', { 'os.version': '10.0.17763.1234', 'os.features': ['win32k'] });
    expect(platformMatches(p('windows/amd64', { 'os.version': '10.0.17763' }), win)).toBe(true);
    expect(platformMatches(p('windows/amd64', { 'os.version': '10.0.17763.1234' }), win)).toBe(
      true,
    );
    expect(platformMatches(p('windows/amd64', { 'os.version': '10.0.2' }), win)).toBe(false);
    expect(platformMatches(p('windows/amd64', { 'os.features': ['win32k'] }), win)).toBe(true);
    expect(platformMatches(p('windows/amd64', { 'os.features': ['other'] }), win)).toBe(false);
    expect(platformMatches(p('windows/amd64'), undefined)).toBe(false);
  });

  it('formats platforms as os/arch[/variant] (os.version)', () => {
    expect(formatPlatform(p('linux/arm/v7'))).toBe('linux/arm/v7');
    expect(formatPlatform(p('windows/amd64', { 'os.version': '10.0.1' }))).toBe(
      'windows/amd64 (10.0.1)',
    );
  });
});

describe('selectPlatform', () => {
  it('takes arm64/v8 for an index entry without a variant, and prefers the exact entry', async () => {
    const t = memoryTarget();
    const amd = await pushImage(t, p('linux/amd64'), ['amd']);
    const bare = await pushImage(t, p('linux/arm64'), ['bare']);
    const v8 = await pushImage(t, p('linux/arm64/v8'), ['v8']);
    const onlyBare = await pushIndex(t, [amd, bare]);
    const both = await pushIndex(t, [amd, bare, v8]);
    const load = loader(t);
    expect((await selectPlatform(onlyBare, 'linux/arm64/v8', load)).digest).toBe(
      bare.manifest.digest,
    );
    expect((await selectPlatform(both, 'linux/arm64/v8', load)).digest).toBe(v8.manifest.digest);
    expect((await selectPlatform(both, 'linux/arm64', load)).digest).toBe(bare.manifest.digest);
  });

  it('fails NOT_FOUND naming the platforms the index offers, nested ones included', async () => {
    const t = memoryTarget();
    const amd = await pushImage(t, p('linux/amd64'), ['amd']);
    const v6 = await pushImage(t, p('linux/arm/v6'), ['v6']);
    const inner = await pushIndex(t, [v6]);
    const outer = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [amd.manifest, { ...inner, platform: p('linux/arm') }],
    };
    const root = await t.pushUnknown(
      Readable.from([Buffer.from(JSON.stringify(outer))]),
      MediaType.OciIndex,
    );
    const load = loader(t);
    expect((await selectPlatform(root, 'linux/arm/v6', load)).digest).toBe(v6.manifest.digest);
    // a nested index is looked into when its platform could match
    const missing = await caught(selectPlatform(root, 'linux/arm/v7', load));
    expect((missing as Error).message).toContain('(it offers linux/amd64, linux/arm/v6)');
    const err = await caught(selectPlatform(root, 'linux/arm64', load));
    expect(isLadingError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toBe(
      `no image for platform linux/arm64 in the index ${root.digest} (it offers linux/amd64, linux/arm)`,
    );
  });

  it('checks a single image against its config, and copy() fails the same way', async () => {
    const t = memoryTarget();
    const amd = await pushImage(t, p('linux/amd64'), ['amd']);
    await t.tag(amd.manifest, 'one');
    const { platform: _p, ...root } = amd.manifest;
    expect((await selectPlatform(root, 'linux/amd64', loader(t))).digest).toBe(root.digest);
    const direct = await caught(selectPlatform(root, 'linux/arm64', loader(t)));
    const viaCopy = await caught(copy(t, 'one', memoryTarget(), 'x', { platform: 'linux/arm64' }));
    for (const err of [direct, viaCopy]) {
      expect(isLadingError(err, 'NOT_FOUND')).toBe(true);
      expect((err as Error).message).toBe(
        `no image for platform linux/arm64 in the image ${root.digest} (it offers linux/amd64)`,
      );
    }
  });
});
