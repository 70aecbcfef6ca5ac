// The frame of every scenario with readers: start the system under test, open the
// reader sockets, connect a producer, let a driver measure, then tear it all down
// (generators first, so a relay that is behind has nobody left to write to).
import { LoadGen } from './procs.mjs';
import { createProducer } from './producer.mjs';

/**
 * Runs `drive({ producer, loadgen, serverPid, dbPid })` against `system` with `readers`
 * sockets open on `path` (`{i}` is the socket index), or on `paths` (one target per socket,
 * see wsclient's connect(): a v2 socket's target carries its subscribe requests, and it
 * counts as open once every one was answered). One socket in `sampleEvery` reads
 * timestamps. `format`: what the producer sends (producer.mjs). Resolves with what `drive`
 * resolves with.
 */
export async function withReaders(system, ctx, { readers, path, paths, sampleEvery = 10, format }, drive) {
  const server = await ctx.startServer(system);
  // One generator process per 5000 sockets: each process may hold 20,000 descriptors.
  const loadgen = new LoadGen(Math.ceil(readers / 5000));
  let producer;
  try {
    const opened = await loadgen.open({ port: server.port, count: readers, path, paths, sampleEvery });
    if (opened.failed) throw new Error(`${opened.failed} of ${readers} readers failed to open: ${opened.firstError}`);
    producer = await createProducer(system, { dbUri: ctx.dbUri, feedPort: server.feedPort, format });
    return await drive({ producer, loadgen, serverPid: server.pid, dbPid: ctx.dbPid });
  } finally {
    await producer?.close().catch(() => undefined);
    await loadgen.close();
    await server.stop();
  }
}
