/**
 * Road-warrior clients for the thousand-client run (bench/roadWarriors.ts;
 * a child process inside the clients' namespace): sluice's own sans-I/O IKE
 * core holding COUNT client IKE SAs at once against one gateway, over two
 * UDP sockets (IKE, then NAT-T), each from an identity of its own
 * (client-N@rw.sluice.test), asking for a virtual IPv4 address (CP,
 * RFC 7296 §3.15) and one child SA from its address to the gateway's site.
 *
 *   node dist/bench/roadWarriorLoad.js GATEWAY COUNT CONCURRENCY PSK TARGET
 *
 * Phase 1 brings the clients up, CONCURRENCY handshakes in flight, and keeps
 * every SA (nothing is deleted). Phase 2: each client's child SA sends an
 * ICMP echo request from its virtual IP to TARGET (an address behind the
 * gateway), sealed as ESP in UDP (RFC 3948, ChaCha20-Poly1305 per RFC 7634)
 * with the child's own keys; the gateway opens it onto its TUN, the kernel
 * behind it answers, and the reply comes back sealed under that client's
 * inbound SA: it is opened and checked (an echo reply from TARGET to the
 * client's address) before it counts. Unanswered echoes are sent again
 * every second, five times at most.
 *
 * Prints JSON lines: "ready", "established" (count, seconds, rate, failures,
 * distinct virtual IPs), "echoed" (answered, unanswered, sends), then waits
 * for "stop" on stdin (the gateway is measured while every SA is still up)
 * and deletes nothing: the gateway's SAs go when it stops.
 */
import { createDecipheriv } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { performance } from "node:perf_hooks";
import { randomPool } from "../src/ike/randomPool.js";
import { IkeCore } from "../src/ike/core.js";
import type { ChildSaInstall, IkeAction } from "../src/ike/actions.js";
import type { IkePeerConfig } from "../src/ike/config.js";
import { parseIdentity, parseIdentityPattern } from "../src/ike/identity.js";
import { parseEspProposal, parseIkeProposal } from "../src/ike/proposals.js";
import { selectorFromPrefix } from "../src/ike/trafficSelectors.js";
import { icmpEcho4, sealEsp } from "../test/fixtures/espForge.js";

const [gateway = "", countText = "1000", concurrencyText = "32", psk = "", target = "10.77.2.1"] = process.argv.slice(2);
const count = Number(countText);
const concurrency = Number(concurrencyText);
const MARKER = new Uint8Array(4);

function say(object: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

const secret = new TextEncoder().encode(psk);
const peers: IkePeerConfig[] = Array.from({ length: count }, (_, i) => ({
  name: `c${i}`,
  remote: { address: gateway, port: 500 },
  remoteNatTPort: 4500,
  localId: parseIdentity(`client-${i}@rw.sluice.test`),
  remoteId: parseIdentityPattern("%any"),
  psk: () => secret.slice(),
  ikeProposals: [parseIkeProposal("chacha20poly1305-prfsha256-x25519")],
  espProposals: [parseEspProposal("chacha20poly1305", [{ id: 28, keyBits: 256 }])],
  // A client asks from any address; the gateway narrows this side to the virtual IP it leases.
  localTs: [selectorFromPrefix("0.0.0.0/0")],
  remoteTs: [selectorFromPrefix(`${target}/32`)],
  moreChildren: [],
  vips: [4],
  start: "none",
  dpdMs: 0,
  dpdAction: "clear",
  ikeLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0 },
  childLifetime: { rekeyMs: 0, lifeMs: 0, randMs: 0, rekeyBytes: 0, lifeBytes: 0, rekeyPackets: 0, lifePackets: 0 },
}));

