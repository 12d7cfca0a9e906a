export { startDistributionRegistry, freePort, htpasswdEntry } from './distribution-registry.js';
export type { DistributionRegistry, DistributionRegistryOptions } from './distribution-registry.js';
export { recordingProxy } from './recording-proxy.js';
export type { RecordedRequest, RecordingProxy } from './recording-proxy.js';
export { singleFileTar, filesTar } from './tar.js';
export type { TarFile } from './tar.js';
