import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ErrorCode,
  HashingStream,
  LadingError,
  MediaType,
  digestOf,
  fetchVerified,
  formatPlatform,
  copy,
  imageIndex,
  isImageIndex,
  parseManifest,
  isLadingError,
  platformMatches,
  type Descriptor,
  type Digest,
  type Image,
  type ImageIndex,
  type IndexEntryInput,
  type IndexManifest,
  type CopyOptions,
  type Target,
} from '@lading/core';
import { discardSink, referrersTag } from '@lading/core/internal';
import { RegistryClient, RegistryTarget } from '@lading/remote';
import { UsageError } from '../exit.js';
import { openSource } from '../image-source.js';
import { parseLocation, refuseArchiveForIndex } from '../transports.js';
import {
  keyValues,
  list,
  now,
  openTarget,
  parseRef,
  positional,
  remoteOptions,
  str,
  writing,
} from './common.js';
import { reportWrite } from './report-write.js';
import type { Command } from './types.js';

// ----------------------------------------------------------------- index

const indexUsage = `Usage: lading index create DST SRC...
       lading index append DST SRC...

create writes an index (OCI image index) listing the images SRC name, each
with its platform (from its config); an index given as SRC contributes its
images. append adds images to the index at DST. Any location works for DST
and SRC; layers are mounted or skipped within one registry.

Options:
  --annotation K=V   index annotation, repeatable`;

/** entriesOf lists an image as one entry, an index as its children (platforms kept). */
async function entriesOf(content: Image | ImageIndex): Promise<IndexEntryInput[]> {
  if (!isImageIndex(content)) return [{ image: content }];
  return (await content.children()).map((child) => {
    const d = child.descriptor;
    return {
      image: child.kind === 'image' ? child.image : child.index,
      ...(d.platform === undefined ? {} : { platform: d.platform }),
      ...(d.annotations === undefined ? {} : { annotations: d.annotations }),
      ...(d.artifactType === undefined ? {} : { artifactType: d.artifactType }),
    };
  });
}

/**
 * onePerPlatform returns the positions of the entries to keep: an image
 * listed twice (same digest, same platform) is kept once, and two different
 * images for one platform are refused, since a client picking that platform
 * could get either. Entries without a real platform (artifacts, buildx's
 * `unknown/unknown` attestations) are never compared.
 * @throws UsageError naming both images and where they came from
 */
function onePerPlatform(manifests: readonly Descriptor[], from: readonly string[]): number[] {
  const kept: number[] = [];
  for (const [i, d] of manifests.entries()) {
    const p = d.platform;
    const same =
      p === undefined || p.os === 'unknown' || p.architecture === 'unknown'
        ? undefined
        : kept.find((k) => {
            const q = manifests[k]?.platform;
            return q !== undefined && platformMatches(p, q) && platformMatches(q, p);
          });
    if (p === undefined || same === undefined) {
      kept.push(i);
      continue;
    }
    if (manifests[same]?.digest === d.digest) continue;
    throw new UsageError(
      `two images for ${formatPlatform(p)}: ${String(manifests[same]?.digest)} (${String(from[same])}) and ${d.digest} (${String(from[i])})`,
      'an index lists one image per platform: leave one out (to replace an image, create the index again)',
    );
  }
  return kept;
}

