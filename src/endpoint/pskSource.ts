/**
 * Pre-shared keys for IKE peers (RFC 7296 §2.15), from a file or an
 * environment variable, never from the config itself.
 *
 * - A peer with one remote ID: the file (or variable) holds the PSK; text,
 *   or hex after "0x". Surrounding whitespace is ignored.
 * - A peer whose remote ID is a pattern (`%any`, `*@example.org`): the file
 *   holds one line per initiator, `ID SECRET` (the same two forms for the
 *   secret; `#` starts a comment), so one `[[peer]]` serves many clients,
 *   each with a secret of its own. A file with nothing but one secret gives
 *   every ID the pattern matches the same one (a group PSK, as a strongSwan
 *   secret without ids): simpler, and weaker, since any client can then
 *   impersonate the gateway to the others.
 *
 * Why a minimum length: with a PSK, one captured or provoked IKE_AUTH lets
 * an attacker test guesses offline (RFC 7296 §2.15 asks for keys as strong
 * as the negotiated ones); 16 bytes is the least this accepts. Secrets are
 * read when the endpoint starts and on every reload (SIGHUP), checked then
 * (a start or reload with an unreadable or weak key fails with one line),
 * and handed to the IKE core as fresh copies it wipes after use. No error
 * or log line contains a secret.
 */
import { formatIdentity, parseIdentity, parseIdentityPattern, type Identity } from "../ike/identity.js";
import type { KeySource } from "./configValues.js";
import { readSource } from "./keys.js";

const MIN_PSK_BYTES = 16;

function describe(source: KeySource): string {
  return "file" in source ? `file ${source.file}` : `environment variable ${source.env}`;
}

function secretBytes(text: string, where: string): Uint8Array {
  const bytes = /^0x[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? Uint8Array.from(Buffer.from(text.slice(2), "hex")) : new TextEncoder().encode(text);
  if (bytes.length < MIN_PSK_BYTES) throw new Error(`the pre-shared key in ${where} is too short (${bytes.length} bytes): give at least ${MIN_PSK_BYTES}, since a weak PSK can be guessed offline from one handshake`);
  return bytes;
}

/** Identities compare by type and canonical text (names without case). */
function idKey(id: Identity): string {
  return `${id.type}:${formatIdentity(id).toLowerCase()}`;
}

/**
 * Loads a peer's PSK(s) now (throwing an Error that names the source and the
 * problem, never the secret) and returns the lookup the IKE core calls.
 * @example
 * ```ts
 * const psk = loadPsks({ file: "/etc/sluice/clients.psk" }, "*@example.org");
 * const key = psk(parseIdentity("alice@example.org"));   // a copy, or undefined
 * ```
 */
export function loadPsks(source: KeySource, remoteId: string, env?: NodeJS.ProcessEnv): (id: Identity | undefined) => Uint8Array | undefined {
  const where = describe(source);
  const text = readSource(source, env);
  const lines = text.split("\n").map((raw) => raw.replace(/#.*$/, "").trim()).filter((line) => line !== "");
  if (parseIdentityPattern(remoteId).kind === "exact" || (lines.length === 1 && !/\s/.test(lines[0]!))) {
    const secret = secretBytes(parseIdentityPattern(remoteId).kind === "exact" ? text.trim() : lines[0]!, where);
    return () => secret.slice();
  }
  const secrets = new Map<string, Uint8Array>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const match = /^(\S+)\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`${where}, line ${i + 1}: expected "ID SECRET"`);
    let id: Identity;
    try {
      id = parseIdentity(match[1]!);
    } catch (error) {
      throw new Error(`${where}, line ${i + 1}: ${(error as Error).message}`);
    }
    secrets.set(idKey(id), secretBytes(match[2]!, `${where}, line ${i + 1}`));
  });
  if (secrets.size === 0) throw new Error(`${where} holds no "ID SECRET" line for the pattern ${remoteId}`);
  return (id) => (id === undefined ? undefined : secrets.get(idKey(id))?.slice());
}
