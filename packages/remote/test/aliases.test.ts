/* eslint-disable @typescript-eslint/no-deprecated -- these tests check the deprecated names still work */
import { describe, expect, it } from 'vitest';
import { writeImageIndex, writeIndex as coreWriteIndex } from '@lading/core';
import { BlobUpload, RegistryClient, UploadSession } from '../src/index.js';

describe('renamed exports', () => {
  it('keeps the former names working when old code imports them', () => {
    expect(UploadSession).toBe(BlobUpload);
    expect(coreWriteIndex).toBe(writeImageIndex);
    expect('startUpload' in RegistryClient.prototype).toBe(true);
  });
});