/** index is `lading index create|append DST SRC…`. */
export const index: Command = {
  usage: indexUsage,
  options: { annotation: { type: 'string', multiple: true } },
  run: async (ctx) => {
    const start = now();
    const sub = ctx.positionals[0];
    if (sub !== 'create' && sub !== 'append')
      throw new UsageError(
        sub === undefined ? 'index needs create or append' : `unknown index subcommand ${sub}`,
        'lading index --help',
      );
    const dst = positional(ctx, 1, 'DST', indexUsage);
    const sources = ctx.positionals.slice(2);
    if (sources.length === 0) throw new UsageError('missing SRC', `lading index ${sub} DST SRC...`);
    parseLocation(dst);
    refuseArchiveForIndex([dst], `index ${sub} writes an index`);
    const options = await remoteOptions(ctx);
    let annotations = keyValues(list(ctx, 'annotation'), 'annotation');
    const entries: IndexEntryInput[] = [];
    if (sub === 'append') {
      const { content } = await openSource(dst, options, ctx.signal);
      if (!isImageIndex(content))
        throw new LadingError(ErrorCode.UnsupportedMediaType, `${dst} is an image, not an index`);
      annotations = { ...(await content.indexManifest()).annotations, ...annotations };
      entries.push(...(await entriesOf(content)));
    }
    const from: string[] = entries.map(() => dst);
    for (const text of sources) {
      const more = await entriesOf((await openSource(text, options, ctx.signal)).content);
      entries.push(...more);
      from.push(...more.map(() => text));
    }
    const indexOptions = Object.keys(annotations).length > 0 ? { annotations } : {};
    let built = imageIndex(entries, indexOptions);
    const kept = onePerPlatform((await built.indexManifest()).manifests, from);
    if (kept.length < entries.length)
      built = imageIndex(
        entries.filter((_, i) => kept.includes(i)),
        indexOptions,
      );
    await reportWrite(ctx, built, [dst], options, start);
  },
};

// ------------------------------------------------------ attach, discover

/** The empty JSON blob OCI 1.1 artifacts use as their config. */
const emptyConfig: Descriptor = {
  mediaType: MediaType.OciEmpty,
  digest: digestOf(Buffer.from('{}')),
  size: 2,
  data: 'e30=',
};

async function fileDescriptor(
  file: string,
  mediaType: string,
  signal: AbortSignal,
): Promise<Descriptor> {
  const st = await stat(file).catch(() => undefined);
  if (st?.isFile() !== true) throw new UsageError(`${file} is not a file`);
  // One pass to hash (never the whole file in memory), one to upload.
  const hasher = new HashingStream();
  await pipeline(createReadStream(file, { signal }), hasher, discardSink());
  const digest = hasher.digest;
  if (digest === undefined) throw new LadingError(ErrorCode.Io, `${file} was not read to its end`);
  return {
    mediaType,
    digest,
    size: hasher.size,
    annotations: { 'org.opencontainers.image.title': basename(file) },
  };
}

/** adding is the edit of {@link editFallbackIndex} that adds those of `added` it does not list. */
function adding(added: readonly Descriptor[]) {
  return (manifests: readonly Descriptor[]): Descriptor[] | undefined => {
    const missing = added.filter((r) => !manifests.some((d) => d.digest === r.digest));
    return missing.length === 0 ? undefined : [...manifests, ...missing];
  };
}

/**
 * editFallbackIndex rewrites the `sha256-<hex>` index of the referrers of
 * `subject` in an OCI layout, which is read through it (a registry's
 * putManifest and deleteManifest do the same where the registry lacks the
 * referrers API): `edit` gets its manifests (none when it is absent) and
 * answers the new list, or undefined to leave it as it is.
 * Read-modify-write: concurrent writers may race.
 */
export async function editFallbackIndex(
  target: Target,
  subject: Digest,
  edit: (manifests: readonly Descriptor[]) => Descriptor[] | undefined,
  signal: AbortSignal,
): Promise<void> {
  const tag = referrersTag(subject);
  let current: IndexManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [],
  };
  try {
    const root = await target.resolve(tag, { signal });
    current = JSON.parse(
      Buffer.from(await fetchVerified(target, root, { signal })).toString('utf8'),
    ) as IndexManifest;
  } catch (err) {
    if (!isLadingError(err, ErrorCode.NotFound)) throw err;
  }
  const manifests = edit(current.manifests);
  if (manifests === undefined) return;
  const bytes = Buffer.from(JSON.stringify({ ...current, manifests }));
  const indexDesc: Descriptor = {
    mediaType: MediaType.OciIndex,
    digest: digestOf(bytes),
    size: bytes.length,
  };
  await target.push(indexDesc, Readable.from([bytes]), { signal });
  await target.tag(indexDesc, tag, { signal });
}

