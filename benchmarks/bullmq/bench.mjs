// BullMQ side of the skiplock benchmarks: `node bench.mjs BACKEND CONNECTION COMMAND ...`.
// BACKEND is "redis" (CONNECTION: redis://host:port/db) or "postgres" (CONNECTION: a libpq URL).
// Commands print one JSON line: setup | reset | count | batch N SIZE | single N |
// drain CONCURRENCY | latency RATE N CONCURRENCY. Configured as BullMQ's docs recommend for
// throughput: addBulk for batches, a Worker with a high concurrency for no-op async jobs.
import { performance } from 'node:perf_hooks';
import { latency, print, recorder, stopped } from '../node_peer.mjs';
import { Queue, Worker, createPostgresBackend } from 'bullmq';

const [backend, conn, command, ...rest] = process.argv.slice(2);
const QUEUE = 'bench';

function connection() {
  if (backend === 'redis') {
    const url = new URL(conn);
    return [{ connection: { host: url.hostname, port: Number(url.port || 6379), db: Number(url.pathname.slice(1) || 0), maxRetriesPerRequest: null } }];
  }
  // migrate only in `setup`: later commands find the schema in place.
  return [{ connection: { connectionString: conn, migrate: command === 'setup' } }, createPostgresBackend];
}

function queue() {
  const [opts, factory] = connection();
  return factory ? new Queue(QUEUE, opts, factory) : new Queue(QUEUE, opts);
}

function worker(processor, concurrency) {
  const [opts, factory] = connection();
  const options = { ...opts, concurrency, autorun: true };
  return factory ? new Worker(QUEUE, processor, options, factory) : new Worker(QUEUE, processor, options);
}


async function pending(q) {
  const counts = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused');
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

async function main() {
  if (command === 'setup' || command === 'reset' || command === 'count') {
    const q = queue();
    await q.waitUntilReady();
    if (command === 'reset') await q.obliterate({ force: true });
    const left = command === 'count' ? await pending(q) : 0;
    await q.close();
    print({ left });
  } else if (command === 'batch') {
    const [n, size] = rest.map(Number);
    const q = queue();
    await q.waitUntilReady();
    const start = performance.now();
    for (let s = 0; s < n; s += size) {
      const jobs = [];
      for (let i = s; i < Math.min(n, s + size); i++) jobs.push({ name: 'noop', data: { i } });
      await q.addBulk(jobs);
    }
    const seconds = (performance.now() - start) / 1000;
    await q.close();
    print({ seconds });
  } else if (command === 'single') {
    const n = Number(rest[0]);
    const q = queue();
    await q.waitUntilReady();
    const start = performance.now();
    for (let i = 0; i < n; i++) await q.add('noop', { i });
    const seconds = (performance.now() - start) / 1000;
    await q.close();
    print({ seconds });
  } else if (command === 'drain') {
    // Run until the queue is empty (several processes may share it), then report.
    const concurrency = Number(rest[0]);
    const q = queue();
    await q.waitUntilReady();
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    let done = 0;
    const w = worker(async () => { done++; }, concurrency);
    await new Promise((resolve) => {
      const check = async () => ((await pending(q)) === 0 ? resolve() : setTimeout(check, 20));
      w.on('drained', check);
      setTimeout(check, 200);
    });
    await w.close();
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    await q.close();
    print({ seconds, done, cpu_seconds: (cpu.user + cpu.system) / 1e6, max_rss_mib: process.resourceUsage().maxRSS / 1024 });
  } else if (command === 'consume') {
    // Child of `latency`: report "ready" after the warm-up job, then each job's start time.
    const [n, concurrency] = rest.map(Number);
    const record = recorder(n);
    const w = worker(async (job) => record(job.data.i), concurrency);
    await stopped();
    await w.close();
  } else if (command === 'latency') {
    const [rate, n, concurrency] = rest.map(Number);
    const q = queue();
    await q.waitUntilReady();
    const script = new URL(import.meta.url).pathname;
    const childArgs = [backend, conn, 'consume', String(n), String(concurrency)];
    print(await latency(script, childArgs, rate, n, (i) => q.add('noop', { i })));
    await q.close();
  } else {
    throw new Error(`unknown command ${command}`);
  }
}

// Exit only once stdout is flushed: a piped stdout is written asynchronously, and exiting at once
// would cut a long result line short.
main().then(
  () => process.stdout.write('', () => process.exit(0)),
  (err) => { console.error(err); process.exit(1); },
);
