/**
 * The IKE load generator of `npm run bench -- ike` (run as a child process
 * inside the bench's initiator namespace): sluice's own sans-I/O IKE core
 * driving many IKE SAs at once against one responder, over two UDP sockets
 * (IKE, then NAT-T with the non-ESP marker), as road-warrior clients would.
 *
 *   node dist/bench/ikeLoad.js RESPONDER COUNT CONCURRENCY PSK [PROPOSAL]
 *
 * Each handshake is IKE_SA_INIT + IKE_AUTH with one child SA, from a client
 * identity of its own (client-N@bench.sluice.test) asking for a /32 of its
 * own (10.100.x.y) behind the responder's 10.77.2.0/24. A finished one is
 * deleted (INFORMATIONAL) so the responder's SA count stays near CONCURRENCY
 * and the next starts. Prints one JSON line when done: handshakes, seconds,
 * failures by reason, and latency percentiles (first request to child up).
 */
import { createSocket, type Socket } from "node:dgram";
import { performance } from "node:perf_hooks";
import { randomPool } from "../src/ike/randomPool.js";
import { IkeCore } from "../src/ike/core.js";
import type { IkeAction } from "../src/ike/actions.js";
import type { IkePeerConfig } from "../src/ike/config.js";
import { parseIdentity, parseIdentityPattern } from "../src/ike/identity.js";
import { parseEspProposal, parseIkeProposal } from "../src/ike/proposals.js";
import { selectorFromPrefix } from "../src/ike/trafficSelectors.js";

const [responder = "", countText = "1000", concurrencyText = "32", psk = "", proposal = "chacha20poly1305-prfsha256-x25519"] = process.argv.slice(2);
const count = Number(countText);
const concurrency = Number(concurrencyText);
const MARKER = new Uint8Array(4);

function say(object: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

const secret = new TextEncoder().encode(psk);
const peers: IkePeerConfig[] = Array.from({ length: concurrency }, (_, i) => ({
  name: `c${i}`,
  remote: { address: responder, port: 500 },
  remoteNatTPort: 4500,
  localId: parseIdentity(`client-${i}@bench.sluice.test`),
  remoteId: parseIdentityPattern("%any"),
  psk: () => secret.slice(),
  ikeProposals: [parseIkeProposal(proposal)],
  espProposals: [parseEspProposal("chacha20poly1305", [{ id: 28, keyBits: 256 }])],
  localTs: [selectorFromPrefix(`10.100.${i >> 8}.${i & 255}/32`)],
  remoteTs: [selectorFromPrefix("10.77.2.0/24")],
  moreChildren: [],
  start: "none",
  dpdMs: 0,
  dpdAction: "clear",
  ikeLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0 },
  childLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0, rekeyBytes: 0, lifeBytes: 0, rekeyPackets: 0, lifePackets: 0 },
}));

async function open(): Promise<Socket> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
  return socket;
}

const ike = await open();
const natT = await open();
const core = new IkeCore({
  peers,
  random: randomPool(),
  // A lost datagram costs a second, not four: the bench counts rate, not patience.
  retransmit: { timeoutMs: 1000, base: 1.5, tries: 4 },
  local: { address: "0.0.0.0", ikePort: ike.address().port, natTPort: natT.address().port },
});

let started = 0;
let completed = 0;
const failures: Record<string, number> = {};
const latencies: number[] = [];
const startedAt = new Map<string, number>();
const begin = performance.now();
let timer: NodeJS.Timeout | undefined;

function run(actions: IkeAction[]): void {
  for (const action of actions) {
    if (action.type === "send") {
      if (action.natT) {
        const out = new Uint8Array(4 + action.datagram.length);
        out.set(MARKER);
        out.set(action.datagram, 4);
        natT.send(out, action.remote.port, action.remote.address);
      } else ike.send(action.datagram, action.remote.port, action.remote.address);
    } else if (action.type === "child-up") {
      const name = action.child.peerName;
      completed++;
      latencies.push(performance.now() - startedAt.get(name)!);
      queueMicrotask(() => {
        run(core.terminate(name, performance.now()));
        next(name);
      });
    } else if (action.type === "log" && action.event === "ike-failed") {
      const reason = String(action.fields.reason);
      failures[reason] = (failures[reason] ?? 0) + 1;
      const name = String(action.fields.peer);
      queueMicrotask(() => next(name));
    }
  }
  arm();
}

function arm(): void {
  if (timer) clearTimeout(timer);
  const at = core.nextTimer();
  if (at === undefined) return;
  timer = setTimeout(() => run(core.timeout(performance.now())), Math.max(0, at - performance.now()));
}

function next(name: string): void {
  if (completed >= count) return finish();
  if (started >= count) return;
  started++;
  startedAt.set(name, performance.now());
  run(core.initiate(name, performance.now()));
}

function finish(): void {
  const seconds = (performance.now() - begin) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  say({ event: "done", handshakes: completed, seconds, rate: completed / seconds, failures, latencyMs: { p50: at(0.5), p90: at(0.9), p99: at(0.99) }, retransmits: core.counters.retransmits });
  process.exit(0);
}

ike.on("message", (datagram, from) => run(core.receive(datagram, { local: { address: "0.0.0.0", port: ike.address().port }, remote: { address: from.address, port: from.port }, natT: false }, performance.now())));
natT.on("message", (datagram, from) => {
  if (datagram.length < 4 || datagram.readUInt32BE(0) !== 0) return; // ESP or keepalives: not ours to count
  run(core.receive(datagram.subarray(4), { local: { address: "0.0.0.0", port: natT.address().port }, remote: { address: from.address, port: from.port }, natT: true }, performance.now()));
});

say({ event: "ready" });
for (const peer of peers) next(peer.name);
