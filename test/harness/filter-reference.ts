// A plain reference evaluator of v2 filters (PROTOCOL.md §9 "Filters") and fast-check
// arbitraries of random notifications and filters, for differential tests: the unit test
// (test/filter.unit.test.ts) checks the compiled filter against it, the end-to-end test
// (test/v2-filters.test.ts) checks what real sockets receive against it.
//
// On purpose this file shares no code with src/v2/filter.ts (it imports only the Json type):
// it is PROTOCOL.md §9 read literally, straight recursion, no cleverness, so that a mistake in
// the server's matcher cannot be copied into the expectation.
import fc from 'fast-check';
import type { Json } from '../../src/types.js';

export type Obj = { readonly [k: string]: Json };

export function isObj(v: Json | undefined): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// The reference: PROTOCOL.md §9 read literally, straight recursion, no cleverness.

export function refHas(o: Obj, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** [found, value] of a dotted path. */
export function refGet(n: Json, path: string): [boolean, Json] {
  let cur: Json = n;
  for (const name of path.split('.')) {
    if (!isObj(cur) || !refHas(cur, name)) return [false, null];
    cur = cur[name] as Json;
  }
  return [true, cur];
}

export function refEqual(a: Json, b: Json): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b)) return false;
    const x = a as readonly Json[];
    const y = b as readonly Json[];
    return x.length === y.length && x.every((item, i) => refEqual(item, y[i] as Json));
  }
  if (isObj(a) || isObj(b)) {
    if (!isObj(a) || !isObj(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => refHas(b, k) && refEqual(a[k] as Json, b[k] as Json));
  }
  return a === b;
}

/** Order of two strings as sequences of code points (Array.from splits a string by code point). */
export function refCompare(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0) as number);
  const y = Array.from(b, (c) => c.codePointAt(0) as number);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  }
  return x.length - y.length;
}

export function refOrder(field: Json, operand: Json, accept: (d: number) => boolean): boolean {
  if (typeof operand === 'number' && typeof field === 'number') return accept(field < operand ? -1 : field > operand ? 1 : 0);
  if (typeof operand === 'string' && typeof field === 'string') return accept(refCompare(field, operand));
  return false;
}

export function refOperator(op: string, operand: Json, found: boolean, field: Json): boolean {
  switch (op) {
    case 'exists':
      return found === operand;
    case 'ne':
      return found && !refEqual(field, operand);
    case 'in':
      return found && (operand as readonly Json[]).some((v) => refEqual(field, v));
    case 'nin':
      return found && !(operand as readonly Json[]).some((v) => refEqual(field, v));
    case 'lt':
      return found && refOrder(field, operand, (d) => d < 0);
    case 'lte':
      return found && refOrder(field, operand, (d) => d <= 0);
    case 'gt':
      return found && refOrder(field, operand, (d) => d > 0);
    case 'gte':
      return found && refOrder(field, operand, (d) => d >= 0);
    default:
      throw new Error(`reference: unknown operator ${op}`);
  }
}

export function reference(filter: Obj, n: Json): boolean {
  const entries = Object.entries(filter);
  if (!isObj(n)) return entries.length === 0;
  for (const [path, cond] of entries) {
    const [found, field] = refGet(n, path);
    if (isObj(cond)) {
      for (const [op, operand] of Object.entries(cond)) {
        if (!refOperator(op, operand, found, field)) return false;
      }
    } else if (!found || !refEqual(field, cond)) {
      return false;
    }
  }
  return true;
}

/** The reference's reading of a notification text: the parsed JSON, or a string when it is not JSON. */
export function refParse(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries: random notifications and filters over a few names, so that paths meet fields.

export const NAMES = ['a', 'b', 'c', '__proto__'] as const;
export const PATH_NAMES = [...NAMES, 'constructor', 'toString'] as const;

export const leaf: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(0, 1, 2, -1, 1.5, 1e21),
  fc.constantFrom<Json>('', 'a', 'b', 'Z', 'ab', 'é', '\u{1F600}', '\u{1F601}', '\uFFFF', '\uE000', '\uD83D', '\uD83Dx'),
  fc.boolean(),
  fc.constant(null),
);

/** Objects built with Object.fromEntries, so a `__proto__` name is an own field, as JSON.parse makes it. */
export const objectOf = (value: fc.Arbitrary<Json>, names: readonly string[]): fc.Arbitrary<Json> =>
  fc
    .uniqueArray(fc.tuple(fc.constantFrom(...names), value), { selector: (t) => t[0], maxLength: 4 })
    .map((entries) => Object.fromEntries(entries) as Json);

export const { value } = fc.letrec<{ value: Json; array: Json; object: Json }>((tie) => ({
  value: fc.oneof({ maxDepth: 3, depthIdentifier: 'json' }, leaf, leaf, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 3, depthIdentifier: 'json' }).map((items) => items as Json),
  object: objectOf(tie('value'), NAMES),
}));

/** As pgws gets it: through JSON text (so `__proto__` stays an own field, -0 becomes 0). */
export const roundTrip = (v: Json): Json => JSON.parse(JSON.stringify(v)) as Json;

export const notification: fc.Arbitrary<Json> = fc
  .oneof({ weight: 9, arbitrary: objectOf(value, NAMES) }, { weight: 1, arbitrary: value })
  .map(roundTrip);

