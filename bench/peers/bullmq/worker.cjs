// A BullMQ worker process: no-op jobs, one at a time (like one actorbus
// worker process's reader), until SIGTERM.
const { Worker } = require("bullmq");
const sock = process.argv[2];
const worker = new Worker("bench", async () => {}, {
  connection: { path: sock, maxRetriesPerRequest: null },
  concurrency: Number(process.argv[3] || 1),
  removeOnComplete: { count: 0 },
});
worker.on("error", (e) => {
  console.error(e);
  process.exit(1);
});
worker.on("ready", () => process.send && process.send("ready"));
process.on("SIGTERM", async () => {
  await worker.close();
  process.exit(0);
});
