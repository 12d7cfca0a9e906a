import { describe, expect, it } from 'vitest';
import { parseChallenge, parseLinkNext } from '../src/internal/challenge.js';

describe('parseChallenge', () => {
  it('reads every parameter, across empty list elements and quoted commas', () => {
    expect(
      parseChallenge('Bearer realm="https://a/token",,service="s, t" , scope="repository:x:pull"'),
    ).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://a/token', service: 's, t', scope: 'repository:x:pull' },
    });
    expect(parseChallenge('Basic ,realm="r"')).toEqual({ scheme: 'basic', params: { realm: 'r' } });
    expect(parseChallenge('Bearer realm="a\\"b"')?.params.realm).toBe('a"b');
  });
});

describe('parseLinkNext', () => {
  it('takes the link whose rel is, or lists, next, and nothing else', () => {
    const cases: [string | string[], string | undefined][] = [
      ['</v2/x/tags/list?last=b>; rel="next"', '/v2/x/tags/list?last=b'],
      ['</a>;rel=next;title=y', '/a'],
      ['</a>; title="x"; rel="prev next"', '/a'],
      ['</a>; rel="prev", </b>; rel="next"', '/b'],
      [['</a>; rel="prev"', '</b>; REL=Next'], '/b'],
      ['</a>; rel="next-page"', undefined],
      ['</a>; title="x,rel=next"', undefined],
      ['</a>; title="rel=next"; rel="prev"', undefined],
      ['</a>', undefined],
    ];
    for (const [header, next] of cases) expect(parseLinkNext(header), String(header)).toBe(next);
  });
});
