// The `@lading/registry/s3` entry point: S3 storage lives apart from the
// main entry so that registries without S3 never load the AWS SDK.
export { s3Storage } from './storage/s3.js';
export type { S3Credentials, S3Storage, S3StorageOptions } from './storage/s3.js';
export type { S3UploadStore, SweepOptions } from './storage/s3-uploads.js';
