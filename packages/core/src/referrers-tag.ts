import { digestHex, type Digest } from './digest.js';

/**
 * referrersTag is the tag under which the referrers tag schema keeps the
 * index of `subject`'s referrers (`sha256-<hex>`), for registries without
 * the referrers API and for OCI layouts.
 * @see https://github.com/opencontainers/distribution-spec/blob/main/spec.md#referrers-tag-schema
 */
export function referrersTag(subject: Digest): string {
  return `${subject.slice(0, subject.indexOf(':'))}-${digestHex(subject)}`;
}

/** isReferrersTag says whether `name` is a {@link referrersTag} (sha256 or sha512). */
export function isReferrersTag(name: string): boolean {
  return /^(?:sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})$/.test(name);
}
