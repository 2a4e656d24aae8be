/**
 * `npm run bench -- ike --ike-parts core`: what one handshake costs the IKE
 * core itself, with no socket, log, engine or other process in the way.
 *
 * Two sans-I/O cores in this process, as in the load bench (ikeLoad.ts):
 * an initiator acting as CONCURRENCY road-warrior clients and a responder
 * with one wildcard peer, datagrams handed from one to the other in a
 * queue. Each handshake is IKE_SA_INIT + IKE_AUTH (PSK, ChaCha20-Poly1305,
 * PRF-HMAC-SHA256, X25519, one child SA) and the INFORMATIONAL that deletes
 * it; each side's time is the time spent inside its own core's calls. The
 * same again with ECDSA P-256 certificates both ways instead of the PSK.
 *
 * Why this part: the load bench's figure is the responder's whole process
 * (sockets, logging, the data plane's SA table, garbage collection) while
 * a generator on the same 2 cores competes with it; this one says how much
 * of that is the protocol work, and the floor beneath it: the same
 * handshake's public-key operations alone (each side's X25519 key pair and
 * shared secret, through the core's own KeyExchange), measured in the same
 * round.
 */
import { performance } from "node:perf_hooks";
import type { IkeAction } from "../src/ike/actions.js";
import type { IkePeerConfig } from "../src/ike/config.js";
import { IkeCore } from "../src/ike/core.js";
import { createKeyExchange } from "../src/ike/crypto/keyExchange.js";
import { parseIdentity, parseIdentityPattern } from "../src/ike/identity.js";
import { parseEspProposal, parseIkeProposal } from "../src/ike/proposals.js";
import { randomPool } from "../src/ike/randomPool.js";
import { selectorFromPrefix } from "../src/ike/trafficSelectors.js";
import type { Path } from "../src/ike/index.js";
import { BENCH_CLIENT, benchClientPeers } from "./loadClients.js";
import { loadLocalCredential, loadPeerTrust } from "../src/endpoint/credentials.js";
import { benchCertificates, createPki, type BenchCertificates } from "../test/fixtures/pki.js";
import { median } from "./measure.js";

export interface IkeCoreRound {
  auth: "psk" | "ecdsa-p256";
  handshakes: number;
  /** Time inside each core's calls per handshake, µs. */
  initiatorUs: number;
  responderUs: number;
  /** One side's X25519 key pair + shared secret alone, µs (the floor of each side's cost). */
  x25519Us: number;
}

const PSK = new TextEncoder().encode("sluice-bench-core-psk-0123456789");
const PROPOSAL = "chacha20poly1305-prfsha256-x25519";
const INITIATOR = "10.0.0.1";
const RESPONDER = "10.0.0.2";

/** Certificate authentication both ways instead of the PSK: each client its own certificate (one key), the gateway its own. */
type Certs = Pick<BenchCertificates, "clientDir" | "gateway" | "ca">;

function gatewayPeer(certs: Certs | undefined): IkePeerConfig {
  return {
    name: "clients",
    ...BENCH_CLIENT,
    remote: undefined,
    localId: parseIdentity(certs ? certs.gateway.id : "b.sluice.test"),
    remoteId: parseIdentityPattern(certs ? "%any" : "*@bench.sluice.test"),
    psk: () => PSK.slice(),
    ...(certs ? {
      localAuth: { method: "pubkey" as const, credential: loadLocalCredential({ certFile: certs.gateway.cert, keyFile: certs.gateway.key, rsaPss: false, sendCert: "always" }).credential },
      remoteAuth: { method: "pubkey" as const, trust: loadPeerTrust([certs.ca], undefined) },
    } : {}),
    ikeProposals: [parseIkeProposal(PROPOSAL)],
    espProposals: [parseEspProposal("chacha20poly1305", [{ id: 28, keyBits: 256 }])],
    localTs: [selectorFromPrefix("10.77.2.0/24")],
    remoteTs: [selectorFromPrefix("10.100.0.0/16")],
  };
}

