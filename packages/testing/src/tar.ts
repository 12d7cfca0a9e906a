/** TarFile is one regular file for {@link filesTar}: its name, bytes and mode (default 0644). */
export interface TarFile {
  readonly name: string;
  readonly body: Uint8Array;
  readonly mode?: number;
}

/**
 * filesTar builds a ustar archive of regular files by hand, modes (setuid
 * bits included) as given, so tests get tar bytes without a tar library.
 */
export function filesTar(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const { name, body, mode } of files) {
    const header = Buffer.alloc(512);
    header.write(name, 0);
    header.write(`${(mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    const content = Buffer.alloc(Math.ceil(body.length / 512) * 512);
    content.set(body);
    parts.push(header, content);
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

/** singleFileTar builds a ustar archive holding one regular file (mode 0644). */
export function singleFileTar(name: string, body: Uint8Array): Buffer {
  return filesTar([{ name, body }]);
}
