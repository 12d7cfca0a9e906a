import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { isMissing, type Bucket } from './s3-bucket.js';

const fiveGiB = 5 * 1024 ** 3;

/** Part is a finished part: `[etag, size]`. */
export type Part = [string, number];

/** PendingUpload is a multipart upload found by {@link Multipart.list}. */
export interface PendingUpload {
  /** path is the key the upload completes into, relative to the prefix. */
  readonly path: string;
  readonly uploadId: string;
  readonly initiated: Date | undefined;
}

/** evenRanges splits `size` bytes into the fewest equal ranges of at most `max` bytes. */
function evenRanges(size: number, max: number): { start: number; end: number }[] {
  const n = Math.max(1, Math.ceil(size / max));
  const each = Math.ceil(size / n);
  const out: { start: number; end: number }[] = [];
  for (let start = 0; start < size; start += each) {
    out.push({ start, end: Math.min(size, start + each) - 1 });
  }
  return out;
}

/**
 * Multipart is the S3 multipart-upload calls the upload store needs, on
 * paths of one {@link Bucket}, with errors mapped like the bucket's.
 */
export class Multipart {
  readonly #bucket: Bucket;
  readonly #maxCopy: number;

  /** maxCopy is the largest object copied with one CopyObject (at most S3's 5 GiB). */
  constructor(bucket: Bucket, maxCopy: number) {
    this.#bucket = bucket;
    this.#maxCopy = Math.min(maxCopy, fiveGiB);
  }

  async create(path: string, signal?: AbortSignal): Promise<string> {
    try {
      const r = await this.#bucket.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.#bucket.name,
          Key: this.#bucket.key(path),
        }),
        { abortSignal: signal },
      );
      if (r.UploadId === undefined) throw new Error('no UploadId in the answer');
      return r.UploadId;
    } catch (err) {
      throw this.#bucket.fail('CREATE-MULTIPART', path, err);
    }
  }

  async uploadPart(
    path: string,
    uploadId: string,
    number: number,
    body: Buffer,
    signal?: AbortSignal,
  ): Promise<string> {
    try {
      const r = await this.#bucket.client.send(
        new UploadPartCommand({
          Bucket: this.#bucket.name,
          Key: this.#bucket.key(path),
          UploadId: uploadId,
          PartNumber: number,
          Body: body,
          ContentLength: body.length,
        }),
        { abortSignal: signal },
      );
      if (r.ETag === undefined) throw new Error('no ETag in the answer');
      return r.ETag;
    } catch (err) {
      throw this.#bucket.fail('UPLOAD-PART', path, err);
    }
  }

  /** copyParts fills upload `uploadId` of `to` with `size` bytes of `from`, server-side, from part 1. */
  async copyParts(
    from: string,
    to: string,
    uploadId: string,
    size: number,
    signal?: AbortSignal,
  ): Promise<Part[]> {
    const parts: Part[] = [];
    for (const r of evenRanges(size, this.#maxCopy)) {
      try {
        const out = await this.#bucket.client.send(
          new UploadPartCopyCommand({
            Bucket: this.#bucket.name,
            Key: this.#bucket.key(to),
            UploadId: uploadId,
            PartNumber: parts.length + 1,
            CopySource: this.#bucket.copySource(from),
            CopySourceRange: `bytes=${r.start}-${r.end}`,
          }),
          { abortSignal: signal },
        );
        const etag = out.CopyPartResult?.ETag;
        if (etag === undefined) throw new Error('no ETag in the answer');
        parts.push([etag, r.end - r.start + 1]);
      } catch (err) {
        throw this.#bucket.fail('UPLOAD-PART-COPY', from, err);
      }
    }
    return parts;
  }

  /** complete turns the upload into its object; it rejects with the raw S3 error (see isMissing). */
  async complete(
    path: string,
    uploadId: string,
    parts: readonly Part[],
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#bucket.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.#bucket.name,
        Key: this.#bucket.key(path),
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map(([ETag], i) => ({ ETag, PartNumber: i + 1 })) },
      }),
      { abortSignal: signal },
    );
  }

  /** abort drops an upload and its parts; an unknown upload is not an error. */
  async abort(path: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#bucket.client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.#bucket.name,
          Key: this.#bucket.key(path),
          UploadId: uploadId,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      if (!isMissing(err)) throw this.#bucket.fail('ABORT-MULTIPART', path, err);
    }
  }

  /** copy copies an object server-side: one CopyObject up to maxCopy, UploadPartCopy parts above. */
  async copy(from: string, to: string, size: number, signal?: AbortSignal): Promise<void> {
    if (size <= this.#maxCopy) {
      await this.#bucket.copy(from, to, signal);
      return;
    }
    const uploadId = await this.create(to, signal);
    try {
      const parts = await this.copyParts(from, to, uploadId, size, signal);
      await this.complete(to, uploadId, parts, signal);
    } catch (err) {
      await this.abort(to, uploadId).catch(() => undefined);
      throw this.#bucket.fail('COPY', from, err);
    }
  }

  /** list pages through the multipart uploads whose keys start with `dir`. */
  async *list(dir: string, signal?: AbortSignal): AsyncGenerator<PendingUpload> {
    const root = this.#bucket.key('').length;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    do {
      let r;
      try {
        r = await this.#bucket.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.#bucket.name,
            Prefix: this.#bucket.key(dir),
            KeyMarker: keyMarker,
            UploadIdMarker: idMarker,
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw this.#bucket.fail('LIST-MULTIPART', dir, err);
      }
      for (const u of r.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        yield { path: u.Key.slice(root), uploadId: u.UploadId, initiated: u.Initiated };
      }
      keyMarker = r.IsTruncated === true ? r.NextKeyMarker : undefined;
      idMarker = r.NextUploadIdMarker;
    } while (keyMarker !== undefined);
  }
}
