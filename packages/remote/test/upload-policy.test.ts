import { describe, expect, it } from 'vitest';
import { MONOLITHIC_MAX, uploadMode } from '../src/upload-policy.js';

describe('uploadMode', () => {
  it('uploads a known blob of at most 1 MiB in one PUT when no mode is asked for', () => {
    expect(uploadMode(undefined, { size: 0 })).toBe('monolithic');
    expect(uploadMode(undefined, { size: MONOLITHIC_MAX })).toBe('monolithic');
    expect(uploadMode(undefined, { size: MONOLITHIC_MAX + 1 })).toBe('stream');
  });
  it('streams a blob of unknown size even when monolithic is asked for', () => {
    expect(uploadMode(undefined, undefined)).toBe('stream');
    expect(uploadMode('monolithic', undefined)).toBe('stream');
  });
  it('keeps the asked mode when it can be honoured', () => {
    expect(uploadMode('chunked', { size: 10 })).toBe('chunked');
    expect(uploadMode('stream', { size: 10 })).toBe('stream');
    expect(uploadMode('monolithic', { size: 5 * MONOLITHIC_MAX })).toBe('monolithic');
  });
});
