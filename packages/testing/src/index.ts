export { startDistributionRegistry, freePort, htpasswdEntry } from './distribution-registry.js';
export type { DistributionRegistry, DistributionRegistryOptions } from './distribution-registry.js';
export { recordingProxy } from './recording-proxy.js';
export type { RecordedRequest, RecordingProxy } from './recording-proxy.js';
export { singleFileTar } from './tar.js';
export { roundRobinProxy } from './round-robin-proxy.js';
export type { RoundRobinProxy } from './round-robin-proxy.js';
export { startS3, s3ToolsDir } from './s3-server.js';
export type { S3Server } from './s3-server.js';