const attachUsage = `Usage: lading attach SUBJECT --artifact-type TYPE FILE... [options]

Pushes an OCI 1.1 artifact manifest whose subject is the manifest SUBJECT
names (empty config, one layer per FILE, titled by its file name) next to
it, and prints the artifact's digest. Registries without the referrers API
(and OCI layouts) get the sha256-<hex> tag schema index updated too.

Options:
  --artifact-type TYPE   the artifact's type (required)
  --file-type TYPE       media type of the files (default application/octet-stream)
  --annotation K=V       manifest annotation, repeatable`;

/** mediaTypeSyntax is RFC 6838's type/subtype (restricted-name), which OCI asks of artifactType. */
const mediaTypeSyntax =
  /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/** attach is `lading attach SUBJECT --artifact-type T FILE…`. */
export const attach: Command = {
  usage: attachUsage,
  options: {
    'artifact-type': { type: 'string' },
    'file-type': { type: 'string' },
    annotation: { type: 'string', multiple: true },
  },
  run: async (ctx) => {
    const subjectText = positional(ctx, 0, 'SUBJECT', attachUsage);
    const artifactType = str(ctx, 'artifact-type');
    if (artifactType === undefined)
      throw new UsageError('attach needs --artifact-type', 'lading attach --help');
    const fileType = str(ctx, 'file-type') ?? 'application/octet-stream';
    for (const [option, type] of [
      ['artifact-type', artifactType],
      ['file-type', fileType],
    ] as const)
      if (!mediaTypeSyntax.test(type))
        throw new UsageError(
          `--${option} ${JSON.stringify(type)} is not a media type`,
          'type/subtype, as RFC 6838 writes them: application/vnd.example.sbom+json',
        );
    const files = ctx.positionals.slice(1);
    if (files.length === 0) throw new UsageError('attach needs at least one FILE');
    const annotations = keyValues(list(ctx, 'annotation'), 'annotation');
    const location = parseLocation(subjectText);
    if (location.kind === 'docker-archive')
      throw new UsageError(
        'a docker archive cannot hold artifacts (docker load reads images only)',
        'attach to a registry reference or an oci:DIR layout',
      );
    const options = await remoteOptions(ctx);
    const opened = openTarget(location, options, 'write');
    const { signal } = ctx;
    const { subject, desc, apiHandled } = await writing(opened, async () => {
      const subject = await opened.target.resolve(opened.readRef, { signal });
      const layers: Descriptor[] = [];
      for (const file of files) {
        const d = await fileDescriptor(file, fileType, signal);
        if (!(await opened.target.exists(d, { signal })))
          await opened.target.push(d, createReadStream(file, { signal }), { signal });
        layers.push(d);
      }
      if (!(await opened.target.exists(emptyConfig, { signal })))
        await opened.target.push(emptyConfig, Readable.from([Buffer.from('{}')]), { signal });
      const manifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType,
        config: emptyConfig,
        layers,
        subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
        ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      };
      const bytes = Buffer.from(JSON.stringify(manifest));
      const desc: Descriptor = {
        mediaType: MediaType.OciManifest,
        digest: digestOf(bytes),
        size: bytes.length,
        artifactType,
        ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      };
      let apiHandled = false;
      if (location.kind === 'registry') {
        const r = parseRef(location.reference);
        const slash = r.repo.indexOf('/');
        const put = await new RegistryClient(r.repo.slice(0, slash), options).putManifest(
          r.repo.slice(slash + 1),
          desc.digest,
          bytes,
          desc.mediaType,
          { signal },
        );
        // OCI-Subject in the answer: the registry indexes referrers itself;
        // without it putManifest has added the artifact to the tag schema index.
        apiHandled = put.subject !== undefined;
      } else {
        await opened.target.push(desc, Readable.from([bytes]), { signal });
        await editFallbackIndex(opened.target, subject.digest, adding([desc]), signal);
      }
      return { subject, desc, apiHandled };
    });
    ctx.out.result(
      { subject: subject.digest, digest: desc.digest, artifactType, referrersApi: apiHandled },
      desc.digest,
    );
  },
};