export const path = fc.array(fc.constantFrom(...PATH_NAMES), { minLength: 1, maxLength: 3 }).map((names) => names.join('.'));
export const plain: fc.Arbitrary<Json> = value.filter((v) => !isObj(v));
export const orderOperand: fc.Arbitrary<Json> = leaf.filter((v) => typeof v === 'number' || typeof v === 'string');

export const operator: fc.Arbitrary<[string, Json]> = fc.oneof(
  fc.tuple(fc.constant('ne'), value),
  fc.tuple(fc.constantFrom('in', 'nin'), fc.array(value, { minLength: 1, maxLength: 3 }).map((items) => items as Json)),
  fc.tuple(fc.constantFrom('lt', 'lte', 'gt', 'gte'), orderOperand),
  fc.tuple(fc.constant('exists'), fc.boolean()),
);

export const condition: fc.Arbitrary<Json> = fc.oneof(
  plain,
  fc.uniqueArray(operator, { selector: (t) => t[0], minLength: 1, maxLength: 3 }).map((ops) => Object.fromEntries(ops) as Json),
);

export const randomFilter: fc.Arbitrary<Obj> = fc
  .uniqueArray(fc.tuple(path, condition), { selector: (t) => t[0], maxLength: 5 })
  .map((entries) => roundTrip(Object.fromEntries(entries) as Json) as Obj);

/** Every (path, value) of a notification, arrays not entered. */
export function fieldsOf(n: Json, prefix = ''): [string, Json][] {
  if (!isObj(n)) return [];
  return Object.entries(n).flatMap(([k, v]) => {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    return [[p, v] as [string, Json], ...fieldsOf(v, p)];
  });
}

/** Conditions drawn from the notification's own fields, so that many filters match. */
export function nearCondition(v: Json): fc.Arbitrary<Json> {
  const options: fc.Arbitrary<Json>[] = [
    fc.constant(isObj(v) ? { in: [v] } : v),
    fc.array(value, { maxLength: 2 }).map((others) => ({ in: [...others, v] })),
    fc.constant({ ne: v }),
    fc.constant({ nin: [v] }),
    fc.boolean().map((exists) => ({ exists })),
  ];
  if (typeof v === 'number' || typeof v === 'string') {
    options.push(fc.constantFrom('lt', 'lte', 'gt', 'gte').map((op) => ({ [op]: v })));
    options.push(orderOperand.map((o) => ({ gte: o, lte: v })));
  }
  return fc.oneof(...options);
}

export const nearFilter = (n: Json): fc.Arbitrary<Obj> => {
  const fields = fieldsOf(n);
  if (fields.length === 0) return randomFilter;
  return fc
    .uniqueArray(fc.constantFrom(...fields), { selector: (f) => f[0], minLength: 1, maxLength: 4 })
    .chain((picked) => fc.tuple(...picked.map(([p, v]) => nearCondition(v).map((c) => [p, c] as [string, Json]))))
    .chain((entries) => fc.tuple(fc.constant(entries), randomFilter, fc.nat(2)))
    .map(([entries, extra, more]) => roundTrip(Object.fromEntries([...entries, ...Object.entries(extra).slice(0, more === 0 ? 1 : 0)]) as Json) as Obj);
};

export const pair: fc.Arbitrary<[Obj, Json]> = notification.chain((n) =>
  fc.tuple(fc.oneof(randomFilter, nearFilter(n)), fc.constant(n)),
);

/**
 * The same filter written differently: paths and operators in reverse order, `in`/`nin` lists
 * reversed and doubled. Its canonical key is the filter's own, and it matches alike.
 */
export function rewrite(f: Obj): Json {
  return Object.fromEntries(
    Object.entries(f)
      .reverse()
      .map(([p, c]) => {
        if (!isObj(c)) return [p, c];
        const ops = Object.entries(c)
          .reverse()
          .map(([op, v]) => [op, op === 'in' || op === 'nin' ? [...(v as readonly Json[])].reverse().concat(v as readonly Json[]) : v]);
        return [p, Object.fromEntries(ops)];
      }),
  ) as Json;
}

/** A condition that the value `v` meets (so do other notifications that share it). */
export function holdingCondition(v: Json): fc.Arbitrary<Json> {
  const other = value.filter((o) => !refEqual(o, v));
  const options: fc.Arbitrary<Json>[] = [
    fc.constant(isObj(v) ? { in: [v] } : v),
    fc.array(value, { maxLength: 2 }).map((others) => ({ in: [...others, v] })),
    other.map((o) => ({ ne: o })),
    fc.array(other, { minLength: 1, maxLength: 2 }).map((others) => ({ nin: others })),
    fc.constant({ exists: true }),
  ];
  if (typeof v === 'number' || typeof v === 'string') {
    options.push(fc.constantFrom('lte', 'gte').map((op) => ({ [op]: v })));
    options.push(fc.constant({ gte: v, lte: v }));
  }
  return fc.oneof(...options);
}

/** A filter that `n` matches, on one to three of its fields; the empty filter when it has none. */
export const matchingFilter = (n: Json): fc.Arbitrary<Obj> => {
  const fields = fieldsOf(n);
  if (fields.length === 0) return fc.constant({});
  return fc
    .uniqueArray(fc.constantFrom(...fields), { selector: (f) => f[0], minLength: 1, maxLength: 3 })
    .chain((picked) => fc.tuple(...picked.map(([p, v]) => holdingCondition(v).map((c) => [p, c] as [string, Json]))))
    .map((entries) => roundTrip(Object.fromEntries(entries) as Json) as Obj);
};
