import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ErrorCode,
  LadingError,
  MediaType,
  copy,
  fetchVerified,
  imageIndex,
  isManifestMediaType,
  parseConfigFile,
  parseManifest,
  successors,
  isDigest,
  isLadingError,
  isImageIndex,
  parsePlatform,
  withAnnotations,
  withConfig,
  withPlatform,
  VerifyingStream,
  DigestMismatchError,
  HashingStream,
  createDecompressor,
  layerCompressionOf,
  type Descriptor,
  type LayerCompression,
  type Digest,
  type Image,
  type ImageIndex,
  type Layer,
  type Target,
} from '@lading/core';
import {
  decompressionError,
  discardSink,
  isLayerMediaType,
  writeOutputFile,
} from '@lading/core/internal';
import { flatten } from '@lading/layers';
import { DockerArchive, OciLayout } from '@lading/layout';
import { RegistryClient } from '@lading/remote';
import { UsageError } from '../exit.js';
import { openSource, pickImage } from '../image-source.js';
import { editFallbackIndex } from './artifacts.js';
import { reportWrite } from './report-write.js';
import {
  isOciRefName,
  namesDigest,
  parseLocation,
  refuseArchiveForIndex,
  type Location,
} from '../transports.js';
import { configPatch } from './build.js';
import {
  flag,
  keyValues,
  list,
  now,
  type OpenedTarget,
  openTarget,
  parseRef,
  positional,
  remoteOptions,
  seconds,
  str,
  writing,
} from './common.js';
import type { Command, CommandContext } from './types.js';

// A registry tag (distribution spec): at most 128 characters.
const bareTag = /^[\w][\w.-]{0,127}$/;

// ------------------------------------------------------------------- tag

const tagUsage = `Usage: lading tag SRC TAG...

Points more tags at the manifest SRC names. A TAG without a '/' (and not
oci:… or docker-archive:…) is a bare tag in SRC's repository or layout;
anything else is a location. No blob moves within a registry: within one
repository it is a manifest PUT, across repositories blobs are mounted.`;

/** isBareTag says whether a TAG argument of `tag` means a tag beside SRC, not a location. */
function isBareTag(text: string): boolean {
  return !text.includes('/') && !text.startsWith('oci:') && !text.startsWith('docker-archive:');
}

/**
 * checkBareTag refuses a bare tag that SRC's kind of target cannot hold, or
 * that lading would not read back: a registry tag, or in a layout a name of
 * the image-layout reference-name grammar. A docker archive is never
 * tagged in place (it is a tar file, opened for reading).
 * @throws UsageError
 */
function checkBareTag(t: string, src: Location): void {
  if (src.kind === 'docker-archive')
    throw new UsageError(
      `a docker archive is not tagged in place (${JSON.stringify(t)})`,
      'copy it under the new name instead: lading cp docker-archive:FILE:NAME docker-archive:OTHER.tar:NAME:TAG',
    );
  if (src.kind === 'oci') {
    // No ':' either: oci:DIR:A:B reads as the tag B of the layout DIR:A.
    if (!isOciRefName(t) || t.includes(':'))
      throw new UsageError(
        `not a valid tag: ${JSON.stringify(t)}`,
        'a layout tag is letters and digits with one of . _ - @ + between them (OCI image layout)',
      );
    return;
  }
  if (!bareTag.test(t))
    throw new UsageError(
      `not a valid tag: ${JSON.stringify(t)}`,
      'a tag is up to 128 letters, digits, _ . and -, not starting with . or -; a location has a / (host/repo:tag) or oci:/docker-archive:',
    );
}

