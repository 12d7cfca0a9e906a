/**
 * singleFileTar builds a ustar archive holding one regular file, by hand,
 * so tests get tar bytes without depending on a tar library.
 */
export function singleFileTar(name: string, body: Uint8Array): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write('0000644\0', 100);
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
  return Buffer.concat([header, content, Buffer.alloc(1024)]);
}
