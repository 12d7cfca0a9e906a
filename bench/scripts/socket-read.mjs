// Reads one blob over one plain-HTTP connection and prints, as JSON, the
// time from connecting to the last byte and the minor page faults of the
// process meanwhile: how fast a Node process can take bytes off a socket,
// by the way it reads them.
//
//   node bench/scripts/socket-read.mjs MODE http://HOST/v2/REPO/blobs/DIGEST
//
// MODE:
//   data    node:net, 'data' events: Node reads into a fresh 64 KiB buffer
//           each time (every HTTP client in Node reads this way)
//   onread  node:net with `onread`: every read lands in one reused 1 MiB
//           buffer (no client hands its body out like this: a reader of
//           the stream may keep a chunk, so the memory cannot be reused)
//   undici  undici's request(), the body read to its end (lading's client)
// The raw modes send the GET by hand and count the response's bytes,
// headers included; undici counts the body.
import net from 'node:net';
import { createRequire } from 'node:module';

const [mode, target] = process.argv.slice(2);
if (target === undefined) throw new Error('usage: socket-read.mjs data|onread|undici URL');
const url = new URL(target);
const faults = () => process.resourceUsage().minorPageFault;

async function raw(reuse) {
  let bytes = 0;
  const options = { host: url.hostname, port: Number(url.port || 80) };
  if (reuse)
    options.onread = { buffer: Buffer.allocUnsafe(1 << 20), callback: (n) => void (bytes += n) };
  const socket = net.connect(options);
  if (!reuse) socket.on('data', (c) => void (bytes += c.length));
  socket.write(
    `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`,
  );
  await new Promise((resolve, reject) => {
    socket.on('close', resolve);
    socket.on('error', reject);
  });
  return bytes;
}

// Loaded before the clock starts.
const { request, Agent } = createRequire(import.meta.url)('undici');

async function viaUndici() {
  const res = await request(url, { dispatcher: new Agent() });
  if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode}`);
  let bytes = 0;
  for await (const c of res.body) bytes += c.length;
  return bytes;
}

const read = { data: () => raw(false), onread: () => raw(true), undici: viaUndici }[mode];
if (read === undefined) throw new Error(`unknown mode ${mode}`);
const f0 = faults();
const t0 = performance.now();
const bytes = await read();
const ms = performance.now() - t0;
console.log(JSON.stringify({ mode, ms, bytes, minorFaults: faults() - f0 }));