/** tag is `lading tag SRC TAG…`. */
export const tag: Command = {
  usage: tagUsage,
  options: {},
  run: async (ctx) => {
    const srcText = positional(ctx, 0, 'SRC', tagUsage);
    const tags = ctx.positionals.slice(1);
    if (tags.length === 0) throw new UsageError('missing TAG', 'lading tag SRC TAG...');
    const srcLocation = parseLocation(srcText);
    // Every TAG is checked before anything is written.
    const locations = new Map<string, Location>();
    for (const t of tags) {
      if (isBareTag(t)) checkBareTag(t, srcLocation);
      else locations.set(t, parseLocation(t));
    }
    const options = await remoteOptions(ctx);
    const src = openTarget(srcLocation, options, 'read');
    const desc = await src.target.resolve(src.readRef, { signal: ctx.signal });
    const done: string[] = [];
    for (const t of tags) {
      const location = locations.get(t);
      if (location === undefined) {
        await src.target.tag(desc, t, { signal: ctx.signal });
      } else {
        const dst = openTarget(location, options, 'write');
        await writing(dst, () =>
          copy(src.target, desc.digest, dst.target, dst.ref ?? 'latest', {
            signal: ctx.signal,
          }),
        );
      }
      done.push(t);
    }
    ctx.out.result(
      { digest: desc.digest, tags: done },
      flag(ctx, 'quiet') ? desc.digest : `${done.join('\n')}\n${desc.digest}`,
    );
  },
};

// ---------------------------------------------------------------- delete

const deleteUsage = `Usage: lading delete LOCATION

Deletes the manifest LOCATION names: in a registry by digest (every tag
pointing at it goes too; blobs are left to the registry's garbage
collection); in an OCI layout the tag (or every tag of a @digest; with
neither, of the layout's only image). A referrer deleted by digest leaves
its subject's sha256-<hex> tag schema index too.`;

/**
 * untagLayout removes from a layout's index.json the names that point at
 * `desc`: `ref` alone when the location named a tag, else every entry of
 * the manifest, named or not (and a referrer leaves the tag schema index
 * of its subject).
 * @throws NOT_FOUND when no index.json entry points at `desc`
 */
async function untagLayout(
  layout: OciLayout,
  label: string,
  ref: string | undefined,
  desc: Descriptor,
  signal: AbortSignal,
): Promise<void> {
  if (ref !== undefined && !isDigest(ref)) {
    await layout.untag(ref, { signal });
    return;
  }
  const bytes = await fetchVerified(layout, desc, { signal }).catch((err: unknown) => {
    if (signal.aborted) throw err;
    return undefined;
  });
  const untagged = await layout.untag(desc.digest, { signal });
  // A referrer leaves its subject's tag schema index too (in a layout
  // that index may be all that names it), as in a registry without the
  // referrers API.
  const subject = bytes === undefined ? undefined : subjectOf(bytes);
  const referrer = { dropped: false };
  if (subject !== undefined)
    await editFallbackIndex(
      layout,
      subject,
      (m) => {
        if (!m.some((d) => d.digest === desc.digest)) return undefined;
        referrer.dropped = true;
        return m.filter((d) => d.digest !== desc.digest);
      },
      signal,
    );
  // A manifest blob that nothing names is not in the layout as far as
  // its readers go: nothing to delete.
  if (!untagged && !referrer.dropped)
    throw Object.assign(
      new LadingError(
        ErrorCode.NotFound,
        `no index.json entry of ${label} points at ${desc.digest}`,
      ),
      { hint: `lading ls ${label} lists the names it holds` },
    );
}

/** subjectOf is the digest of a manifest's `subject`, when it has one. */
function subjectOf(bytes: Uint8Array): Digest | undefined {
  try {
    const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as { subject?: { digest?: unknown } };
    const d = m.subject?.digest;
    return typeof d === 'string' && isDigest(d) ? d : undefined;
  } catch {
    return undefined;
  }
}

/** del is `lading delete LOCATION`. */
export const del: Command = {
  positionals: 1,
  usage: deleteUsage,
  options: {},
  run: async (ctx) => {
    const text = positional(ctx, 0, 'LOCATION', deleteUsage);
    const location = parseLocation(text);
    const options = await remoteOptions(ctx);
    const opened = openTarget(location, options, 'read');
    if (location.kind === 'docker-archive')
      throw new LadingError(ErrorCode.Unsupported, `cannot delete from ${opened.label}`);
    // A tagless layout means its only image, as for every other verb.
    const desc = await opened.target.resolve(opened.readRef, { signal: ctx.signal });
    if (location.kind === 'registry') {
      const r = parseRef(location.reference);
      const slash = r.repo.indexOf('/');
      await new RegistryClient(r.repo.slice(0, slash), options).deleteManifest(
        r.repo.slice(slash + 1),
        desc.digest,
        { signal: ctx.signal },
      );
    } else if (opened.target instanceof OciLayout) {
      await untagLayout(opened.target, opened.label, opened.ref, desc, ctx.signal);
    } else {
      throw new LadingError(ErrorCode.Unsupported, `cannot delete from ${opened.label}`);
    }
    ctx.out.result(
      { deleted: text, digest: desc.digest },
      flag(ctx, 'quiet') ? desc.digest : `deleted ${text} (${desc.digest})`,
    );
  },
};

