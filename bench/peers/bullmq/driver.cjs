// Driver: N no-op jobs through BullMQ with 1 and 2 worker processes, added
// with addBulk; the clock runs from the first add until no job waits or
// runs. Prints {"records": [...]} like the other peers.
const { Queue } = require("bullmq");
const { fork } = require("child_process");
const path = require("path");
const sock = process.argv[2];
const jobs = Number(process.argv[3] || 100000);
const connection = { path: sock, maxRetriesPerRequest: null };

async function drained(queue) {
  for (;;) {
    const c = await queue.getJobCounts("wait", "active", "delayed", "prioritized");
    if (c.wait + c.active + c.delayed + (c.prioritized || 0) === 0) return;
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function run(workers) {
  const queue = new Queue("bench", { connection });
  await queue.obliterate({ force: true }).catch(() => {});
  const procs = [];
  for (let i = 0; i < workers; ++i) {
    const p = fork(path.join(__dirname, "worker.cjs"), [sock, "1"],
                   { stdio: ["ignore", "ignore", "inherit", "ipc"] });
    await new Promise((resolve, reject) => {
      p.once("message", resolve);
      p.once("exit", () => reject(new Error("BullMQ worker exited at start")));
    });
    procs.push(p);
  }
  const start = process.hrtime.bigint();
  const chunk = 1000;
  for (let first = 0; first < jobs; first += chunk) {
    const n = Math.min(chunk, jobs - first);
    const batch = [];
    for (let i = 0; i < n; ++i)
      batch.push({ name: "noop", data: {}, opts: { removeOnComplete: true } });
    await queue.addBulk(batch);
  }
  await drained(queue);
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => new Promise((r) => p.once("exit", r))));
  await queue.close();
  process.stderr.write(`[queue peer] bullmq ${workers}w: ${jobs} jobs in ${secs.toFixed(2)} s = ${(jobs / secs).toFixed(0)}/s\n`);
  return jobs / secs;
}

(async () => {
  const records = [];
  for (const w of [1, 2]) {
    const rate = await run(w);
    records.push({ group: `queue_jobs_${w}w`, impl: "bullmq",
                   metrics: { items_per_second: rate, jobs } });
  }
  console.log(JSON.stringify({ records }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
