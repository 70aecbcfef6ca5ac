// npm run bench [-- --quick] [--scenario fanout,inbound] (journal: the three journal-* scenarios) [--system pgws-uws,baseline] [--variant <text>] [--reps 3] [--profile] [--smoke]
//
// Starts its own PostgreSQL (embedded, as the tests do), then runs every
// scenario against every system in the same run, repetitions interleaved
// (system A, B, C, A, B, C, ...) so drift on a shared machine hits all alike.
// Prints markdown tables and a machine line, writes bench/results/<date>.json.
// It reports; it never fails because a number is bad.
// --smoke (implies --quick, 1 repetition unless --reps says otherwise): the sizes of the
// scenarios that have a smoke size (the v2 ones: ~200 sockets) shrink further, to check that
// the bench code works on a busy machine; its figures mean nothing.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { startEmbeddedPostgres } from '../dist/embedded.js';
import { channels } from './scenarios/channels.mjs';
import { connections } from './scenarios/connections.mjs';
import { fanout } from './scenarios/fanout.mjs';
import { flood } from './scenarios/flood.mjs';
import { inbound } from './scenarios/inbound.mjs';
import { journalCatchup } from './scenarios/journal-catchup.mjs';
import { journalGrowth } from './scenarios/journal-growth.mjs';
import { journalInbound } from './scenarios/journal-inbound.mjs';
import { latency } from './scenarios/latency.mjs';
import { storm } from './scenarios/storm.mjs';
import { v2Fanout } from './scenarios/v2-fanout.mjs';
import { v2Filters } from './scenarios/v2-filters.mjs';
import { v2Memory } from './scenarios/v2-memory.mjs';
import { hasTaskset, pinSelf, startServer } from './lib/procs.mjs';
import { createTokens } from './lib/tokens.mjs';
import { systemsFor } from './systems.mjs';

const SCENARIOS = [fanout, channels, inbound, flood, connections, storm, latency, v2Fanout, v2Filters, v2Memory, journalInbound, journalCatchup, journalGrowth];
/** --scenario names that stand for several scenarios. */
const GROUPS = { journal: ['journal-inbound', 'journal-catchup', 'journal-growth'] };
const LABELS = {
  framesPerSec: 'frames/s',
  notifPerSec: 'notif/s',
  notifyPerSec: 'NOTIFY/s',
  p50: 'p50 ms',
  p99: 'p99 ms',
  p999: 'p99.9 ms',
  serverCpu: 'server CPU %',
  loadgenCpu: 'generator CPU %',
  dbCpu: 'PostgreSQL CPU %',
  closed: 'sockets closed',
  handshakesPerSec: 'handshakes/s',
  handshakesPerCpuSec: 'handshakes per server CPU-s',
  rssPerSocketKiB: 'RSS/socket KiB',
  serverRssMiB: 'server RSS MiB',
  failed: 'failed',
  framesSent: 'frames sent',
  delivered: 'NOTIFYs seen',
  deliveredPct: 'seen / sent %',
  drainSeconds: 'drain s',
  closeCodes: 'closed by code',
  backSeconds: 'all back s',
  readySeconds: 'server ready s',
  serverCpuSeconds: 'server CPU-s',
  attemptsPerClient: 'attempts per client',
  refused: 'refused',
  serverUsPerNotif: 'server CPU-µs/notif',
  framesPerNotif: 'frames/notif',
  heapPerSocketKiB: 'JS heap/socket KiB',
  rssFirstPerSocketKiB: 'RSS/socket KiB, first N',
  subscriptionsPerSec: 'subscribes/s',
  journalRows: 'journal rows',
  replayP50Ms: 'p50 ms',
  replayMaxMs: 'max ms',
  replayAllMs: 'all done ms',
  messagesPerSec: 'messages/s',
  serverCpuS: 'server CPU-s',
  dbCpuS: 'PostgreSQL CPU-s',
  clientCpuS: 'clients CPU-s',
  serverPeakRssMiB: 'server peak RSS MiB',
  rows: 'rows',
  messageBytes: 'message bytes',
  bytesPerRow: 'bytes/message (table + indexes)',
  heapBytesPerRow: 'heap bytes/message',
  indexBytesPerRow: 'index bytes/message',
  publishPerSec: 'pgws.publish/s (SQL)',
  prunePerSec: 'pruned rows/s',
  pruneSeconds: 'pruning s',
  pruneDbCpuS: 'pruning PostgreSQL CPU-s',
};
const RUN_DEADLINE_MS = 45 * 60_000;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scenario: { type: 'string' },
    system: { type: 'string' },
    reps: { type: 'string' },
    // Only the variants whose label contains this text (e.g. --variant "5k sockets, HS256").
    variant: { type: 'string' },
    profile: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
  },
});

