// Check, before doing any work, that a reference can be pushed to: the
// check opens an upload session and cancels it (no probe image is written).
//
//   node examples/push-check/dist/main.js [REF] [USER PASSWORD]
//
// Credentials come from the arguments or, like docker and podman, from
// ~/.docker/config.json, $DOCKER_CONFIG, $REGISTRY_AUTH_FILE, credential
// helpers. Without REF an in-process registry is started on 127.0.0.1.
import { isLadingError } from '@lading/core';
import { createRegistry, memoryStorage } from '@lading/registry';
import { checkPushPermission, type Credentials } from '@lading/remote';

const [refArg, username, password] = process.argv.slice(2);
const registry = refArg === undefined ? createRegistry({ storage: memoryStorage() }) : undefined;
let ref = refArg;
if (registry !== undefined) {
  const { port } = await registry.listen({ host: '127.0.0.1', port: 0 });
  ref = `127.0.0.1:${port}/examples/push-check:latest`;
}
if (ref === undefined) throw new Error('unreachable');
const auth: Credentials | undefined =
  username !== undefined && password !== undefined ? { username, password } : undefined;

const exitCodes: Record<string, number> = { UNAUTHORIZED: 3, DENIED: 4, NOT_FOUND: 5, NETWORK: 6 };
try {
  await checkPushPermission(ref, auth === undefined ? {} : { auth });
  console.log(`ok: you may push to ${ref}`);
} catch (err) {
  const code = isLadingError(err) ? err.code : 'UNKNOWN';
  console.error(
    `cannot push to ${ref}: ${code} (${err instanceof Error ? err.message : String(err)})`,
  );
  process.exitCode = exitCodes[code] ?? 1;
} finally {
  await registry?.close();
}