// ------------------------------------------------------------------ blob

const blobUsage = `Usage: lading blob LOCATION@DIGEST [-o FILE]

Streams one blob (layer, config or manifest) to stdout or to FILE, verified
against its digest. LOCATION is host/repo@sha256:…, oci:DIR@sha256:… or
docker-archive:FILE@sha256:….`;

/** findDescriptor walks the manifests a local target holds for the blob `digest`. */
async function findDescriptor(
  opened: OpenedTarget,
  digest: Digest,
  signal: AbortSignal,
): Promise<Descriptor> {
  const t = opened.target;
  const roots: Descriptor[] =
    t instanceof OciLayout
      ? await t.list({ signal })
      : t instanceof DockerArchive
        ? (await t.images({ signal })).map((i) => i.manifest)
        : [];
  const seen = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const d = queue.shift();
    if (d === undefined || seen.has(d.digest)) continue;
    seen.add(d.digest);
    if (d.digest === digest) return d;
    queue.push(...(await successors(t, d, { signal })));
  }
  throw new LadingError(ErrorCode.NotFound, `blob ${digest} not found in ${opened.label}`);
}

/** writeOutput streams `content` to stdout (`-` or no FILE) or atomically to FILE. */
async function writeOutput(
  ctx: CommandContext,
  content: Readable,
  file: string | undefined,
): Promise<void> {
  if (file === undefined || file === '-') {
    let sent = 0;
    content.on('data', (chunk: Buffer) => (sent += chunk.length));
    await pipeline(content, ctx.stdout, { signal: ctx.signal, end: false }).catch(
      (err: unknown) => {
        // Bytes on stdout cannot be taken back: say so, rather than the
        // "nothing was written" a failed verification says elsewhere.
        if (sent > 0 && typeof err === 'object' && err !== null)
          Object.assign(err, {
            hint: `${String(sent)} bytes were already written to stdout before the failure and cannot be trusted: discard them`,
          });
        throw err;
      },
    );
    return;
  }
  // A temp file next to FILE, renamed into place (never a half-written
  // FILE); a device or FIFO is written through, a symlink followed.
  await writeOutputFile(file, content, ctx.signal);
}

/** blob is `lading blob LOCATION@DIGEST`. */
export const blob: Command = {
  positionals: 1,
  usage: blobUsage,
  options: { output: { type: 'string', short: 'o' } },
  run: async (ctx) => {
    const text = positional(ctx, 0, 'LOCATION@DIGEST', blobUsage);
    const location = parseLocation(text);
    const options = await remoteOptions(ctx);
    let content: Readable;
    let digest: Digest;
    if (location.kind === 'registry') {
      const r = parseRef(location.reference);
      if (r.digest === undefined)
        throw new UsageError('blob needs a digest (REPO@sha256:…)', 'lading blob --help');
      digest = r.digest as Digest;
      const slash = r.repo.indexOf('/');
      const client = new RegistryClient(r.repo.slice(0, slash), options);
      const repo = r.repo.slice(slash + 1);
      const blobDigest = digest;
      // A manifest is a blob by digest too, served from /manifests/: that
      // is where a registry answers for it when /blobs/ does not.
      content = await client
        .getBlob(repo, blobDigest, { signal: ctx.signal })
        .catch(async (err: unknown) => {
          if (!isLadingError(err, ErrorCode.NotFound)) throw err;
          const m = await client
            .getManifest(repo, blobDigest, { signal: ctx.signal })
            .catch((again: unknown) => {
              throw isLadingError(again, ErrorCode.NotFound) ? err : again;
            });
          return Readable.from([m.bytes]);
        });
    } else {
      const opened = openTarget(location, options, 'read');
      if (opened.ref === undefined || !isDigest(opened.ref))
        throw new UsageError('blob needs a digest (LOCATION@sha256:…)', 'lading blob --help');
      digest = opened.ref;
      const desc = await findDescriptor(opened, digest, ctx.signal);
      content = await opened.target.fetch(desc, { signal: ctx.signal });
    }
    const file = str(ctx, 'output');
    await writeOutput(ctx, content, file);
    if (file !== undefined && file !== '-') ctx.out.result({ digest, file }, `${file}\n${digest}`);
  },
};