const smoke = args.smoke;
const quick = args.quick || smoke;
const reps = Math.max(1, Number(args.reps ?? (smoke ? 1 : 3)));
const wanted = args.scenario ? args.scenario.split(',').flatMap((id) => GROUPS[id] ?? [id]) : SCENARIOS.map((s) => s.id);
const unknown = wanted.filter((id) => !SCENARIOS.some((s) => s.id === id));
if (unknown.length) {
  console.error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')} (and ${Object.keys(GROUPS).join(', ')}: ${Object.entries(GROUPS).map(([g, ids]) => `${g} = ${ids.join(',')}`).join('; ')})`);
  process.exit(2);
}
const systemFilter = args.system?.split(',');

// Bounded no matter what: a wedged run ends itself.
setTimeout(() => {
  console.error(`bench: run deadline of ${RUN_DEADLINE_MS / 60000} min reached, exiting`);
  process.exit(3);
}, RUN_DEADLINE_MS).unref();

// HS256 with the bench secret for every scenario; the connections and storm scenarios add
// RS256 and ES256, with a key pair made for this run (bench/lib/tokens.mjs).
const factory = createTokens();
const tokens = {
  reader: factory.one('HS256', { mode: 'r', channels: ['bench', 'conn'] }),
  anyChannel: factory.one('HS256', { mode: 'r' }),
  writer: factory.one('HS256', { mode: 'w', channel: 'in' }),
  distinct: factory.distinct,
};
// One token per client (connections, storm), expiring after the run as real ones do.
const clientClaims = { mode: 'r', channels: ['bench', 'conn'], exp: Math.floor(Date.now() / 1000) + 4 * 3600 };

console.error('bench: starting embedded PostgreSQL');
const db = await startEmbeddedPostgres();

// PostgreSQL was started before pinning, so it keeps every core; from here on
// this process and the generator processes it forks run on the generator core.
const pinning = !args['no-pin'] && os.cpus().length >= 2 && hasTaskset();
const cpus = { server: '0', loadgen: '1' };
if (pinning) pinSelf(cpus.loadgen);
const pinText = pinning
  ? `taskset: server on CPU ${cpus.server}; load generator (clients, producer, LISTEN counter) on CPU ${cpus.loadgen}; PostgreSQL unpinned`
  : 'not pinned (taskset unavailable, fewer than 2 CPUs, or --no-pin)';
const profileDir = args.profile ? new URL('results/profiles/', import.meta.url).pathname : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });

const ctx = {
  dbUri: db.uri,
  dbPid: db.serverPid(),
  tokens,
  clientClaims,
  quick,
  smoke,
  warmupMs: quick ? 300 : 1000,
  durationMs: quick ? 1000 : 3000,
  /**
   * Starts a system verifying `alg` tokens (default HS256), on `port` (default: any free one);
   * `nodeArgs`: more node options for its process (--expose-gc).
   */
  startServer: (system, { alg = 'HS256', port = 0, nodeArgs = [] } = {}) =>
    startServer(system, {
      dbUri: db.uri,
      secret: factory.secretFor(alg),
      port,
      extraNodeArgs: nodeArgs,
      cpus: pinning ? cpus.server : undefined,
      profileDir: profileDir && system.id.startsWith('pgws') ? profileDir : undefined,
    }),
};