/** `count` handshakes, `concurrency` at once, between two cores in this process (PSK, or `certs` both ways). */
export function runCoreRound(count: number, concurrency: number, certs?: Certs): IkeCoreRound {
  const local = (address: string): { address: string; ikePort: number; natTPort: number } => ({ address, ikePort: 500, natTPort: 4500 });
  const initiator = new IkeCore({ peers: benchClientPeers({ count: concurrency, responder: RESPONDER, psk: PSK, proposal: PROPOSAL, certs: certs && { dir: certs.clientDir, ca: certs.ca } }), random: randomPool(), local: local(INITIATOR) });
  // The responder's DoS limits are off: one source, many half-open SAs at once (as in the load bench).
  const responder = new IkeCore({ peers: [gatewayPeer(certs)], random: randomPool(), local: local(RESPONDER), dos: { cookieThreshold: 0, blockThreshold: 0, initLimitHalfOpen: 0, initRatePerSource: 0 } });
  const wire: { to: IkeCore; datagram: Uint8Array; natT: boolean }[] = [];
  const up: string[] = [];
  const spent = new Map<IkeCore, number>([[initiator, 0], [responder, 0]]);
  let started = 0;
  let completed = 0;
  const call = (core: IkeCore, f: () => IkeAction[]): void => {
    const begin = performance.now();
    const actions = f();
    spent.set(core, spent.get(core)! + performance.now() - begin);
    for (const action of actions) {
      if (action.type === "send") wire.push({ to: core === initiator ? responder : initiator, datagram: action.datagram, natT: action.natT });
      else if (action.type === "child-up" && core === initiator) up.push(action.child.peerName);
      else if (action.type === "log" && action.event === "ike-failed") throw new Error(`bench handshake failed: ${String(action.fields.reason)}`);
    }
  };
  const start = (name: string): void => {
    if (started >= count) return;
    started++;
    call(initiator, () => initiator.initiate(name, performance.now()));
  };
  const deliver = (sent: { to: IkeCore; datagram: Uint8Array; natT: boolean }): void => {
    const port = sent.natT ? 4500 : 500;
    const toResponder = sent.to === responder;
    const path: Path = { local: { address: toResponder ? RESPONDER : INITIATOR, port }, remote: { address: toResponder ? INITIATOR : RESPONDER, port }, natT: sent.natT };
    call(sent.to, () => sent.to.receive(sent.datagram, path, performance.now()));
  };
  for (let i = 0; i < concurrency; i++) start(`c${i}`);
  while (completed < count) {
    const sent = wire.shift();
    if (sent !== undefined) {
      deliver(sent);
      continue;
    }
    const name = up.shift();
    if (name === undefined) throw new Error(`bench stalled after ${completed} handshakes`);
    completed++;
    call(initiator, () => initiator.terminate(name, performance.now()));
    start(name);
  }
  // Let the last deletes finish, so neither side's cost is cut short.
  for (let sent = wire.shift(); sent !== undefined; sent = wire.shift()) deliver(sent);
  return { auth: certs ? "ecdsa-p256" : "psk", handshakes: count, initiatorUs: (spent.get(initiator)! / count) * 1000, responderUs: (spent.get(responder)! / count) * 1000, x25519Us: x25519Floor(count) };
}

/** One side's X25519 work per handshake: a key pair and a shared secret with the peer's value. */
function x25519Floor(count: number): number {
  const random = randomPool();
  const peer = createKeyExchange(31, random);
  const begin = performance.now();
  for (let i = 0; i < count; i++) {
    const own = createKeyExchange(31, random);
    own.sharedSecret(peer.publicValue);
    own.wipe();
  }
  return ((performance.now() - begin) / count) * 1000;
}

/**
 * `rounds` rounds of each authentication, PSK and ECDSA P-256 certificates
 * (a test PKI made with openssl for the run), each after one untimed
 * warm-up round (the first compiles everything).
 */
export function runCoreSuite(options: { rounds: number; count: number; concurrency: number }, log: (line: string) => void): IkeCoreRound[] {
  const rounds: IkeCoreRound[] = [];
  const pki = createPki();
  try {
    for (const auth of ["psk", "ecdsa-p256"] as const) {
      const certs = auth === "psk" ? undefined : benchCertificates(pki, auth, options.concurrency);
      runCoreRound(Math.min(500, options.count), options.concurrency, certs);
      for (let round = 1; round <= options.rounds; round++) {
        const r = runCoreRound(options.count, options.concurrency, certs);
        rounds.push(r);
        log(`ike core ${auth} round ${round}: initiator ${r.initiatorUs.toFixed(0)} µs, responder ${r.responderUs.toFixed(0)} µs per handshake; X25519 alone ${r.x25519Us.toFixed(0)} µs per side`);
      }
    }
  } finally {
    pki.destroy();
  }
  return rounds;
}

export function formatCoreTable(rounds: IkeCoreRound[]): string {
  const lines = [`the IKE core alone, µs per handshake (two cores in one process, no I/O; median of rounds × ${rounds[0]?.handshakes ?? 0}):`];
  for (const auth of ["psk", "ecdsa-p256"] as const) {
    const of = rounds.filter((r) => r.auth === auth);
    if (of.length === 0) continue;
    const m = (f: (r: IkeCoreRound) => number): string => median(of.map(f)).toFixed(0).padStart(5);
    lines.push(`  ${(auth === "psk" ? "PSK" : "ECDSA P-256 certificates").padEnd(25)} initiator ${m((r) => r.initiatorUs)}, responder ${m((r) => r.responderUs)}; X25519 key pair + shared secret ${m((r) => r.x25519Us)} of each side's`);
  }
  return lines.join("\n");
}