async function open(): Promise<Socket> {
  const socket = createSocket({ type: "udp4", recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
  return socket;
}

const ike = await open();
const natT = await open();
const core = new IkeCore({
  peers,
  random: randomPool(),
  retransmit: { timeoutMs: 1000, base: 1.5, tries: 5 },
  local: { address: "0.0.0.0", ikePort: ike.address().port, natTPort: natT.address().port },
});

const children = new Map<string, ChildSaInstall>();
const byInboundSpi = new Map<number, ChildSaInstall>();
const failures: Record<string, number> = {};
let started = 0;
let settled = 0;
const begin = performance.now();
let establishedAt = 0;
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
      children.set(action.child.peerName, action.child);
      byInboundSpi.set(action.child.inbound.spi, action.child);
      queueMicrotask(settle);
    } else if (action.type === "log" && action.event === "ike-failed") {
      const reason = String(action.fields.reason);
      failures[reason] = (failures[reason] ?? 0) + 1;
      queueMicrotask(settle);
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

function next(): void {
  if (started >= count) return;
  const name = `c${started++}`;
  run(core.initiate(name, performance.now()));
}

function settle(): void {
  settled++;
  if (settled === count) {
    establishedAt = performance.now();
    const seconds = (establishedAt - begin) / 1000;
    const vips = new Set([...children.values()].map((c) => c.localPrefixes.join(" ")));
    say({ event: "established", established: children.size, seconds, rate: children.size / seconds, failures, distinctVips: vips.size, retransmits: core.counters.retransmits });
    void echoes();
  } else next();
}

// ---------------------------------------------------------------- phase 2: one echo through every child SA

const answered = new Set<string>();
let sends = 0;
let badReplies = 0;

function vipOf(child: ChildSaInstall): string {
  return child.localPrefixes[0]!.split("/")[0]!;
}

function sendEcho(child: ChildSaInstall, attempt: number): void {
  const index = Number(child.peerName.slice(1));
  const inner = icmpEcho4(vipOf(child), target, index, attempt);
  const esp = sealEsp({ key: Buffer.from(child.outbound.key), salt: Buffer.from(child.outbound.salt) }, child.outbound.spi, BigInt(attempt), inner, { esn: child.esn });
  natT.send(esp, child.remote.port, child.remote.address);
  sends++;
}

/** Opens an ESP-in-UDP reply with its child's inbound keys (RFC 4303 §3.4, RFC 7634 §3): an echo reply from `target` to the client's address counts. */
function onEsp(datagram: Buffer): void {
  const child = byInboundSpi.get(datagram.readUInt32BE(0));
  if (child === undefined || datagram.length < 8 + 8 + 16 + 2) return void badReplies++;
  const aad = child.esn ? undefined : datagram.subarray(0, 8);
  try {
    const decipher = createDecipheriv("chacha20-poly1305", Buffer.from(child.inbound.key), Buffer.concat([Buffer.from(child.inbound.salt), datagram.subarray(8, 16)]), { authTagLength: 16 });
    const body = datagram.subarray(16, datagram.length - 16);
    if (aad) decipher.setAAD(aad, { plaintextLength: body.length });
    decipher.setAuthTag(datagram.subarray(datagram.length - 16));
    const plain = Buffer.concat([decipher.update(body), decipher.final()]);
    const inner = plain.subarray(0, plain.length - 2 - plain[plain.length - 2]!);
    const src = [...inner.subarray(12, 16)].join(".");
    const dst = [...inner.subarray(16, 20)].join(".");
    if (inner[9] === 1 && inner[20] === 0 && src === target && dst === vipOf(child)) answered.add(child.peerName);
    else badReplies++;
  } catch {
    badReplies++;
  }
}

async function echoes(): Promise<void> {
  const list = [...children.values()];
  for (let attempt = 1; attempt <= 5; attempt++) {
    const missing = list.filter((c) => !answered.has(c.peerName));
    if (missing.length === 0) break;
    // In slices, so that neither our socket buffer nor the gateway's overflows in one burst.
    for (let i = 0; i < missing.length; i += 64) {
      for (const child of missing.slice(i, i + 64)) sendEcho(child, attempt);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const deadline = performance.now() + 1000;
    while (performance.now() < deadline && answered.size < list.length) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  say({ event: "echoed", answered: answered.size, unanswered: children.size - answered.size, sends, badReplies, seconds: (performance.now() - establishedAt) / 1000 });
}

ike.on("message", (datagram, from) => run(core.receive(datagram, { local: { address: "0.0.0.0", port: ike.address().port }, remote: { address: from.address, port: from.port }, natT: false }, performance.now())));
natT.on("message", (datagram, from) => {
  if (datagram.length < 4) return;
  if (datagram.readUInt32BE(0) !== 0) return onEsp(datagram);
  run(core.receive(datagram.subarray(4), { local: { address: "0.0.0.0", port: natT.address().port }, remote: { address: from.address, port: from.port }, natT: true }, performance.now()));
});

process.stdin.setEncoding("utf8").on("data", (text: string) => {
  if (text.includes("stop")) process.exit(0);
});
say({ event: "ready" });
for (let i = 0; i < Math.min(concurrency, count); i++) next();
