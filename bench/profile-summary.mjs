// node bench/profile-summary.mjs <file.cpuprofile> [top=25]
// Self time per function (and per file) from a V8 CPU profile written by
// `npm run bench -- --profile` (node --cpu-prof on the pgws server process).
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [top]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fnTime = new Map();
const fileTime = new Map();
for (const [id, us] of self) {
  const { callFrame: f } = byId.get(id);
  const where = f.url ? f.url.replace(/^.*\/(node_modules\/|dist\/|bench\/)/, '$1') : '(native)';
  const name = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`;
  fnTime.set(name, (fnTime.get(name) ?? 0) + us);
  const bucket = f.url ? where.replace(/^(node_modules\/[^/]+).*$/, '$1').replace(/^node:.*$/, 'node internals') : f.functionName;
  fileTime.set(bucket, (fileTime.get(bucket) ?? 0) + us);
}
const pct = (us) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n\nby file / category (self time):`);
for (const [k, us] of [...fileTime].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${pct(us)}  ${k}`);
console.log(`\ntop ${top} functions (self time):`);
for (const [k, us] of [...fnTime].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