// ---------------------------------------------------------------- mutate

const mutateUsage = `Usage: lading mutate SRC [-t LOCATION]... [options]

Edits the config and annotations of the image SRC names (for an index, of
every image in it) and writes the result to each -t LOCATION (default: SRC
itself). Layers are not uploaded again: within one registry they are
skipped or mounted.

Options:
  -t, --tag LOCATION        where to write, repeatable (default SRC)
  --env K=V, --label K=V    repeatable; merged into the config
  --entrypoint JSON|CMD, --cmd JSON|CMD, --workdir PATH, --user USER
  --annotation K=V          manifest annotation, repeatable
  --platform OS/ARCH[/VARIANT]  set the image's platform (not for an index)`;

/**
 * mutator is the edit the options ask for, applied to one image; `annotate`
 * false leaves out --annotation (which goes on an index, not its images).
 */
function mutator(ctx: CommandContext, annotate: boolean): (image: Image) => Image {
  const patch = configPatch(ctx);
  const annotations = annotate ? keyValues(list(ctx, 'annotation'), 'annotation') : {};
  const platformText = str(ctx, 'platform');
  const platform = platformText === undefined ? undefined : parsePlatform(platformText);
  return (image) => {
    let out = Object.keys(patch).length > 0 ? withConfig(image, patch) : image;
    if (platform !== undefined) out = withPlatform(out, platform);
    if (Object.keys(annotations).length > 0) out = withAnnotations(out, annotations);
    return out;
  };
}

// What buildx writes on an index entry that describes another entry (its
// attestation manifest): the kind, and the digest of the image described.
const referenceType = 'vnd.docker.reference.type';
const referenceDigest = 'vnd.docker.reference.digest';

/**
 * isAttached tells an index entry that is about another one (a buildx
 * attestation, `unknown/unknown`) or an artifact from a runnable image:
 * its config is not an image config, or its descriptor says so.
 */
