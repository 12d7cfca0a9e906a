import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ErrorCode, LadingError } from '@lading/core';

/** HeadResult is what a HEAD tells about an object. */
export interface HeadResult {
  readonly size: number;
  readonly metadata: Record<string, string>;
}

/** ListPage is one page of a delimited listing (keys relative to the listed prefix). */
export interface ListPage {
  readonly keys: string[];
  readonly prefixes: string[];
}

/** isMissing tells whether an S3 error means "no such object / upload". */
export function isMissing(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  return (
    err.name === 'NoSuchKey' ||
    err.name === 'NotFound' ||
    err.name === 'NoSuchUpload' ||
    err.$metadata.httpStatusCode === 404
  );
}

/**
 * Bucket is the few object operations the S3 storage needs, on one bucket
 * under one key prefix, with S3 errors turned into lading errors (code IO,
 * or undefined for a missing object). Every call takes an AbortSignal.
 */
export class Bucket {
  readonly client: S3Client;
  readonly name: string;
  readonly #prefix: string;

  constructor(client: S3Client, name: string, prefix: string) {
    this.client = client;
    this.name = name;
    this.#prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  }

  /** key maps a storage path to the object key. */
  key(path: string): string {
    return this.#prefix + path;
  }

  /** fail wraps an S3 error (never with credentials: the SDK's messages carry none). */
  fail(op: string, path: string, err: unknown): LadingError {
    if (err instanceof LadingError) return err;
    if (err instanceof Error && err.name === 'AbortError') {
      return new LadingError(ErrorCode.Aborted, `s3 ${op} ${path}: aborted`, { cause: err });
    }
    const name = err instanceof Error ? err.name : 'error';
    const message = err instanceof Error ? err.message : String(err);
    return new LadingError(ErrorCode.Io, `s3 ${op} ${path} failed: ${name}: ${message}`, {
      cause: err,
    });
  }

  async head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    try {
      const r = await this.client.send(
        new HeadObjectCommand({ Bucket: this.name, Key: this.key(path) }),
        { abortSignal: signal },
      );
      return { size: r.ContentLength ?? 0, metadata: r.Metadata ?? {} };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fail('HEAD', path, err);
    }
  }

  /** stream reads an object (or an inclusive byte range of it); undefined when absent. */
  async stream(
    path: string,
    range?: { start: number; end?: number | undefined },
    signal?: AbortSignal,
  ): Promise<Readable | undefined> {
    return (await this.#get(path, range, signal))?.body;
  }

  async #get(
    path: string,
    range: { start: number; end?: number | undefined } | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ body: Readable; metadata: Record<string, string> } | undefined> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({
          Bucket: this.name,
          Key: this.key(path),
          Range: range === undefined ? undefined : `bytes=${range.start}-${range.end ?? ''}`,
        }),
        { abortSignal: signal },
      );
      return { body: r.Body as Readable, metadata: r.Metadata ?? {} };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fail('GET', path, err);
    }
  }

  /** object reads a small object whole with its metadata, refusing more than `cap` bytes. */
  async object(
    path: string,
    cap: number,
    signal?: AbortSignal,
  ): Promise<{ bytes: Buffer; metadata: Record<string, string> } | undefined> {
    const got = await this.#get(path, undefined, signal);
    if (got === undefined) return undefined;
    return { bytes: await this.#drain(path, got.body, cap), metadata: got.metadata };
  }

  /** bytes reads a small object whole, refusing more than `cap` bytes; undefined when absent. */
  async bytes(
    path: string,
    cap: number,
    signal?: AbortSignal,
    range?: { start: number; end: number },
  ): Promise<Buffer | undefined> {
    const body = await this.stream(path, range, signal);
    return body === undefined ? undefined : this.#drain(path, body, cap);
  }

  async #drain(path: string, body: Readable, cap: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > cap)
          throw new LadingError(ErrorCode.Io, `s3 object ${path} exceeds ${cap} bytes`);
        parts.push(chunk);
      }
    } catch (err) {
      body.destroy();
      throw this.fail('GET', path, err);
    }
    return Buffer.concat(parts);
  }

  async put(
    path: string,
    body: Buffer | string,
    metadata?: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.name,
          Key: this.key(path),
          Body: body,
          ContentLength: Buffer.byteLength(body),
          Metadata: metadata,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw this.fail('PUT', path, err);
    }
  }

  /** copy copies an object of at most 5 GiB server-side. */
  async copy(from: string, to: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.name,
          Key: this.key(to),
          CopySource: this.copySource(from),
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw this.fail('COPY', from, err);
    }
  }

  /** copySource is the `x-amz-copy-source` value of a path. */
  copySource(path: string): string {
    return `${this.name}/${this.key(path).split('/').map(encodeURIComponent).join('/')}`;
  }

  /** delete removes an object; it does not say whether it existed (S3 does not). */
  async delete(path: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: this.key(path) }), {
        abortSignal: signal,
      });
    } catch (err) {
      if (isMissing(err)) return;
      throw this.fail('DELETE', path, err);
    }
  }

  /**
   * list pages through the keys under `dir` (a path ending in `/`); with
   * `delimited`, sub-"directories" come back as prefixes instead of keys.
   */
  async *list(dir: string, delimited: boolean, signal?: AbortSignal): AsyncGenerator<ListPage> {
    const base = this.key(dir);
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.name,
            Prefix: base,
            Delimiter: delimited ? '/' : undefined,
            ContinuationToken: token,
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw this.fail('LIST', dir, err);
      }
      yield {
        keys: (r.Contents ?? []).flatMap((o) =>
          o.Key === undefined ? [] : [o.Key.slice(base.length)],
        ),
        prefixes: (r.CommonPrefixes ?? []).flatMap((p) =>
          p.Prefix === undefined ? [] : [p.Prefix.slice(base.length)],
        ),
      };
      token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** any tells whether at least one key starts with `path`. */
  async any(path: string, signal?: AbortSignal): Promise<boolean> {
    try {
      const r = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.name, Prefix: this.key(path), MaxKeys: 1 }),
        { abortSignal: signal },
      );
      return (r.KeyCount ?? r.Contents?.length ?? 0) > 0;
    } catch (err) {
      throw this.fail('LIST', path, err);
    }
  }

  /** presign answers a GET URL for an object, valid `expiresIn` seconds, needing no other credentials. */
  async presign(path: string, expiresIn: number): Promise<string> {
    try {
      return await getSignedUrl(
        this.client,
        new GetObjectCommand({ Bucket: this.name, Key: this.key(path) }),
        { expiresIn },
      );
    } catch (err) {
      throw this.fail('PRESIGN', path, err);
    }
  }
}
