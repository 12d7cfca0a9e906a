// Runs the official OCI distribution-spec conformance suite against
// `lading serve` in every configuration CI checks, and fails naming each
// failed spec. Called by scripts/conformance.sh, which starts the S3 store
// (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION in the environment).
//
//   node scripts/conformance.mjs [TARGET...]   (default: all targets)
//
// LADING_CONFORMANCE_BIN overrides the suite binary (default:
// <repo>/../shared/tools/oci-conformance/conformance.test).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const repo = fileURLToPath(new URL('..', import.meta.url));
const suite =
  process.env.LADING_CONFORMANCE_BIN ??
  join(repo, '..', 'shared', 'tools', 'oci-conformance', 'conformance.test');
const lading = join(repo, 'packages', 'cli', 'bin', 'lading.js');
const { htpasswdEntry, roundRobinProxy } = await import(
  join(repo, 'packages', 'testing', 'dist', 'index.js')
);
const work = mkdtempSync(join(tmpdir(), 'lading-conformance-'));
const children = [];

const s3 = {
  endpoint: process.env.S3_ENDPOINT,
  accessKey: process.env.S3_ACCESS_KEY,
  secretKey: process.env.S3_SECRET_KEY,
  region: process.env.S3_REGION ?? 'us-east-1',
};
const bucket = 'lading-conformance';
const user = 'conformance';
const password = 'conformance-password';
const htpasswd = join(work, 'htpasswd');
writeFileSync(htpasswd, `${htpasswdEntry(user, password)}\n`);

const storages = {
  memory: () => [],
  filesystem: (name) => ['--storage', join(work, `fs-${name}`)],
  s3: (name) => [
    '--storage',
    `s3://${bucket}/${name}`,
    '--s3-endpoint',
    s3.endpoint,
    '--s3-path-style',
  ],
};
const targets = [
  { name: 'memory', storage: 'memory' },
  { name: 'memory+token', storage: 'memory', token: true },
  { name: 'filesystem', storage: 'filesystem' },
  { name: 'filesystem+token', storage: 'filesystem', token: true },
  { name: 's3', storage: 's3' },
  { name: 's3+token', storage: 's3', token: true },
  { name: 's3-replicas', storage: 's3', replicas: 2 },
];

/** serve starts `lading serve` and resolves with its URL. */
function serve(args) {
  // --allow-delete: the suite's content-management specs delete manifests,
  // tags and blobs, which `lading serve` refuses by default.
  const child = spawn(
    process.execPath,
    [lading, 'serve', '--port', '0', '--allow-delete', ...args],
    {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: s3.accessKey ?? '',
        AWS_SECRET_ACCESS_KEY: s3.secretKey ?? '',
        AWS_REGION: s3.region,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`lading serve exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const url = /https?:\/\/[^\s]+/.exec(line)?.[0];
      if (url !== undefined) resolve(url);
    });
  });
}

async function createBucket() {
  const { S3Client, CreateBucketCommand } = await import(
    join(
      repo,
      'packages',
      'registry',
      'node_modules',
      '@aws-sdk',
      'client-s3',
      'dist-cjs',
      'index.js',
    )
  );
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
}

/** runSuite runs the conformance binary against `url` and answers its junit verdicts. */
async function runSuite(target, url) {
  const dir = mkdtempSync(join(work, `report-${target.name}-`));
  const env = {
    ...process.env,
    OCI_ROOT_URL: url,
    OCI_NAMESPACE: 'conformance/a',
    OCI_CROSSMOUNT_NAMESPACE: 'conformance/b',
    OCI_AUTOMATIC_CROSSMOUNT: '0',
    OCI_TEST_PULL: '1',
    OCI_TEST_PUSH: '1',
    OCI_TEST_CONTENT_DISCOVERY: '1',
    OCI_TEST_CONTENT_MANAGEMENT: '1',
    OCI_HIDE_SKIPPED_WORKFLOWS: '0',
    OCI_REPORT_DIR: dir,
  };
  if (target.token) Object.assign(env, { OCI_USERNAME: user, OCI_PASSWORD: password });
  const log = join(dir, 'output.txt');
  const code = await new Promise((resolve) => {
    const out = [];
    const child = spawn(suite, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => out.push(b));
    child.on('exit', (c) => {
      writeFileSync(log, Buffer.concat(out));
      resolve(c);
    });
  });
  const junitPath = join(dir, 'junit.xml');
  if (!existsSync(junitPath)) {
    return {
      passed: 0,
      failed: [{ name: `(no junit.xml, exit ${code}; see ${log})`, message: '' }],
      skipped: 0,
    };
  }
  const xml = readFileSync(junitPath, 'utf8');
  const cases = [
    ...xml.matchAll(/<testcase\s+name="([^"]*)"[^>]*status="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g),
  ];
  const decode = (s) =>
    s
      .replace(/&#xA;/g, ' ')
      .replace(/&quot;/g, '"')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, '&');
  const failed = cases
    .filter(([, , status]) => status !== 'passed' && status !== 'skipped')
    .map(([, name, , body]) => ({
      name: decode(name),
      message: decode(/<failure\s+message="([^"]*)"/.exec(body)?.[1] ?? '').slice(0, 300),
    }));
  const passed = cases.filter(([, , s]) => s === 'passed').length;
  const skipped = cases.filter(([, , s]) => s === 'skipped').length;
  if (code !== 0 && failed.length === 0)
    failed.push({ name: `(suite exited ${code}; see ${log})`, message: '' });
  return { passed, failed, skipped };
}

const wanted = process.argv.slice(2);
const selected = wanted.length === 0 ? targets : targets.filter((t) => wanted.includes(t.name));
let bad = 0;
try {
  if (!existsSync(suite))
    throw new Error(`conformance suite not found at ${suite} (set LADING_CONFORMANCE_BIN)`);
  if (selected.some((t) => t.storage === 's3')) {
    if (s3.endpoint === undefined)
      throw new Error('S3_ENDPOINT is not set: run through scripts/conformance.sh');
    await createBucket();
  }
  for (const target of selected) {
    const args = [...storages[target.storage](target.name)];
    if (target.token) args.push('--htpasswd', htpasswd, '--token');
    const started = Date.now();
    let url;
    let proxy;
    if (target.replicas !== undefined) {
      const urls = await Promise.all(Array.from({ length: target.replicas }, () => serve(args)));
      proxy = await roundRobinProxy(urls);
      url = proxy.url;
    } else {
      url = await serve(args);
    }
    const result = await runSuite(target, url);
    const spread = proxy === undefined ? '' : ` (requests per replica: ${proxy.counts.join('/')})`;
    await proxy?.close();
    for (const c of children.splice(0)) c.kill('SIGTERM');
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    console.log(
      `conformance ${target.name}: ${result.passed} passed, ${result.failed.length} failed, ${result.skipped} skipped in ${seconds} s${spread}`,
    );
    for (const f of result.failed)
      console.log(
        `  FAIL [${target.name}] ${f.name}${f.message === '' ? '' : `\n       ${f.message}`}`,
      );
    if (result.failed.length > 0 || result.passed === 0) bad++;
  }
} catch (err) {
  console.error(`conformance: ${err instanceof Error ? err.message : String(err)}`);
  bad++;
} finally {
  for (const c of children.splice(0)) c.kill('SIGTERM');
  if (bad === 0) rmSync(work, { recursive: true, force: true });
  else console.log(`conformance: reports kept in ${work}`);
}
process.exit(bad === 0 ? 0 : 1);