async function isAttached(d: Descriptor, image: Image): Promise<boolean> {
  if (d.annotations?.[referenceType] !== undefined || d.artifactType !== undefined) return true;
  if (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown') return true;
  const m = await image.manifest();
  if (m.artifactType !== undefined) return true;
  return (
    m.config.mediaType !== MediaType.OciConfig && m.config.mediaType !== MediaType.DockerConfig
  );
}

/**
 * mutateIndex applies `edit` to every runnable image of `index` (nested
 * indexes included). Attestations and artifacts are kept as they are, and
 * their `vnd.docker.reference.digest` follows the image they describe to
 * its new digest. `annotations` go on this index only.
 */
async function mutateIndex(
  index: ImageIndex,
  edit: (image: Image) => Image,
  annotations: Record<string, string>,
): Promise<ImageIndex> {
  const moved = new Map<string, Digest>();
  const edited: { d: Descriptor; image: Image | ImageIndex }[] = [];
  for (const child of await index.children()) {
    const d = child.descriptor;
    let image: Image | ImageIndex;
    if (child.kind === 'index') image = await mutateIndex(child.index, edit, {});
    else if (await isAttached(d, child.image)) image = child.image;
    else image = edit(child.image);
    if (image !== (child.kind === 'index' ? child.index : child.image))
      moved.set(d.digest, await image.digest());
    edited.push({ d, image });
  }
  const entries = edited.map(({ d, image }) => {
    const about = d.annotations?.[referenceDigest];
    const to = about === undefined ? undefined : moved.get(about);
    const own = to === undefined ? d.annotations : { ...d.annotations, [referenceDigest]: to };
    return {
      image,
      ...(d.platform === undefined ? {} : { platform: d.platform }),
      ...(own === undefined ? {} : { annotations: own }),
      ...(d.artifactType === undefined ? {} : { artifactType: d.artifactType }),
    };
  });
  // Only annotations there were or given: an empty "annotations" would
  // change the index's digest for nothing.
  const merged = { ...(await index.indexManifest()).annotations, ...annotations };
  return imageIndex(entries, Object.keys(merged).length > 0 ? { annotations: merged } : {});
}

/** mutate is `lading mutate SRC [-t DST]…`. */
export const mutate: Command = {
  positionals: 1,
  usage: mutateUsage,
  options: {
    tag: { type: 'string', multiple: true, short: 't' },
    env: { type: 'string', multiple: true, short: 'e' },
    label: { type: 'string', multiple: true, short: 'l' },
    entrypoint: { type: 'string' },
    cmd: { type: 'string' },
    workdir: { type: 'string' },
    user: { type: 'string' },
    annotation: { type: 'string', multiple: true },
    platform: { type: 'string' },
  },
  run: async (ctx) => {
    const start = now();
    const srcText = positional(ctx, 0, 'SRC', mutateUsage);
    const destinations = [...ctx.positionals.slice(1), ...list(ctx, 'tag')];
    const inPlace = destinations.length === 0;
    if (inPlace) destinations.push(srcText);
    // A manifest named by digest cannot be rewritten: the edit has another
    // digest. Refused before anything is read or uploaded.
    for (const text of destinations)
      if (namesDigest(parseLocation(text)))
        throw new UsageError(
          inPlace
            ? 'SRC names a digest, which cannot be rewritten; give a destination with -t'
            : `${text} names a digest, which the edited manifest cannot have; give a tag`,
          'lading mutate SRC@sha256:… -t HOST/REPO:TAG (or oci:DIR:TAG)',
        );
    const edit = mutator(ctx, true);
    const options = await remoteOptions(ctx);
    const { content } = await openSource(srcText, options, ctx.signal);
    let result: Image | ImageIndex;
    if (isImageIndex(content)) {
      if (str(ctx, 'platform') !== undefined)
        throw new UsageError('--platform sets the platform of an image, and SRC is an index');
      refuseArchiveForIndex(destinations, 'SRC is an index');
      const annotations = keyValues(list(ctx, 'annotation'), 'annotation');
      result = await mutateIndex(content, mutator(ctx, false), annotations);
    } else result = edit(content);
    await reportWrite(ctx, result, destinations, options, start);
  },
};

// ---------------------------------------------------------------- export

const exportUsage = `Usage: lading export LOCATION FILE|- [--platform OS/ARCH]

Writes the image's filesystem as one tar (layers stacked, whiteouts
applied) to FILE or stdout. An index needs --platform (default linux/amd64).`;

/**
 * checkedLayers are the image's layers, each checking as it is read that
 * its uncompressed bytes are the diff_id its config names, as `pull` does:
 * the config is read (and its digest checked) first, and one that does not
 * list a diff_id per layer is refused before any layer is read.
 * @throws INVALID_CONFIG, DIGEST_MISMATCH (at the end of the bad layer)
 */
async function checkedLayers(image: Image): Promise<Layer[]> {
  const layers = await image.layers();
  const diffIds = (await image.configFile()).rootfs.diff_ids;
  if (diffIds.length !== layers.length)
    throw new LadingError(
      ErrorCode.InvalidConfig,
      `the config lists ${String(diffIds.length)} diff_ids for ${String(layers.length)} layers`,
    );
  return layers.map((layer, i) => {
    const diffId = diffIds[i];
    if (diffId === undefined) throw new LadingError(ErrorCode.InvalidConfig, 'no diff_id');
    return {
      ...layer,
      mediaType: layer.mediaType,
      digest: () => layer.digest(),
      size: () => layer.size(),
      diffId: () => layer.diffId(),
      compressed: () => layer.compressed(),
      uncompressed: () => {
        const check = new VerifyingStream({ digest: diffId }, `diffId of layer ${String(i + 1)}`, {
          diffId: true,
        });
        const source = layer.uncompressed();
        source.once('error', (err) => check.destroy(err));
        check.once('close', () => source.destroy());
        return source.pipe(check);
      },
    };
  });
}

/** exportFs is `lading export LOCATION FILE|-`. */
export const exportFs: Command = {
  positionals: 2,
  usage: exportUsage,
  options: { platform: { type: 'string' } },
  run: async (ctx) => {
    const srcText = positional(ctx, 0, 'LOCATION', exportUsage);
    const file = positional(ctx, 1, 'FILE (or - for stdout)', exportUsage);
    const options = await remoteOptions(ctx);
    const image = await pickImage(
      (await openSource(srcText, options, ctx.signal)).content,
      str(ctx, 'platform'),
    );
    await writeOutput(ctx, flatten(await checkedLayers(image), { signal: ctx.signal }), file);
    if (file !== '-') ctx.out.result({ source: srcText, file }, file);
  },
};

// -------------------------------------------------------------- validate

const validateUsage = `Usage: lading validate [--fast] LOCATION

Reads everything LOCATION points at (index, manifests, configs, layers) and
checks every digest, size and media type, children included, and that each
image layer decompresses to the tar its config's diff_id names. Exits 1
naming the first bad descriptor.

Options:
  --fast   check digests and sizes only: layers are not decompressed`;

type Problem = { readonly path: string; readonly digest: string; readonly error: string };

interface ValidateCounts {
  blobs: number;
  manifests: number;
  /** diffIds is how many layers were decompressed and matched their diff_id. */
  diffIds: number;
  /** unchecked is how many zstd layers were only drained (a Node without zstd). */
  unchecked: number;
}

async function drain(stream: Readable, signal: AbortSignal): Promise<void> {
  // Reading to the end is what makes the stream verify digest and size.
  await pipeline(stream, discardSink(), { signal });
}

/**
 * tarLayerKind says how an image layer of media type `mt` reaches its tar,
 * or undefined for a type whose tar lading cannot reach (not a layer, or a
 * compression it does not read), whose diff_id is then not checked.
 */
function tarLayerKind(mt: string): LayerCompression | undefined {
  if (!isLayerMediaType(mt)) return undefined;
  const kind = layerCompressionOf(mt);
  if (kind !== 'none') return kind;
  return mt.endsWith('.tar') ? 'none' : undefined;
}

/**
 * checkLayer reads a layer once: the fetched stream checks its digest and
 * size at its end, and its tar (decompressed) is hashed and compared with
 * `diffId`. A zstd layer on a Node without zstd is only drained, and says
 * so in `counts.unchecked`.
 */
async function checkLayer(
  target: Target,
  desc: Descriptor,
  diffId: string,
  signal: AbortSignal,
  counts: ValidateCounts,
): Promise<void> {
  const kind = tarLayerKind(desc.mediaType);
  let decompress: Transform | undefined;
  try {
    if (kind === 'gzip' || kind === 'zstd') decompress = createDecompressor(kind);
  } catch (err) {
    if (!isLadingError(err, ErrorCode.Unsupported)) throw err;
    await drain(await target.fetch(desc, { signal }), signal);
    counts.unchecked++;
    return;
  }
  const tar = new HashingStream(diffId.startsWith('sha512:') ? 'sha512' : 'sha256');
  const fetched = await target.fetch(desc, { signal });
  try {
    if (decompress === undefined) await pipeline(fetched, tar, discardSink(), { signal });
    else await pipeline(fetched, decompress, tar, discardSink(), { signal });
  } catch (err) {
    const typed = decompressionError(err, 'the layer');
    if (typed === err || signal.aborted) throw err;
    // A blob damaged in storage fails to decompress before its end, where
    // its digest is checked: read it again to its end, and report that.
    await drain(await target.fetch(desc, { signal }), signal);
    throw typed;
  }
  if (tar.digest !== diffId)
    throw new DigestMismatchError(diffId, tar.digest ?? '', 'diff_id', { diffId: true });
  counts.diffIds++;
}

async function validateNode(
  target: Target,
  desc: Descriptor,
  path: string,
  signal: AbortSignal,
  problems: Problem[],
  counts: ValidateCounts,
  fast: boolean,
): Promise<void> {
  const fail = (err: unknown, where = path, digest = desc.digest): void => {
    problems.push({
      path: where,
      digest,
      error: err instanceof Error ? err.message : String(err),
    });
  };
  try {
    if (!isManifestMediaType(desc.mediaType)) {
      await drain(await target.fetch(desc, { signal }), signal);
      counts.blobs++;
      return;
    }
    const bytes = await fetchVerified(target, desc, { signal });
    counts.manifests++;
    const own = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown })
      .mediaType;
    if (own !== undefined && own !== desc.mediaType)
      throw new LadingError(
        ErrorCode.InvalidManifest,
        `descriptor says ${desc.mediaType} but the manifest says ${JSON.stringify(own)}`,
      );
    const parsed = parseManifest(Buffer.from(bytes), desc.mediaType);
    if (parsed.kind === 'index') {
      for (const [i, child] of parsed.manifest.manifests.entries()) {
        if (!isManifestMediaType(child.mediaType))
          fail(
            new LadingError(
              ErrorCode.UnsupportedMediaType,
              `${child.mediaType} is not a manifest type`,
            ),
            `${path}.manifests[${i}]`,
          );
        else
          await validateNode(
            target,
            child,
            `${path}.manifests[${i}]`,
            signal,
            problems,
            counts,
            fast,
          );
      }
      return;
    }
    const m = parsed.manifest;
    // An image config is read once, whole (verified, and capped as a
    // manifest is); any other config, such as an artifact's, is drained.
    let diffIds: readonly string[] | undefined;
    if (/(?:image\.config\.v1|container\.image\.v1)\+json$/.test(m.config.mediaType)) {
      try {
        const cfg = parseConfigFile(await fetchVerified(target, m.config, { signal }));
        counts.blobs++;
        if (cfg.rootfs.diff_ids.length === m.layers.length) diffIds = cfg.rootfs.diff_ids;
        else
          fail(
            new LadingError(
              ErrorCode.InvalidConfig,
              `config lists ${cfg.rootfs.diff_ids.length} diff_ids for ${m.layers.length} layers`,
            ),
            `${path}.config`,
          );
      } catch (err) {
        if (signal.aborted) throw err;
        fail(err, `${path}.config`);
      }
    } else {
      await validateNode(target, m.config, `${path}.config`, signal, problems, counts, fast);
    }
    for (const [i, layer] of m.layers.entries()) {
      const diffId = diffIds?.[i];
      const where = `${path}.layers[${i}]`;
      if (fast || diffId === undefined || tarLayerKind(layer.mediaType) === undefined) {
        await validateNode(target, layer, where, signal, problems, counts, fast);
        continue;
      }
      try {
        await checkLayer(target, layer, diffId, signal, counts);
        counts.blobs++;
      } catch (err) {
        if (signal.aborted) throw err;
        fail(err, where, layer.digest);
      }
    }
  } catch (err) {
    if (signal.aborted) throw err;
    fail(err);
  }
}

