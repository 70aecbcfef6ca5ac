// v2 subscription filters (PROTOCOL.md §9 "Filters"): validation, a canonical key, and a
// compiled matcher. Nothing here knows sockets or the database.
//
// The rules, exactly as implemented:
// - A filter is a JSON object; anything else (array, null, string, number, boolean) is
//   bad_request. `{}` (or no filter at all) is the empty filter: it matches every
//   notification, also one that is not a JSON object. Its key is ''.
// - Each member is `"<path>": <value>`. A path is non-empty and made of dot-separated,
//   non-empty names (`a..b`, `.a`, `a.` are bad_request). Names are taken literally (no
//   escaping, no array indexes): a name that meets an array, a string, a number, a boolean or
//   null "runs through a non-object", which is the same as a missing field.
// - A member value that is a non-null, non-array object is an operator object: at least one
//   key, every key one of the operators below, else bad_request. Any other value (string,
//   number, boolean, null, array) is a plain equality value. (So an object can be matched
//   only through `in`/`ne`/`nin`: `{"in": [{"a": 1}]}`.)
// - Equality is JSON equality: strings, booleans and null by value, numbers by value
//   (1 and 1.0 are equal), arrays element by element, objects by their set of keys and the
//   values under them (key order irrelevant).
// - Operators (each one on a path counts as one condition; a plain value is one condition):
//     ne      the path exists and its value is not equal to the operand
//     in      the path exists and its value equals one of the operand's values
//     nin     the path exists and its value equals none of the operand's values
//             (`in`/`nin`: a non-empty array, else bad_request)
//     lt lte gt gte
//             the operand is a number or a string (else bad_request); the field must be of
//             the same type (else it does not match); strings compare by Unicode code point
//             (not by UTF-16 unit: '\u{1F600}' > '\uFFFF'; a lone surrogate counts as the
//             code point of its own value)
//     exists  a boolean (else bad_request); `true`: the path exists; `false`: the path is
//             missing or runs through a non-object
//   A missing path matches nothing but `exists: false`.
// - A notification that is not a JSON object matches only the empty filter (even a filter
//   made only of `exists: false`).
// - Limits: at most MAX_FILTER_BYTES bytes of JSON text (what the client sent when the caller
//   knows it, else the length of JSON.stringify(filter)) and MAX_FILTER_CONDITIONS conditions.
// - The key is canonical JSON text: paths sorted, operators sorted, object keys inside values
//   sorted, numbers as JSON.stringify writes them, `in`/`nin` lists sorted and without
//   duplicates. Filters that differ only in key order, whitespace, `in`/`nin` order or
//   duplicates, or the spelling of a number get the same key; filters with the same key match
//   the same notifications. (Different keys may still be equivalent, e.g. `7` and `{"in":[7]}`:
//   the key is for sharing work, not a decision procedure.)
import type { Json } from '../types.js';

export const MAX_FILTER_BYTES = 4096;
export const MAX_FILTER_CONDITIONS = 20;

export interface CompiledFilter {
  /** Canonical text: equal filters have equal keys. '' for the empty filter. */
  readonly key: string;
  readonly conditions: number;
  /** `notification`: the parsed notification when it is a JSON object, else undefined. */
  matches(notification: { readonly [k: string]: Json } | undefined): boolean;
}

export type CompileResult = { readonly ok: true; readonly filter: CompiledFilter } | { readonly ok: false; readonly message: string };

type JsonObject = { readonly [k: string]: Json };
type Primitive = string | number | boolean | null;

const hasOwn = Object.hasOwn;

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isArray(v: Json): v is readonly Json[] {
  return Array.isArray(v);
}

/** A name that an object created by JSON.parse may answer without owning it (`constructor`, `__proto__`...). */
function isInherited(name: string): boolean {
  return name in Object.prototype;
}

/** User text in a message: quoted, and cut so a message never echoes long input. */
function quote(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text);
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON

