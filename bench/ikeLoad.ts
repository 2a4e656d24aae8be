/**
 * The IKE load generator of `npm run bench -- ike` (run as a child process
 * inside the bench's initiator namespace): sluice's own sans-I/O IKE core
 * driving many IKE SAs at once against one responder, over two UDP sockets
 * (IKE, then NAT-T with the non-ESP marker), as road-warrior clients would.
 *
 *   node dist/bench/ikeLoad.js RESPONDER COUNT CONCURRENCY PSK [PROPOSAL] [--certs DIR CA] [--warmup N]
 *
 * With --warmup, N handshakes go first and are not counted: both sides'
 * JIT compilers and caches are warm when counting starts, as they are on a
 * gateway that has run for a while. sluice's IKE code is compiled by V8
 * while it runs: counted from a cold start, 2000 handshakes cost it
 * 1.4-1.7 ms of CPU each; 8000 counted after 2000 others, 0.8-1.1 ms.
 * strongSwan is compiled ahead. A "warm" line says when counting starts.
 *
 * With --certs each client authenticates with a certificate instead of the
 * PSK (DIR holds key.pem and client-N.pem, made by test/fixtures/pki.ts's
 * benchCertificates; its ID is the certificate's DNS name) and checks the
 * responder's certificate against CA: certificate handshakes, each side
 * signing and verifying one signature and a chain.
 *
 * Each handshake is IKE_SA_INIT + IKE_AUTH with one child SA, from a client
 * identity of its own (client-N@bench.sluice.test) asking for a /32 of its
 * own (10.100.x.y) behind the responder's 10.77.2.0/24. A finished one is
 * deleted (INFORMATIONAL) so the responder's SA count stays near CONCURRENCY
 * and the next starts. Prints one JSON line when done: handshakes, seconds,
 * failures by reason, latency percentiles (first request to child up), and
 * the generator's own CPU time (user + system, ms).
 */
import { performance } from "node:perf_hooks";
import type { IkeAction } from "../src/ike/actions.js";
import { benchClientPeers, openLoadClients, say } from "./loadClients.js";

let argv = process.argv.slice(2);
const warmupAt = argv.indexOf("--warmup");
const warmup = warmupAt < 0 ? 0 : Number(argv[warmupAt + 1]);
if (warmupAt >= 0) argv = [...argv.slice(0, warmupAt), ...argv.slice(warmupAt + 2)];
const certsAt = argv.indexOf("--certs");
const certs = certsAt < 0 ? undefined : { dir: argv[certsAt + 1]!, ca: argv[certsAt + 2]! };
const [responder = "", countText = "1000", concurrencyText = "32", psk = "", proposal = "chacha20poly1305-prfsha256-x25519"] = certsAt < 0 ? argv : argv.slice(0, certsAt);
/** Handshakes in all: the warm-up's, then the counted ones. */
const count = warmup + Number(countText);
const concurrency = Number(concurrencyText);
const secret = new TextEncoder().encode(psk);
const peers = benchClientPeers({ count: concurrency, responder, psk: secret, proposal, certs });

let started = 0;
let completed = 0;
const failures: Record<string, number> = {};
const latencies: number[] = [];
const startedAt = new Map<string, number>();

function onAction(action: IkeAction): void {
  if (action.type === "child-up") {
    const name = action.child.peerName;
    completed++;
    latencies.push(performance.now() - startedAt.get(name)!);
    if (completed === warmup) startCounting();
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

const { core, run } = await openLoadClients(peers, { tries: 4, onAction });
let begin = performance.now();
let cpuBefore = process.cpuUsage();
let retransmitsBefore = 0;

/** The warm-up is over: what is counted starts here (the bench reads the responder's CPU on "warm"). */
function startCounting(): void {
  begin = performance.now();
  cpuBefore = process.cpuUsage();
  retransmitsBefore = core.counters.retransmits;
  latencies.length = 0;
  for (const reason of Object.keys(failures)) delete failures[reason];
  say({ event: "warm", handshakes: warmup });
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
  const cpu = process.cpuUsage(cpuBefore);
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const counted = completed - warmup;
  say({ event: "done", handshakes: counted, seconds, rate: counted / seconds, failures, latencyMs: { p50: at(0.5), p90: at(0.9), p99: at(0.99) }, retransmits: core.counters.retransmits - retransmitsBefore, cpuMs: (cpu.user + cpu.system) / 1000 });
  process.exit(0);
}

say({ event: "ready" });
for (const peer of peers) next(peer.name);
