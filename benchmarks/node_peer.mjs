// What the Node peers' bench.mjs scripts share (no dependencies): the clock, the JSON line, and
// both sides of the pickup-latency measurement.
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export const now = () => (performance.timeOrigin + performance.now()) / 1000; // seconds, sub-ms
export const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

// The consumer child's side: call `record(i)` from a task with its job's `i`. It reports "ready"
// after the warm-up job (i < 0), then every job's start time once all n have started.
export function recorder(n) {
  const started = {};
  let count = 0;
  return (i) => {
    if (i < 0) { process.send({ ready: true }); return; }
    started[i] = now();
    if (++count === n) process.send({ started });
  };
}

// Resolves once the parent says stop.
export const stopped = () => new Promise((resolve) => process.on('message', resolve));

// The parent's side: fork `script` with `childArgs` (its consumer), enqueue a warm-up job and
// wait until the child ran it, then enqueue n jobs at `rate` per second, one `enqueue(i)` each,
// and return each job's latency from its enqueue being sent (the enqueue statement's start) to
// its start: the enqueue's own round trip and commit count, as they do for the caller.
export async function latency(script, childArgs, rate, n, enqueue) {
  const child = fork(script, childArgs);
  const messages = [];
  let wake = null;
  child.on('message', (m) => { messages.push(m); if (wake) wake(); });
  const next = () => new Promise((resolve) => { if (messages.length) resolve(messages.shift()); else wake = () => { wake = null; resolve(messages.shift()); }; });
  await enqueue(-1);
  await next(); // ready
  const sent = new Array(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const delay = start + (i * 1000) / rate - performance.now();
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    sent[i] = now();
    await enqueue(i);
  }
  const seconds = (performance.now() - start) / 1000;
  const { started } = await next();
  child.send('stop');
  return { latencies_ms: sent.map((t, i) => (started[i] - t) * 1000), offered_rate: n / seconds };
}