/** validate is `lading validate LOCATION`. */
export const validate: Command = {
  positionals: 1,
  usage: validateUsage,
  options: { fast: { type: 'boolean' } },
  run: async (ctx) => {
    const start = now();
    const text = positional(ctx, 0, 'LOCATION', validateUsage);
    const fast = flag(ctx, 'fast');
    const opened = openTarget(parseLocation(text), await remoteOptions(ctx), 'read');
    const root = await opened.target.resolve(opened.readRef, { signal: ctx.signal });
    const problems: Problem[] = [];
    const counts: ValidateCounts = { blobs: 0, manifests: 0, diffIds: 0, unchecked: 0 };
    await validateNode(opened.target, root, '$', ctx.signal, problems, counts, fast);
    if (counts.unchecked > 0)
      ctx.out.info(
        `${counts.unchecked} zstd layer(s): digests checked, diff_ids not (zstd needs Node ≥ 22.15; this is ${process.version})`,
      );
    const first = problems[0];
    if (first !== undefined) {
      for (const p of problems.slice(1))
        ctx.out.info(`also bad: ${p.path} ${p.digest}: ${p.error}`);
      // --json: every problem on stdout, the error (the first) on stderr.
      if (ctx.out.mode === 'json')
        ctx.out.result({ location: text, digest: root.digest, valid: false, problems }, '');
      throw new LadingError(
        ErrorCode.InvalidManifest,
        `${problems.length} bad descriptor(s); ${first.path} ${first.digest}: ${first.error}`,
      );
    }
    // --quiet: the exit code is the answer.
    ctx.out.result(
      { location: text, digest: root.digest, valid: true, ...counts, seconds: seconds(start) },
      flag(ctx, 'quiet')
        ? ''
        : `${text}: valid (${counts.manifests} manifests, ${counts.blobs} blobs, ${counts.diffIds} diff_ids, ${seconds(start)} s)`,
    );
  },
};