/**
 * referrersIn lists the manifests whose subject is `subject` in a registry
 * (its referrers API, else the tag schema) or in an OCI layout (the tag
 * schema index that attach and cp --referrers keep there).
 */
export async function referrersIn(
  target: Target,
  subject: Digest,
  signal: AbortSignal,
  artifactType?: string,
): Promise<Descriptor[]> {
  if (target instanceof RegistryTarget)
    return target.client.referrers(target.repository, subject, {
      signal,
      ...(artifactType === undefined ? {} : { artifactType }),
    });
  try {
    const root = await target.resolve(referrersTag(subject), { signal });
    const idx = JSON.parse(
      Buffer.from(await fetchVerified(target, root, { signal })).toString('utf8'),
    ) as IndexManifest;
    return idx.manifests.filter(
      (m) => artifactType === undefined || m.artifactType === artifactType,
    );
  } catch (err) {
    if (!isLadingError(err, ErrorCode.NotFound)) throw err;
    return [];
  }
}

/**
 * copyReferrers copies the referrers of `root` (and of the manifests of an
 * index root), and theirs in turn, from `src` to `dst`, each by digest: a
 * registry indexes them itself or by the tag schema (putManifest), a
 * layout gets each added to its subject's tag schema index. Resolves how
 * many were copied.
 */
export async function copyReferrers(
  src: Target,
  dst: Target,
  root: Descriptor,
  options: CopyOptions & { readonly signal: AbortSignal },
): Promise<number> {
  const { signal } = options;
  const subjects: Digest[] = [root.digest];
  const parsed = parseManifest(
    Buffer.from(await fetchVerified(dst, root, { signal })),
    root.mediaType,
  );
  if (parsed.kind === 'index') for (const m of parsed.manifest.manifests) subjects.push(m.digest);
  const seen = new Set<string>(subjects);
  let copied = 0;
  // (the loop also visits the subjects pushed while it runs)
  for (const subject of subjects) {
    const added: Descriptor[] = [];
    for (const r of await referrersIn(src, subject, signal)) {
      if (seen.has(r.digest)) continue;
      seen.add(r.digest);
      try {
        await copy(src, r.digest, dst, r.digest, options);
      } catch (err) {
        if (!isLadingError(err, ErrorCode.NotFound)) throw err;
        // A stale entry of a tag schema index, say: name it as what it is.
        throw Object.assign(
          new LadingError(
            ErrorCode.NotFound,
            `${r.digest}, listed as a referrer of ${subject}, is missing from the source`,
            { cause: err },
          ),
          { hint: 'copy without -r, or remove it from the referrers index' },
        );
      }
      added.push(r);
      copied++;
      subjects.push(r.digest);
    }
    // One rewrite of a layout's index per subject, not one per referrer.
    if (added.length > 0 && !(dst instanceof RegistryTarget))
      await editFallbackIndex(dst, subject, adding(added), signal);
  }
  return copied;
}

const discoverUsage = `Usage: lading discover SUBJECT [--artifact-type TYPE]

Lists the artifacts whose subject is the manifest SUBJECT names: through the
referrers API, or the sha256-<hex> tag schema where the registry lacks it
(and in OCI layouts).`;

/** discover is `lading discover SUBJECT`. */
export const discover: Command = {
  positionals: 1,
  usage: discoverUsage,
  options: { 'artifact-type': { type: 'string' } },
  run: async (ctx) => {
    const subjectText = positional(ctx, 0, 'SUBJECT', discoverUsage);
    const artifactType = str(ctx, 'artifact-type');
    const location = parseLocation(subjectText);
    const options = await remoteOptions(ctx);
    const opened = openTarget(location, options, 'read');
    const { signal } = ctx;
    const subject = await opened.target.resolve(opened.readRef, { signal });
    const found = await referrersIn(opened.target, subject.digest, signal, artifactType);
    ctx.out.result(
      { subject: subject.digest, referrers: found },
      found.map((d) => `${d.digest} ${d.artifactType ?? d.mediaType}`).join('\n'),
    );
  },
};
