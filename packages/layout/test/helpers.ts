import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { scratchDir, type ScratchDir } from '@lading/testing';

export const run = promisify(execFile);

/** tarOf builds a real tar archive holding `files`. */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) {
    pack.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** tempDir makes a scratch directory removed by the returned cleanup. */
export function tempDir(): Promise<ScratchDir> {
  return scratchDir('lading-layout-test-');
}

export { OnceLayer, lazyImage } from '@lading/testing';

/** tarNames lists the member names of a tar file as tar-stream reads them. */
export async function tarNames(file: string): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      names.push(entry.header.name);
      entry.resume();
    }
  })();
  await pipeline(createReadStream(file), extract);
  await done;
  return names;
}
