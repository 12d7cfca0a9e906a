import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { startS3, type S3Server } from '@lading/testing';
import { s3Storage, type S3Storage, type S3StorageOptions } from '../src/s3.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** S3Fixture is a started S3 store with one bucket. */
export interface S3Fixture {
  readonly server: S3Server;
  readonly bucket: string;
  readonly client: S3Client;
  /** storage builds an s3Storage on the bucket (its own S3 client). */
  storage(prefix: string, options?: Partial<S3StorageOptions>): S3Storage;
  stop(): Promise<void>;
}

/** startS3Fixture starts s3-up.sh (failing, not skipping, when it cannot) and creates a bucket. */
export async function startS3Fixture(bucket = 'lading-test'): Promise<S3Fixture> {
  const server = await startS3();
  const credentials = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const made: S3Storage[] = [];
  return {
    server,
    bucket,
    client,
    storage: (prefix, options = {}) => {
      const s = s3Storage({
        bucket,
        prefix,
        endpoint: server.endpoint,
        region: server.region,
        forcePathStyle: true,
        credentials,
        partSize: 5 * 1024 * 1024,
        ...options,
      });
      made.push(s);
      return s;
    },
    stop: async () => {
      for (const s of made) s.close();
      client.destroy();
      await server.stop();
    },
  };
}

/** Replica is a registry over S3 storage in a child process. */
export interface Replica {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** startReplica runs test/fixtures/s3-replica.mjs with `env` and waits for its URL. */
export async function startReplica(env: Record<string, string>): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [new URL('./fixtures/s3-replica.mjs', import.meta.url).pathname],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => {
      reject(new Error(`replica exited with ${String(code)} before listening`));
    });
    lines.once('line', (line) => {
      resolve((JSON.parse(line) as { url: string }).url);
    });
  });
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
