// Scenario 2, many channels: N readers, each on its own channel; notifications
// go round-robin over the channels (uniform), each reaching exactly one reader.
import { runFanout } from './fanout.mjs';

export const channels = {
  id: 'channels',
  title: 'many channels: N readers, each on its own channel, uniform notifications',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'framesPerSec', label: 'frames/s', better: 'higher' },
  columns: ['framesPerSec', 'p50', 'p99', 'p999', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed'],
  variants: (quick) => [quick ? { label: '1k readers', readers: 1000 } : { label: '10k readers', readers: 10_000 }],
  run: (system, v, ctx) =>
    runFanout(system, ctx, {
      readers: v.readers,
      // A token without channel claims may open any channel (PROTOCOL.md §1).
      path: (token) => `/c{i}/${token}`,
      token: ctx.tokens.anyChannel,
      perNotification: 1,
      // Several frames in flight per socket, so each reader's reads carry a few frames.
      window: 4 * v.readers,
      batch: 50,
      channelOf: (seq) => `c${seq % v.readers}`,
    }),
};
