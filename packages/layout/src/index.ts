export { OciLayout, ociLayout, refNameAnnotation } from './oci-layout.js';
export type { OciLayoutOptions, GcResult } from './oci-layout.js';
