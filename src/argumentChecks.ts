/**
 * Argument checks shared by the public entry points (sluice/crypto,
 * sluice/esp, the engine, SA parameters). Internal: the package exports
 * only the APIs that use them. Their messages name the argument and what it
 * was, never its contents: a key passed in the wrong place must not end up
 * in a log line.
 */

/** Throws a TypeError naming `name` unless value is a Uint8Array (of `length` bytes, if given). */
export function checkBytes(name: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${name} must be a Uint8Array, got ${describe(value)}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new TypeError(`${name} must be ${length} bytes, got ${value.length}`);
  }
}

/** Names a value for an error message without echoing its contents. */
export function describe(value: unknown): string {
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${value.byteLength} bytes)`;
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}