const machine = `node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`;
const startedAt = new Date();
const results = [];
/** What a scenario's `extra` measured, once per run (in-process figures): { scenario, lines, data }. */
const extras = [];
let stopping = false;
process.on('SIGINT', () => {
  stopping = true;
});

try {
  for (const scenario of SCENARIOS.filter((s) => wanted.includes(s.id))) {
    const scenarioSystems = systemsFor(scenario.roles).filter((s) => !systemFilter || systemFilter.includes(s.id));
    const planned = [];
    for (const variant of scenario.variants(quick, { smoke }).filter((v) => !args.variant || v.label.includes(args.variant))) {
      // A variant may name the systems it is for (the ceiling without auth has no RS256 row).
      const systems = scenarioSystems.filter((s) => !variant.systems || variant.systems.includes(s.id));
      if (systems.length === 0) continue;
      const entry = { scenario: scenario.id, variant: variant.label, systems: systems.map((s) => ({ id: s.id, name: s.name, runs: [], errors: [] })) };
      results.push(entry);
      planned.push({ variant, systems, entry });
    }
    // --quick may run a slow scenario fewer times (its `quickReps`), unless --reps says otherwise.
    const scenarioReps = quick && args.reps === undefined && scenario.quickReps ? scenario.quickReps : reps;
    const runOnce = async ({ variant, systems, entry }, rep) => {
      for (const [i, system] of systems.entries()) {
        if (stopping) break;
        const t = Date.now();
        try {
          const metrics = await scenario.run(system, variant, ctx);
          entry.systems[i].runs.push(metrics);
          console.error(`bench: ${scenario.id} / ${variant.label} / ${system.name} #${rep + 1}: ${brief(scenario, metrics)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
        } catch (err) {
          entry.systems[i].errors.push(String(err?.message ?? err));
          console.error(`bench: ${scenario.id} / ${variant.label} / ${system.name} #${rep + 1} failed: ${err?.message ?? err}`);
        }
      }
    };
    if (scenario.interleaveVariants) {
      // Variants compared with each other (the token in the path or in a header): each
      // repetition runs every variant, so drift on a shared machine hits all of them alike.
      for (let rep = 0; rep < scenarioReps && !stopping; rep++) for (const plan of planned) await runOnce(plan, rep);
    } else {
      for (const plan of planned) for (let rep = 0; rep < scenarioReps && !stopping; rep++) await runOnce(plan, rep);
    }
    // A scenario may measure something once, outside any system (in this process).
    if (scenario.extra && !stopping && !args.variant) {
      try {
        const extra = await scenario.extra(ctx);
        extras.push({ scenario: scenario.id, ...extra });
        for (const line of extra.lines) console.error(`bench: ${scenario.id}: ${line}`);
      } catch (err) {
        extras.push({ scenario: scenario.id, lines: [`failed: ${err?.message ?? err}`] });
        console.error(`bench: ${scenario.id} extra failed: ${err?.stack ?? err}`);
      }
    }
  }
} finally {
  await db.stop();
}

const elapsed = (Date.now() - startedAt.getTime()) / 1000;
const markdown = render(results, extras);
console.log(markdown);
const fewer = quick && args.reps === undefined ? SCENARIOS.filter((s) => s.quickReps && wanted.includes(s.id)).map((s) => `${s.id} ${s.quickReps}`) : [];
console.log(
  `\n${machine}\npinning: ${pinText}\nrun: ${smoke ? 'smoke (figures mean nothing)' : quick ? 'quick' : 'full'}, ${reps} repetitions per figure (median [min-max])${fewer.length ? ` (${fewer.join(', ')})` : ''}, ${elapsed.toFixed(0)} s`,
);
const outDir = new URL('results/', import.meta.url);
mkdirSync(outDir, { recursive: true });
const file = new URL(`${startedAt.toISOString().replace(/[:.]/g, '-')}.json`, outDir);
writeFileSync(file, `${JSON.stringify({ startedAt, machine, pinning: pinText, quick, smoke, reps, elapsedSeconds: elapsed, results, extras }, null, 2)}\n`);
console.log(`results: ${file.pathname}`);
process.exit(0);

// ---------------------------------------------------------------------------

function summary(runs, key) {
  // Text figures (close codes) are shown as they came, each distinct one once.
  const texts = [...new Set(runs.map((r) => r[key]).filter((v) => typeof v === 'string'))];
  if (texts.length > 0) return { text: texts.join(' / ') };
  const values = runs.map((r) => r[key]).filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (values.length === 0) return undefined;
  return { median: values[Math.floor((values.length - 1) / 2)], min: values[0], max: values[values.length - 1] };
}


function fmt(v, key) {
  if (typeof v === 'string') return v;
  if (v === undefined || !Number.isFinite(v)) return 'n/a';
  if (key.startsWith('p') && key.length <= 4) return v < 10 ? v.toFixed(2) : v.toFixed(1);
  // Milliseconds and CPU-seconds of the journal scenarios: the digits that matter at any size.
  if (key.endsWith('Ms') || key.endsWith('CpuS')) return v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
  if (key.endsWith('Cpu') || key.endsWith('Pct')) return v.toFixed(0);
  if (key.endsWith('KiB') || key === 'serverRssMiB' || key.endsWith('Seconds') || key === 'attemptsPerClient' || key === 'serverUsPerNotif') return v.toFixed(1);
  if (v >= 999_500) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}

function cell(s, key) {
  if (!s) return 'n/a';
  if (s.text !== undefined) return s.text;
  return s.min === s.max ? fmt(s.median, key) : `${fmt(s.median, key)} [${fmt(s.min, key)}-${fmt(s.max, key)}]`;
}

function brief(scenario, metrics) {
  return scenario.columns.map((k) => `${LABELS[k] ?? k} ${fmt(metrics[k], k)}`).join(', ');
}

function render(all, extras) {
  const out = [];
  for (const scenario of SCENARIOS) {
    const entries = all.filter((e) => e.scenario === scenario.id);
    const extra = extras.filter((x) => x.scenario === scenario.id);
    if (entries.length === 0 && extra.length === 0) continue;
    const { key, better } = scenario.primary;
    // A scenario may drop a ratio that would mislead (the flood: the baseline's near-zero).
    const ratioCols = better === 'higher' ? (scenario.ratios ?? ['vs baseline', 'of ceiling']) : [];
    out.push(`\n### ${scenario.title}\n`);
    out.push(`| case | system | ${scenario.columns.map((k) => LABELS[k] ?? k).join(' | ')} |${ratioCols.map((c) => ` ${c} |`).join('')}`);
    out.push(`|${' --- |'.repeat(2 + scenario.columns.length + ratioCols.length)}`);
    for (const entry of entries) {
      const med = (pred) => summary(entry.systems.find((s) => pred(s.id))?.runs ?? [], key)?.median;
      const baseline = med((id) => id === 'baseline');
      const ceiling = med((id) => id === 'bare-uws' || id === 'raw-listen');
      for (const sys of entry.systems) {
        const cells = scenario.columns.map((k) => cell(summary(sys.runs, k), k));
        if (better === 'higher') {
          const mine = summary(sys.runs, key)?.median;
          const isCeiling = sys.id === 'bare-uws' || sys.id === 'raw-listen';
          if (ratioCols.includes('vs baseline')) cells.push(sys.id !== 'baseline' && mine && baseline ? `${(mine / baseline).toFixed(1)}x` : '');
          if (ratioCols.includes('of ceiling')) cells.push(!isCeiling && mine && ceiling ? `${Math.round((mine / ceiling) * 100)}%` : '');
        }
        const note = sys.errors.length ? ` (${sys.errors.length} failed: ${sys.errors[0].slice(0, 80)})` : '';
        out.push(`| ${entry.variant} | ${sys.name}${note} | ${cells.join(' | ')} |`);
      }
    }
    // Lines a scenario derives from its rows (a ratio between variants), then what its
    // `extra` measured.
    const notes = [...(scenario.notes?.(entries, { summary }) ?? []), ...extra.flatMap((x) => x.lines)];
    if (notes.length) out.push('', ...notes.map((line) => `- ${line}`));
  }
  return out.join('\n');
}
