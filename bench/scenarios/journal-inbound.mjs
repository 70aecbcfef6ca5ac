// Issue 14, inbound through the journal against plain NOTIFY: the inbound scenario's load
// (W writer sockets on /in/<token>, frames as fast as accepted, NOTIFYs/s seen by a raw LISTEN
// client) against pgws (uws) plain and pgws (uws) with PGWS_JOURNAL=on, where every batch of
// frames is one `SELECT count(pgws.publish(p)) ...` statement. The journaled NOTIFYs come on
// the same listen channel (with "pgws_offset" inserted), so the same counter counts both.
// The two systems alternate within each repetition (plain, journal, plain, journal, ...).
// The journal is installed once per run before the first journal system starts, and
// TRUNCATEd before every repetition of the journal system: each starts on an empty table
// (the "journal rows" column is what that repetition left in it). The notes give journal/plain
// per writer count, median of the per-repetition ratios (issue 14: at least 50%).
import { inbound } from './inbound.mjs';
import { JOURNALED, PLAIN, ensureJournal, pct, truncateJournal, withSql } from './journal-shared.mjs';

const SYSTEMS = [PLAIN, JOURNALED];

export const journalInbound = {
  id: 'journal-inbound',
  title: 'journal inbound: W writers as fast as accepted, pgws plain vs PGWS_JOURNAL=on (pgws.publish), NOTIFYs/s seen by a raw LISTEN client',
  roles: ['relay', 'journal-relay'],
  primary: { key: 'notifyPerSec', label: 'NOTIFY/s', better: 'higher' },
  ratios: [],
  columns: ['notifyPerSec', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed', 'journalRows'],
  variants: (quick) => (quick ? [10] : [10, 200]).map((w) => ({ label: `${w} writers`, writers: w, systems: SYSTEMS })),
  async run(system, v, ctx) {
    if (system.id !== JOURNALED) return inbound.run(system, v, ctx);
    await ensureJournal(ctx.dbUri);
    await truncateJournal(ctx.dbUri);
    // A relay to inbound.mjs (writer sockets), though its role keeps it out of the other scenarios.
    const metrics = await inbound.run({ ...system, role: 'relay' }, v, ctx);
    const [{ rows }] = await withSql(ctx.dbUri, (sql) => sql`SELECT count(*)::int AS rows FROM pgws.journal`);
    return { ...metrics, journalRows: rows };
  },
  notes(entries) {
    const lines = [];
    for (const entry of entries) {
      const plain = entry.systems.find((s) => s.id === PLAIN)?.runs ?? [];
      const journaled = entry.systems.find((s) => s.id === JOURNALED)?.runs ?? [];
      // The i-th runs of the two systems ran one after the other: paired in time.
      const ratios = [];
      for (let i = 0; i < Math.min(plain.length, journaled.length); i++) {
        const a = journaled[i].notifyPerSec;
        const b = plain[i].notifyPerSec;
        if (Number.isFinite(a) && Number.isFinite(b) && b > 0) ratios.push(a / b);
      }
      if (ratios.length === 0) continue;
      ratios.sort((x, y) => x - y);
      const median = ratios[Math.floor((ratios.length - 1) / 2)];
      const range = ratios.length > 1 ? ` [${pct(ratios[0])}-${pct(ratios.at(-1))}]` : '';
      lines.push(`${entry.variant}: journal/plain NOTIFY/s ${pct(median)}${range} per repetition (issue 14: at least 50%: ${median >= 0.5 ? 'met' : 'NOT met'})`);
    }
    if (lines.length) lines.push('journal rows: the journal table was TRUNCATEd before every repetition of the journal system; the count is what that repetition (warm-up included) left in it');
    return lines;
  },
};
