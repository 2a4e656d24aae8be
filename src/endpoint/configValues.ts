/**
 * The checkers every config section is read with: each takes a TOML table,
 * a setting's name and the dotted path it sits at, and either returns the
 * value or throws a ConfigError naming the key and the problem
 * ("peer[1].ike.dpd: must be an integer from 0 to 86400, got -1").
 *
 * Why a module of its own: the endpoint's sections (config.ts) and the IKE
 * peers' (ikeConfig.ts) must report errors the same way.
 */
import { isIP } from "node:net";
import { parsePrefix, type Prefix } from "./prefix.js";

/** Where key material comes from: a file or an environment variable. */
export type KeySource = { file: string } | { env: string };

/** A configuration error; `key` is the dotted path of the offending setting. */
export class ConfigError extends Error {
  constructor(readonly key: string, problem: string) {
    super(`${key}: ${problem}`);
    this.name = "ConfigError";
  }
}

export type Table = Record<string, unknown>;

export function table(value: unknown, key: string): Table {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(key, "must be a table");
  return value as Table;
}

export function known(t: Table, key: string, allowed: string[]): void {
  for (const name of Object.keys(t)) {
    if (!allowed.includes(name)) throw new ConfigError(key ? `${key}.${name}` : name, `unknown setting (allowed: ${allowed.join(", ")})`);
  }
}

export function str(t: Table, name: string, key: string, fallback?: string): string {
  const value = t[name] ?? fallback;
  if (typeof value !== "string" || value === "") throw new ConfigError(`${key}${name}`, value === undefined ? "is required" : "must be a non-empty string");
  return value;
}

export function int(t: Table, name: string, key: string, min: number, max: number, fallback?: number): number {
  const value = t[name] ?? fallback;
  if (value === undefined) throw new ConfigError(`${key}${name}`, "is required");
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key}${name}`, `must be an integer from ${min} to ${max}, got ${typeof n === "number" ? n : typeof value}`);
  }
  return n;
}

export function bool(t: Table, name: string, key: string, fallback: boolean): boolean {
  const value = t[name] ?? fallback;
  if (typeof value !== "boolean") throw new ConfigError(`${key}${name}`, "must be true or false");
  return value;
}

export function address(value: string, key: string): string {
  if (isIP(value) === 0) throw new ConfigError(key, `"${value}" is not an IP address`);
  return value;
}

/** "192.0.2.1:4500" or "[2001:db8::1]:4500". */
export function hostPort(value: string, key: string): { address: string; port: number } {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]+):(\d+)$/.exec(value);
  if (!match) throw new ConfigError(key, `"${value}" must be ADDRESS:PORT, with [brackets] around an IPv6 address`);
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw new ConfigError(key, `port ${port} is out of range`);
  return { address: address(match[1]!, key), port };
}

export function keySource(t: Table, base: string, key: string, required: boolean): KeySource | undefined {
  const file = t[`${base}_file`];
  const env = t[`${base}_env`];
  if (t[base] !== undefined) throw new ConfigError(`${key}${base}`, `keys are never inline: use ${base}_file or ${base}_env`);
  if (file !== undefined && env !== undefined) throw new ConfigError(`${key}${base}_file`, `give ${base}_file or ${base}_env, not both`);
  if (file !== undefined) return { file: str(t, `${base}_file`, key) };
  if (env !== undefined) return { env: str(t, `${base}_env`, key) };
  if (required) throw new ConfigError(`${key}${base}_file`, `is required (or ${base}_env)`);
  return undefined;
}


/** A list of prefixes ("10.0.0.0/24"); `allowEmpty` for optional lists. */
export function prefixList(t: Table, name: string, key: string, allowEmpty = false): Prefix[] {
  const raw = t[name];
  if (raw === undefined && allowEmpty) return [];
  if (!Array.isArray(raw) || (raw.length === 0 && !allowEmpty)) throw new ConfigError(`${key}${name}`, "must be a non-empty list of prefixes like [\"10.0.0.0/24\"]");
  return raw.map((text, i) => {
    try {
      return parsePrefix(text as string);
    } catch (error) {
      throw new ConfigError(`${key}${name}[${i}]`, (error as Error).message);
    }
  });
}

/** A list of non-empty strings. */
export function stringList(t: Table, name: string, key: string, fallback: string[]): string[] {
  const raw = t[name] ?? fallback;
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(`${key}${name}`, "must be a non-empty list of strings");
  return raw.map((value, i) => {
    if (typeof value !== "string" || value === "") throw new ConfigError(`${key}${name}[${i}]`, "must be a non-empty string");
    return value;
  });
}

/** A number (integer or not) within bounds, e.g. seconds. */
export function num(t: Table, name: string, key: string, min: number, max: number, fallback: number): number {
  const value = t[name] ?? fallback;
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isFinite(n) || n < min || n > max) throw new ConfigError(`${key}${name}`, `must be a number from ${min} to ${max}, got ${typeof n === "number" ? n : typeof value}`);
  return n;
}

/** One of a few words. */
export function choice<T extends string>(t: Table, name: string, key: string, allowed: readonly T[], fallback: T): T {
  const value = t[name] ?? fallback;
  if (typeof value !== "string" || !allowed.includes(value as T)) throw new ConfigError(`${key}${name}`, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${JSON.stringify(value)}`);
  return value as T;
}
