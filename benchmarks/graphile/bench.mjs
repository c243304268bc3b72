// graphile-worker side of the skiplock benchmarks: `node bench.mjs CONNECTION COMMAND ...`.
// CONNECTION is a libpq URL; graphile-worker keeps its own schema (graphile_worker) there.
// Commands print one JSON line: setup | batch N SIZE | single N | drain | latency RATE N;
// `stream` runs a worker until SIGTERM and reports its jobs' starts (benchmarks/long_tx.py).
// Configured as graphile-worker's website/docs/performance.md recommends for throughput:
// concurrentJobs 24, maxPoolSize 25, a local queue of 500, completions and failures flushed
// without a batching delay. `drain` is runOnce() (work until nothing is left, then exit);
// `latency` runs a worker with run() in a child process, as a deployed worker would run.
import { performance } from 'node:perf_hooks';
import { latency, now, print, recorder, stopped } from '../node_peer.mjs';
import graphile from 'graphile-worker';

const { Logger, makeWorkerUtils, run, runOnce } = graphile;
const [conn, command, ...rest] = process.argv.slice(2);

// Quiet: graphile-worker logs to stdout, where our JSON line goes. Errors still reach stderr.
const logger = new Logger(() => (level, message) => {
  if (level === 'error') console.error(message);
});

const preset = {
  worker: {
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};
const options = (taskList) => ({ connectionString: conn, preset, taskList, logger, noHandleSignals: true });


async function utils() {
  return makeWorkerUtils({ connectionString: conn, logger });
}

async function main() {
  if (command === 'setup') {
    const u = await utils();
    await u.migrate();
    await u.release();
    print({});
  } else if (command === 'batch') {
    const [n, size] = rest.map(Number);
    const u = await utils();
    const start = performance.now();
    for (let s = 0; s < n; s += size) {
      const jobs = [];
      for (let i = s; i < Math.min(n, s + size); i++) jobs.push({ identifier: 'noop', payload: { i } });
      await u.addJobs(jobs);
    }
    const seconds = (performance.now() - start) / 1000;
    await u.release();
    print({ seconds });
  } else if (command === 'single') {
    const n = Number(rest[0]);
    const u = await utils();
    const start = performance.now();
    for (let i = 0; i < n; i++) await u.addJob('noop', { i });
    const seconds = (performance.now() - start) / 1000;
    await u.release();
    print({ seconds });
  } else if (command === 'drain') {
    // runOnce returns once the queue is empty (several processes may share it).
    let done = 0;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    await runOnce(options({ noop: async () => { done++; } }));
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    print({ seconds, done, cpu_seconds: (cpu.user + cpu.system) / 1e6, max_rss_mib: process.resourceUsage().maxRSS / 1024 });
  } else if (command === 'consume') {
    // Child of `latency`: report "ready" after the warm-up job, then each job's start time.
    const record = recorder(Number(rest[0]));
    const runner = await run(options({ noop: async ({ i }) => record(i) }));
    await stopped();
    await runner.stop();
  } else if (command === 'stream') {
    // Child of benchmarks/long_tx.py: every 100 ms, each steady job's start (`s i t`) and how
    // many burst jobs started (`b n t`), t in epoch seconds.
    let lines = [];
    let bursts = 0;
    const flush = setInterval(() => {
      if (bursts) { lines.push(`b ${bursts} ${now()}`); bursts = 0; }
      if (lines.length) { process.stdout.write(lines.join('\n') + '\n'); lines = []; }
    }, 100);
    const runner = await run(options({
      steady: async ({ i }) => { lines.push(`s ${i} ${now()}`); },
      burst: async () => { bursts++; },
    }));
    await new Promise((resolve) => process.on('SIGTERM', resolve));
    await runner.stop();
    clearInterval(flush);
    process.exit(0);
  } else if (command === 'latency') {
    const [rate, n] = rest.map(Number);
    const u = await utils();
    const script = new URL(import.meta.url).pathname;
    print(await latency(script, [conn, 'consume', String(n)], rate, n, (i) => u.addJob('noop', { i })));
    await u.release();
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