/** Canonical JSON text of a value (sorted object keys), or undefined when it is not JSON (a non-finite number...). */
function canonical(v: Json): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (isArray(v)) {
        const parts: string[] = [];
        for (const item of v) {
          const text = canonical(item);
          if (text === undefined) return undefined;
          parts.push(text);
        }
        return `[${parts.join(',')}]`;
      }
      const parts: string[] = [];
      for (const k of Object.keys(v).sort()) {
        const item = v[k];
        const text = item === undefined ? undefined : canonical(item);
        if (text === undefined) return undefined;
        parts.push(`${JSON.stringify(k)}:${text}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Equality, compiled: the operand is walked once at compile time; matching allocates nothing.

const EQ_PRIMITIVE = 0;
const EQ_ARRAY = 1;
const EQ_OBJECT = 2;

class Equal {
  constructor(
    readonly kind: typeof EQ_PRIMITIVE | typeof EQ_ARRAY | typeof EQ_OBJECT,
    readonly value: Primitive,
    /** EQ_ARRAY: the elements; EQ_OBJECT: the values under `keys`. */
    readonly items: readonly Equal[],
    readonly keys: readonly string[],
  ) {}
}

const NO_ITEMS: readonly Equal[] = [];
const NO_KEYS: readonly string[] = [];

function compileEqual(v: Json): Equal {
  if (typeof v !== 'object' || v === null) return new Equal(EQ_PRIMITIVE, v, NO_ITEMS, NO_KEYS);
  if (isArray(v)) return new Equal(EQ_ARRAY, null, v.map(compileEqual), NO_KEYS);
  const keys = Object.keys(v);
  return new Equal(
    EQ_OBJECT,
    null,
    keys.map((k) => compileEqual(v[k] as Json)),
    keys,
  );
}

function equals(e: Equal, v: Json): boolean {
  if (e.kind === EQ_PRIMITIVE) return v === e.value; // numbers by value; 0 === -0
  if (typeof v !== 'object' || v === null) return false;
  const items = e.items;
  if (e.kind === EQ_ARRAY) {
    if (!isArray(v) || v.length !== items.length) return false;
    for (let i = 0; i < items.length; i++) {
      if (!equals(items[i] as Equal, v[i] as Json)) return false;
    }
    return true;
  }
  if (isArray(v)) return false;
  const keys = e.keys;
  let count = 0;
  for (const k in v) if (hasOwn(v, k)) count++;
  if (count !== keys.length) return false;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (!hasOwn(v, k) || !equals(items[i] as Equal, v[k] as Json)) return false;
  }
  return true;
}

/** A set of values (`in`, `nin`): primitives in a Set, arrays and objects compiled. */
class ValueSet {
  constructor(
    readonly primitives: ReadonlySet<Primitive>,
    readonly structured: readonly Equal[],
  ) {}

  has(v: Json): boolean {
    if (typeof v !== 'object' || v === null) return this.primitives.has(v);
    const structured = this.structured;
    for (let i = 0; i < structured.length; i++) {
      if (equals(structured[i] as Equal, v)) return true;
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Code point order

/**
 * Compares two strings by Unicode code point (negative, 0, positive). JavaScript's `<`
 * compares UTF-16 units, which puts U+E000..U+FFFF after the astral planes; this does not.
 * A lone surrogate counts as the code point of its own value (as `Array.from(s)` sees it).
 */
function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca < 0xd800 && cb < 0xd800) return ca - cb; // the common case: no surrogate involved
    // The first difference may be the low half of a pair whose (equal) high half is before it:
    // then the code points that differ start one unit earlier.
    let at = i;
    if (i > 0) {
      const prev = a.charCodeAt(i - 1);
      if (prev >= 0xd800 && prev <= 0xdbff && (isLow(ca) || isLow(cb))) at = i - 1;
    }
    return (a.codePointAt(at) as number) - (b.codePointAt(at) as number);
  }
  // One is a prefix of the other, in units: the shorter one comes first (its last code point is
  // either equal or a lone high surrogate, below the astral code point it starts in the other).
  return a.length - b.length;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

// ---------------------------------------------------------------------------------------------
// Conditions

const OP_EQ = 0;
const OP_NE = 1;
const OP_IN = 2;
const OP_NIN = 3;
const OP_LT = 4;
const OP_LTE = 5;
const OP_GT = 6;
const OP_GTE = 7;
const OP_EXISTS = 8;
type OpCode = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

const OPERATORS: ReadonlyMap<string, OpCode> = new Map<string, OpCode>([
  ['ne', OP_NE],
  ['in', OP_IN],
  ['nin', OP_NIN],
  ['lt', OP_LT],
  ['lte', OP_LTE],
  ['gt', OP_GT],
  ['gte', OP_GTE],
  ['exists', OP_EXISTS],
]);

/** One condition, one shape for all operators (monomorphic in `matches`). */
class Condition {
  constructor(
    readonly op: OpCode,
    /** OP_EQ, OP_NE. */
    readonly equal: Equal | null,
    /** OP_IN, OP_NIN. */
    readonly set: ValueSet | null,
    /** OP_LT..OP_GTE with a number operand. */
    readonly number: number,
    /** OP_LT..OP_GTE with a string operand (null: the operand is a number). */
    readonly string: string | null,
    /** OP_EXISTS. */
    readonly exists: boolean,
  ) {}
}

/** Whether a present value satisfies a condition. */
function holds(c: Condition, v: Json): boolean {
  switch (c.op) {
    case OP_EQ:
      return equals(c.equal as Equal, v);
    case OP_NE:
      return !equals(c.equal as Equal, v);
    case OP_IN:
      return (c.set as ValueSet).has(v);
    case OP_NIN:
      return !(c.set as ValueSet).has(v);
    case OP_EXISTS:
      return c.exists;
    default: {
      let d: number;
      if (c.string === null) {
        if (typeof v !== 'number') return false;
        d = v < c.number ? -1 : v > c.number ? 1 : 0;
      } else {
        if (typeof v !== 'string') return false;
        d = compareCodePoints(v, c.string);
      }
      switch (c.op) {
        case OP_LT:
          return d < 0;
        case OP_LTE:
          return d <= 0;
        case OP_GT:
          return d > 0;
        default:
          return d >= 0;
      }
    }
  }
}

/**
 * One name of the filter's paths, in a tree: paths that share a prefix (`payload.room`,
 * `payload.price`) look `payload` up once. A node holds the conditions of the path that ends at
 * it (none when it is only a prefix) and the names below it. Built once; read-only after.
 */
class PathNode {
  /** The conditions of the path ending here. */
  readonly conditions: Condition[] = [];
  readonly children: PathNode[] = [];
  /**
   * Whether every condition here and below is `exists: false`, so that a missing value here
   * (or one that is not an object, for the names below) satisfies the whole subtree.
   */
  missingOk = true;

  constructor(
    readonly name: string,
    /** Whether Object.prototype answers the name, so ownership must be checked. */
    readonly inherited: boolean,
  ) {}
}

/** Whether the subtree of `node` holds, `parent` being the object that may hold `node.name`. */
function matchNode(node: PathNode, parent: JsonObject): boolean {
  const name = node.name;
  const v = node.inherited && !hasOwn(parent, name) ? undefined : parent[name];
  if (v === undefined) return node.missingOk;
  const conditions = node.conditions;
  for (let i = 0; i < conditions.length; i++) {
    if (!holds(conditions[i] as Condition, v)) return false;
  }
  const children = node.children;
  if (children.length === 0) return true;
  if (typeof v !== 'object' || v === null || isArray(v)) {
    // The paths below run through a non-object: they are all missing.
    for (let i = 0; i < children.length; i++) {
      if (!(children[i] as PathNode).missingOk) return false;
    }
    return true;
  }
  for (let i = 0; i < children.length; i++) {
    if (!matchNode(children[i] as PathNode, v)) return false;
  }
  return true;
}

function matchAll(roots: readonly PathNode[], notification: JsonObject | undefined): boolean {
  if (notification === undefined) return false;
  for (let i = 0; i < roots.length; i++) {
    if (!matchNode(roots[i] as PathNode, notification)) return false;
  }
  return true;
}

/** The node of a path in the tree under `roots`, made as needed. */
function nodeOf(roots: PathNode[], names: readonly string[]): PathNode {
  let level = roots;
  let node: PathNode | undefined;
  for (const name of names) {
    node = level.find((n) => n.name === name);
    if (node === undefined) {
      node = new PathNode(name, isInherited(name));
      level.push(node);
    }
    level = node.children;
  }
  return node as PathNode;
}

/** Sets `missingOk` bottom-up; returns the node's. */
function settle(node: PathNode): boolean {
  let ok = node.conditions.every((c) => c.op === OP_EXISTS && !c.exists);
  for (const child of node.children) ok = settle(child) && ok;
  node.missingOk = ok;
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Compiling

class FilterError extends Error {}

const EMPTY: CompiledFilter = Object.freeze({
  key: '',
  conditions: 0,
  matches: (): boolean => true,
});

/** Canonical text of a value inside a filter (`op` undefined: a plain value), or a FilterError. */
function canonicalOperand(path: string, op: string | undefined, v: Json): string {
  const text = canonical(v);
  if (text === undefined) {
    throw new FilterError(`filter ${quote(path)}: ${op === undefined ? 'the value' : `the value of ${quote(op)}`} is not JSON`);
  }
  return text;
}

function compilePath(path: string): string[] {
  if (path === '') throw new FilterError('filter path must not be empty');
  const names = path.split('.');
  for (const name of names) {
    if (name === '') throw new FilterError(`filter path ${quote(path)} has an empty name (write names separated by single dots)`);
  }
  return names;
}

/** One operator of an operator object: the condition and its canonical text. */
function compileOperator(path: string, name: string, code: OpCode, operand: Json): { condition: Condition; text: string } {
  switch (code) {
    case OP_NE: {
      const text = canonicalOperand(path, name, operand);
      return { condition: new Condition(OP_NE, compileEqual(operand), null, 0, null, false), text };
    }
    case OP_IN:
    case OP_NIN: {
      if (!Array.isArray(operand) || operand.length === 0) {
        throw new FilterError(`filter ${quote(path)}: ${quote(name)} needs a non-empty array of values`);
      }
      // Sorted by canonical text, without duplicates: the key does not depend on list order.
      const byText = new Map<string, Json>();
      for (const item of operand as readonly Json[]) byText.set(canonicalOperand(path, name, item), item);
      const texts = [...byText.keys()].sort();
      const primitives = new Set<Primitive>();
      const structured: Equal[] = [];
      for (const t of texts) {
        const item = byText.get(t) as Json;
        if (typeof item === 'object' && item !== null) structured.push(compileEqual(item));
        else primitives.add(item);
      }
      return {
        condition: new Condition(code, null, new ValueSet(primitives, structured), 0, null, false),
        text: `[${texts.join(',')}]`,
      };
    }
    case OP_EXISTS:
      if (typeof operand !== 'boolean') throw new FilterError(`filter ${quote(path)}: "exists" needs true or false`);
      return { condition: new Condition(OP_EXISTS, null, null, 0, null, operand), text: operand ? 'true' : 'false' };
    default:
      if (typeof operand === 'number' && Number.isFinite(operand)) {
        return { condition: new Condition(code, null, null, operand, null, false), text: JSON.stringify(operand) };
      }
      if (typeof operand === 'string') {
        return { condition: new Condition(code, null, null, 0, operand, false), text: JSON.stringify(operand) };
      }
      throw new FilterError(`filter ${quote(path)}: ${quote(name)} needs a number or a string`);
  }
}

function compileMembers(filter: JsonObject): CompiledFilter {
  const roots: PathNode[] = [];
  const keyParts: string[] = [];
  let count = 0;
  const tooMany = (): FilterError =>
    new FilterError(`filter has more than ${MAX_FILTER_CONDITIONS} conditions (each operator on a path is one)`);

  for (const path of Object.keys(filter).sort()) {
    const value = filter[path] as Json;
    const names = compilePath(path);
    const conditions: Condition[] = [];
    let valueText: string;
    if (isObject(value)) {
      const ops = Object.keys(value).sort();
      if (ops.length === 0) {
        throw new FilterError(`filter ${quote(path)}: an operator object needs at least one operator`);
      }
      const opParts: string[] = [];
      for (const name of ops) {
        const code = OPERATORS.get(name);
        if (code === undefined) {
          throw new FilterError(
            `filter ${quote(path)}: unknown operator ${quote(name)} (known: ne in nin lt lte gt gte exists; to match an object, use {"in":[{...}]})`,
          );
        }
        if (++count > MAX_FILTER_CONDITIONS) throw tooMany();
        const { condition, text } = compileOperator(path, name, code, value[name] as Json);
        conditions.push(condition);
        opParts.push(`${JSON.stringify(name)}:${text}`);
      }
      valueText = `{${opParts.join(',')}}`;
    } else {
      if (++count > MAX_FILTER_CONDITIONS) throw tooMany();
      valueText = canonicalOperand(path, undefined, value);
      conditions.push(new Condition(OP_EQ, compileEqual(value), null, 0, null, false));
    }
    nodeOf(roots, names).conditions.push(...conditions);
    keyParts.push(`${JSON.stringify(path)}:${valueText}`);
  }

  if (count === 0) return EMPTY;
  for (const root of roots) settle(root);
  const tree: readonly PathNode[] = roots;
  return Object.freeze({
    key: `{${keyParts.join(',')}}`,
    conditions: count,
    matches: (notification: JsonObject | undefined): boolean => matchAll(tree, notification),
  });
}

/**
 * Validates and compiles a filter. `undefined` is the empty filter. `sentBytes`: the length in
 * bytes of the filter's JSON text as the client sent it, when the caller knows it.
 */
export function compileFilter(filter: Json | undefined, sentBytes?: number): CompileResult {
  if (filter === undefined) return { ok: true, filter: EMPTY };
  if (!isObject(filter)) {
    const kind = filter === null ? 'null' : Array.isArray(filter) ? 'an array' : `a ${typeof filter}`;
    return { ok: false, message: `filter must be a JSON object, not ${kind}` };
  }
  let bytes = sentBytes;
  if (bytes === undefined) {
    try {
      bytes = Buffer.byteLength(JSON.stringify(filter));
    } catch {
      return { ok: false, message: 'filter is not JSON' };
    }
  }
  if (bytes > MAX_FILTER_BYTES) {
    return { ok: false, message: `filter is ${bytes} bytes, at most ${MAX_FILTER_BYTES}` };
  }
  try {
    return { ok: true, filter: compileMembers(filter) };
  } catch (error) {
    if (error instanceof FilterError) return { ok: false, message: error.message };
    throw error;
  }
}

/** JSON.parse of a notification payload when it is a JSON object, else undefined. Never throws. */
export function parseNotificationObject(text: string): { readonly [k: string]: Json } | undefined {
  // Cheap pre-check: only text whose first non-whitespace character is '{' can be an object.
  let i = 0;
  const n = text.length;
  let c = 0;
  while (i < n) {
    c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  if (i === n || c !== 0x7b) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}
