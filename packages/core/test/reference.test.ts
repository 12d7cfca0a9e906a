import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  formatReference,
  isLadingError,
  parseReference,
  withDigest,
  withTag,
  type Reference,
} from '../src/index.js';

const d = 'sha256:' + 'f'.repeat(64);
const d2 = 'sha256:' + '0123456789abcdef'.repeat(4);

type Valid = {
  in: string;
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
};

const valid: Valid[] = [
  // Docker Hub normalisation
  { in: 'ubuntu', registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' },
  { in: 'ubuntu:22.04', registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' },
  { in: 'library/ubuntu', registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' },
  { in: 'docker.io/ubuntu', registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' },
  {
    in: 'docker.io/library/ubuntu:x',
    registry: 'docker.io',
    repository: 'library/ubuntu',
    tag: 'x',
  },
  {
    in: 'index.docker.io/ubuntu',
    registry: 'docker.io',
    repository: 'library/ubuntu',
    tag: 'latest',
  },
  { in: 'index.docker.io/foo/bar', registry: 'docker.io', repository: 'foo/bar', tag: 'latest' },
  { in: 'foo/bar', registry: 'docker.io', repository: 'foo/bar', tag: 'latest' },
  { in: 'foo/bar/baz', registry: 'docker.io', repository: 'foo/bar/baz', tag: 'latest' },
  { in: 'docker.io/foo/bar:1', registry: 'docker.io', repository: 'foo/bar', tag: '1' },
  { in: 'library/a/b', registry: 'docker.io', repository: 'library/a/b', tag: 'latest' },
  // digests and tag + digest
  { in: `ubuntu@${d}`, registry: 'docker.io', repository: 'library/ubuntu', digest: d },
  {
    in: `ubuntu:22.04@${d}`,
    registry: 'docker.io',
    repository: 'library/ubuntu',
    tag: '22.04',
    digest: d,
  },
  { in: `gcr.io/p/i@${d2}`, registry: 'gcr.io', repository: 'p/i', digest: d2 },
  {
    in: `localhost:5000/a:b@${d}`,
    registry: 'localhost:5000',
    repository: 'a',
    tag: 'b',
    digest: d,
  },
  {
    in: `r.io/a@sha512:${'a'.repeat(128)}`,
    registry: 'r.io',
    repository: 'a',
    digest: `sha512:${'a'.repeat(128)}`,
  },
  // registries, ports, localhost
  { in: 'localhost/foo', registry: 'localhost', repository: 'foo', tag: 'latest' },
  { in: 'localhost:5000/foo', registry: 'localhost:5000', repository: 'foo', tag: 'latest' },
  {
    in: 'localhost:5000/foo/bar:tag',
    registry: 'localhost:5000',
    repository: 'foo/bar',
    tag: 'tag',
  },
  { in: 'localhost', registry: 'docker.io', repository: 'library/localhost', tag: 'latest' },
  { in: 'localhost:5000', registry: 'docker.io', repository: 'library/localhost', tag: '5000' },
  { in: 'foo:5000', registry: 'docker.io', repository: 'library/foo', tag: '5000' },
  { in: 'example.com/foo', registry: 'example.com', repository: 'foo', tag: 'latest' },
  { in: 'example.com:443/foo', registry: 'example.com:443', repository: 'foo', tag: 'latest' },
  { in: 'sub.example.com/a/b/c:v1', registry: 'sub.example.com', repository: 'a/b/c', tag: 'v1' },
  {
    in: 'my-registry.local:8080/x',
    registry: 'my-registry.local:8080',
    repository: 'x',
    tag: 'latest',
  },
  { in: 'a.b.c.d.e/x', registry: 'a.b.c.d.e', repository: 'x', tag: 'latest' },
  {
    in: 'xn--bcher-kva.example/x',
    registry: 'xn--bcher-kva.example',
    repository: 'x',
    tag: 'latest',
  },
  { in: 'host:5000/x', registry: 'host:5000', repository: 'x', tag: 'latest' },
  { in: 'Foo/bar', registry: 'Foo', repository: 'bar', tag: 'latest' },
  { in: 'Example.COM/foo', registry: 'Example.COM', repository: 'foo', tag: 'latest' },
  { in: 'r.io/docker.io/x', registry: 'r.io', repository: 'docker.io/x', tag: 'latest' },
  // IPv4 and IPv6
  { in: '127.0.0.1/foo', registry: '127.0.0.1', repository: 'foo', tag: 'latest' },
  { in: '127.0.0.1:5000/foo:tag', registry: '127.0.0.1:5000', repository: 'foo', tag: 'tag' },
  { in: '10.0.0.1:80/a/b', registry: '10.0.0.1:80', repository: 'a/b', tag: 'latest' },
  { in: '[::1]/foo', registry: '[::1]', repository: 'foo', tag: 'latest' },
  { in: '[::1]:5000/foo', registry: '[::1]:5000', repository: 'foo', tag: 'latest' },
  { in: '[::1]:5000/foo:bar', registry: '[::1]:5000', repository: 'foo', tag: 'bar' },
  { in: '[2001:db8::1]:443/a/b', registry: '[2001:db8::1]:443', repository: 'a/b', tag: 'latest' },
  { in: `[fe80::AB]/x@${d}`, registry: '[fe80::AB]', repository: 'x', digest: d },
  {
    in: '[2001:db8:1:2:3:4:5:6]/repo:tag',
    registry: '[2001:db8:1:2:3:4:5:6]',
    repository: 'repo',
    tag: 'tag',
  },
  {
    in: '[2001:db8::]:5000/repo',
    registry: '[2001:db8::]:5000',
    repository: 'repo',
    tag: 'latest',
  },
  { in: 'foo_bar.com:8080', registry: 'docker.io', repository: 'library/foo_bar.com', tag: '8080' },
  { in: 'foo/foo_bar.com:8080', registry: 'docker.io', repository: 'foo/foo_bar.com', tag: '8080' },
  {
    in: 'b.gcr.io/test.example.com/my-app:test.example.com',
    registry: 'b.gcr.io',
    repository: 'test.example.com/my-app',
    tag: 'test.example.com',
  },
  // path component separators
  { in: 'r.io/a.b', registry: 'r.io', repository: 'a.b', tag: 'latest' },
  { in: 'r.io/a_b', registry: 'r.io', repository: 'a_b', tag: 'latest' },
  { in: 'r.io/a__b', registry: 'r.io', repository: 'a__b', tag: 'latest' },
  { in: 'r.io/a-b', registry: 'r.io', repository: 'a-b', tag: 'latest' },
  { in: 'r.io/a---b', registry: 'r.io', repository: 'a---b', tag: 'latest' },
  { in: 'r.io/a.b_c__d-e', registry: 'r.io', repository: 'a.b_c__d-e', tag: 'latest' },
  { in: 'r.io/0/1/2', registry: 'r.io', repository: '0/1/2', tag: 'latest' },
  { in: 'r.io/a1b2', registry: 'r.io', repository: 'a1b2', tag: 'latest' },
  // tags
  { in: 'r.io/a:A', registry: 'r.io', repository: 'a', tag: 'A' },
  { in: 'r.io/a:_x', registry: 'r.io', repository: 'a', tag: '_x' },
  { in: 'r.io/a:v1.2.3-rc.1_b', registry: 'r.io', repository: 'a', tag: 'v1.2.3-rc.1_b' },
  { in: `r.io/a:${'t'.repeat(128)}`, registry: 'r.io', repository: 'a', tag: 't'.repeat(128) },
  { in: 'r.io/a:Uppercase', registry: 'r.io', repository: 'a', tag: 'Uppercase' },
  // length limit: 255 exactly
  { in: `r.io/${'a'.repeat(250)}`, registry: 'r.io', repository: 'a'.repeat(250), tag: 'latest' },
];

const invalid: [string, string][] = [
  ['', 'empty'],
  [':', 'empty'],
  ['ubuntu:', 'tag after ":" is empty'],
  ['@', 'bad digest'],
  ['ubuntu@', 'bad digest'],
  ['ubuntu@sha256:abc', 'bad digest'],
  [`ubuntu@md5:${'a'.repeat(32)}`, 'bad digest'],
  [`ubuntu@sha256:${'A'.repeat(64)}`, 'bad digest'],
  [`ubuntu@${d}@${d}`, 'bad digest'],
  ['Ubuntu', 'must be lowercase'],
  ['docker.io/Ubuntu', 'must be lowercase'],
  ['r.io/Foo/bar', 'must be lowercase'],
  ['r.io/foo/BAR:tag', 'must be lowercase'],
  ['test:5000/Uppercase/lowercase:tag', 'must be lowercase'],
  ['https://r.io/foo', 'scheme'],
  ['http://localhost:5000/foo', 'scheme'],
  ['docker://ubuntu', 'scheme'],
  ['r.io//foo', 'empty path component'],
  ['r.io/foo/', 'empty path component'],
  ['/foo', 'empty path component'],
  ['r.io/', 'repository name is empty'],
  ['r.io/foo.', 'ends with a separator'],
  ['r.io/foo-', 'ends with a separator'],
  ['r.io/foo_', 'ends with a separator'],
  ['r.io/.foo', 'starts with a separator'],
  ['r.io/-foo', 'starts with a separator'],
  ['r.io/_foo', 'starts with a separator'],
  ['r.io/a___b', 'invalid path component'],
  ['r.io/a..b', 'invalid path component'],
  ['r.io/a._b', 'invalid path component'],
  ['r.io/a$b', 'invalid path component'],
  ['r.io/a b', 'whitespace'],
  [' ubuntu', 'whitespace'],
  ['ubuntu\n', 'whitespace'],
  ['r.io/a:-tag', 'invalid tag'],
  ['r.io/a:.tag', 'invalid tag'],
  ['r.io/a:t!g', 'invalid tag'],
  [`r.io/a:${'t'.repeat(129)}`, 'at most 128'],
  ['-r.io/a', 'invalid registry host'],
  ['r-.io/a', 'invalid registry host'],
  ['r_x.io/a', 'invalid registry host'],
  ['r..io/a', 'invalid registry host'],
  ['r.io:/a', 'invalid port'],
  ['r.io:abc/a', 'invalid port'],
  ['r.io:99999/a', 'out of range'],
  ['[::1/foo', 'unterminated IPv6'],
  ['[::g]/foo', 'invalid IPv6 host'],
  ['[]/foo', 'invalid IPv6 host'],
  ['[::1]x/foo', 'after IPv6 host'],
  ['[::1]:/foo', 'invalid port'],
  ['a'.repeat(64), 'image ID'],
  [`r.io/${'a'.repeat(251)}`, 'at most 255'],
  ['a'.repeat(247), 'at most 255'],
  ['ubuntu:tag:tag', 'invalid'],
  ['[2001:db8::1]', 'invalid path component'],
  ['[2001:db8::1]:5000', 'invalid path component'],
  ['[2001:db8::1]:tag/repo', 'invalid port'],
  ['[fe80::1%eth0]:5000/repo', 'invalid IPv6 host'],
  ['2001:db8::1/repo', 'invalid port'],
  ['-docker.io/docker/docker', 'invalid registry host'],
  ['docker///docker', 'empty path component'],
  ['docker.io/docker/Docker', 'must be lowercase'],
];

describe('parseReference', () => {
  it.each(valid)('parses $in', (c) => {
    const ref = parseReference(c.in);
    expect(ref.registry).toBe(c.registry);
    expect(ref.repository).toBe(c.repository);
    expect(ref.tag).toBe(c.tag);
    expect(ref.digest).toBe(c.digest);
    expect(ref.name).toBe(`${c.registry}/${c.repository}`);
    const again = parseReference(ref.toString());
    expect(again.toString()).toBe(ref.toString());
    expect(formatReference(again)).toBe(ref.toString());
  });

  it.each(invalid)('rejects %j with INVALID_REFERENCE saying %s', (input, why) => {
    const caught = parseError(input);
    expect(isLadingError(caught, 'INVALID_REFERENCE')).toBe(true);
    expect((caught as Error).name).toBe('InvalidReferenceError');
    expect((caught as Error).message).toContain(JSON.stringify(input));
    expect((caught as Error).message).toContain(why);
  });

  it.each([
    ['alice:s3cret@127.0.0.1:5000/a/b:v1', 's3cret'],
    ['http://alice:s3cret@registry.example/a/b', 's3cret'],
    ['bob:hunter2@example.com/app', 'hunter2'],
  ])('never shows the password of %j in its message', (input, password) => {
    const caught = parseError(input);
    expect(isLadingError(caught, 'INVALID_REFERENCE')).toBe(true);
    expect((caught as Error).message).not.toContain(password);
    expect((caught as Error).message).toContain('***:***@');
  });

  it.each(['alice:s3cret@127.0.0.1:5000/a/b:v1', 'bob@example.com/app', 'bob:pw@example.com/app'])(
    'says that %j carries credentials, which a reference cannot',
    (input) => {
      expect((parseError(input) as Error).message).toContain(
        'credentials cannot be given in a reference',
      );
    },
  );

  it('keeps a digest after a tag in its message', () => {
    const input = 'Bad/Repo:v1@sha256:' + 'a'.repeat(64);
    expect(() => parseReference(input)).toThrow(JSON.stringify(input));
  });

  it('has at least 80 table cases', () => {
    expect(valid.length + invalid.length).toBeGreaterThanOrEqual(80);
  });

  it('formats the full and familiar forms when the image is on Docker Hub', () => {
    const ref = parseReference('ubuntu');
    expect(ref.toString()).toBe('docker.io/library/ubuntu:latest');
    expect(ref.familiarName()).toBe('ubuntu');
    expect(ref.familiarString()).toBe('ubuntu:latest');
    expect(ref.apiHost).toBe('registry-1.docker.io');
    expect(ref.context()).toBe('latest');
    expect(parseReference('foo/bar:1').familiarString()).toBe('foo/bar:1');
    expect(parseReference('library/a/b').familiarName()).toBe('library/a/b');
    expect(JSON.stringify({ r: ref })).toBe('{"r":"docker.io/library/ubuntu:latest"}');
  });

  it('keeps the registry in familiar forms when it is not Docker Hub', () => {
    const ref = parseReference(`localhost:5000/a/b:c@${d}`);
    expect(ref.familiarString()).toBe(`localhost:5000/a/b:c@${d}`);
    expect(ref.apiHost).toBe('localhost:5000');
    expect(ref.context()).toBe(d);
  });

  it('uses the defaults from options when the text names no registry or tag', () => {
    const ref = parseReference('team/app', {
      defaultRegistry: 'r.example:5000',
      defaultTag: 'main',
    });
    expect(ref.toString()).toBe('r.example:5000/team/app:main');
    const single = parseReference('app', { defaultRegistry: 'r.example' });
    expect(single.repository).toBe('app');
  });
});

describe('withTag / withDigest', () => {
  it('replaces the tag and keeps the digest when retagging', () => {
    const ref = withTag(parseReference(`r.io/a:old@${d}`), 'new');
    expect(ref.toString()).toBe(`r.io/a:new@${d}`);
  });

  it('drops a defaulted tag but keeps a written one when pinning a digest', () => {
    expect(withDigest(parseReference('r.io/a'), d).toString()).toBe(`r.io/a@${d}`);
    expect(withDigest(parseReference('r.io/a:v1'), d).toString()).toBe(`r.io/a:v1@${d}`);
  });

  it('rejects malformed tags and digests with INVALID_REFERENCE', () => {
    const ref = parseReference('r.io/a');
    expect(() => withTag(ref, '-x')).toThrow(
      expect.objectContaining({ code: 'INVALID_REFERENCE' }),
    );
    expect(() => withDigest(ref, 'sha256:xyz')).toThrow(
      expect.objectContaining({ code: 'INVALID_REFERENCE' }),
    );
  });
});

const alnum = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const sep = fc.constantFrom('.', '_', '__', '-', '--');
const component = fc
  .tuple(alnum, fc.array(fc.tuple(sep, alnum), { maxLength: 2 }))
  .map(([a, rest]) => a + rest.map(([s, b]) => s + b).join(''));
const domainPart = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?$/);
const host = fc.oneof(
  fc.tuple(domainPart, domainPart).map(([a, b]) => `${a}.${b}`),
  fc.constant('localhost'),
  fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.0.${a}.${b}`),
  fc.constantFrom('[::1]', '[2001:db8::7]'),
);
const registry = fc
  .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
  .map(([h, p]) => (p === undefined ? h : `${h}:${p}`));
const tag = fc.stringMatching(/^[\w][\w.-]{0,20}$/);
const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);

describe('parseReference properties', () => {
  it('round-trips generated valid references through toString', () => {
    fc.assert(
      fc.property(
        registry,
        fc.array(component, { minLength: 1, maxLength: 4 }),
        fc.option(tag, { nil: undefined }),
        fc.option(digest, { nil: undefined }),
        (reg, path, t, dg) => {
          const text =
            `${reg}/${path.join('/')}` +
            (t === undefined ? '' : `:${t}`) +
            (dg === undefined ? '' : `@${dg}`);
          const ref: Reference = parseReference(text);
          expect(ref.registry).toBe(reg === 'index.docker.io' ? 'docker.io' : reg);
          expect(ref.repository).toBe(path.join('/'));
          expect(ref.tag).toBe(t ?? (dg === undefined ? 'latest' : undefined));
          expect(ref.digest).toBe(dg);
          if (t !== undefined || dg !== undefined) expect(ref.toString()).toBe(text);
          expect(parseReference(ref.toString()).toString()).toBe(ref.toString());
        },
      ),
      { numRuns: 500 },
    );
  });

  it('never throws anything but INVALID_REFERENCE on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          const ref = parseReference(s);
          expect(parseReference(ref.toString()).toString()).toBe(ref.toString());
        } catch (err) {
          expect(isLadingError(err, 'INVALID_REFERENCE')).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

/** parseError is what parseReference(input) throws (undefined when it parses). */
function parseError(input: string): unknown {
  try {
    parseReference(input);
  } catch (err) {
    return err;
  }
  return undefined;
}
