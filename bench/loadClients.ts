/**
 * What the IKE load generators share (ikeLoad.ts: handshakes per second;
 * roadWarriorLoad.ts: a thousand clients held at once): sluice's own
 * sans-I/O IKE core acting as many clients, each an IkePeerConfig of its
 * own, over two UDP sockets (IKE on one, then NAT-T with the non-ESP marker
 * on the other, RFC 3948 §2.2), its actions carried out and its timers
 * armed here. What a generator does with a child that came up or a
 * handshake that failed is its own: `onAction` gets every action but the
 * sends, `onEsp` every ESP datagram on the NAT-T socket.
 */
import { createSocket, type Socket } from "node:dgram";
import { performance } from "node:perf_hooks";
import { randomPool } from "../src/ike/randomPool.js";
import { IkeCore } from "../src/ike/core.js";
import type { IkeAction } from "../src/ike/actions.js";
import { INERT_PEER, type IkePeerConfig } from "../src/ike/config.js";
import { join } from "node:path";
import { loadLocalCredential, loadPeerTrust } from "../src/endpoint/credentials.js";
import { parseIdentity, parseIdentityPattern } from "../src/ike/identity.js";
import { parseEspProposal, parseIkeProposal } from "../src/ike/proposals.js";
import { selectorFromPrefix } from "../src/ike/trafficSelectors.js";

/** The settings every bench client has: an inert peer (no lifetimes, no liveness checks, started by the generator). */
export const BENCH_CLIENT = { ...INERT_PEER, remoteNatTPort: 4500 } as const satisfies Partial<IkePeerConfig>;

/**
 * The clients of a handshake load: `count` peers named c0, c1, …, each with
 * an identity of its own (client-N@bench.sluice.test) asking for a /32 of its
 * own (10.100.x.y) behind the responder's 10.77.2.0/24, ChaCha20-Poly1305
 * for the child. With `certs` each authenticates with its own certificate
 * (DIR holds key.pem and client-N.pem, from test/fixtures/pki.ts's
 * benchCertificates; its ID is the certificate's DNS name) and checks the
 * responder's against CA; else with the PSK.
 */
export function benchClientPeers(options: { count: number; responder: string; psk: Uint8Array; proposal: string; certs?: { dir: string; ca: string } }): IkePeerConfig[] {
  const { certs, psk } = options;
  const trust = certs ? loadPeerTrust([certs.ca], undefined) : undefined;
  return Array.from({ length: options.count }, (_, i) => ({
    name: `c${i}`,
    ...BENCH_CLIENT,
    remote: { address: options.responder, port: 500 },
    localId: parseIdentity(certs ? `client-${i}.bench.sluice.test` : `client-${i}@bench.sluice.test`),
    remoteId: parseIdentityPattern("%any"),
    psk: () => psk.slice(),
    ...(certs && trust ? {
      localAuth: { method: "pubkey" as const, credential: loadLocalCredential({ certFile: join(certs.dir, `client-${i}.pem`), keyFile: join(certs.dir, "key.pem"), rsaPss: false, sendCert: "always" }).credential },
      remoteAuth: { method: "pubkey" as const, trust },
    } : {}),
    ikeProposals: [parseIkeProposal(options.proposal)],
    espProposals: [parseEspProposal("chacha20poly1305", [{ id: 28, keyBits: 256 }])],
    localTs: [selectorFromPrefix(`10.100.${i >> 8}.${i & 255}/32`)],
    remoteTs: [selectorFromPrefix("10.77.2.0/24")],
  }));
}

/**
 * sluice's DoS limits off, for a responder whose load comes from one address,
 * many IKE SAs at once: what its cookies, per-source limits and rate limit are
 * there to stop (strongSwan's are raised likewise in the benches).
 */
export const NO_DOS_LIMITS = "[ike]\ncookie_threshold = 0\nblock_threshold = 0\ninit_limit_half_open = 0\ninit_rate_per_source = 0";

const MARKER = new Uint8Array(4);

/** One JSON line on stdout: how a generator reports to the bench that runs it. */
export function say(object: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

export interface LoadClients {
  readonly core: IkeCore;
  readonly natT: Socket;
  /** Carries out the core's actions (sends here, the rest to onAction) and re-arms its timer. */
  run(actions: IkeAction[]): void;
}

/**
 * Opens the two sockets (4 MiB buffers) and the core for `peers`. A lost
 * datagram costs a second, not four (`retransmit`): the benches count rate,
 * not patience.
 */
export async function openLoadClients(peers: IkePeerConfig[], options: { tries: number; onAction: (action: IkeAction) => void; onEsp?: (datagram: Buffer) => void }): Promise<LoadClients> {
  const open = async (): Promise<Socket> => {
    const socket = createSocket({ type: "udp4", recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
    return socket;
  };
  const ike = await open();
  const natT = await open();
  const core = new IkeCore({
    peers,
    random: randomPool(),
    retransmit: { timeoutMs: 1000, base: 1.5, tries: options.tries },
    local: { address: "0.0.0.0", ikePort: ike.address().port, natTPort: natT.address().port },
  });
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    if (timer) clearTimeout(timer);
    const at = core.nextTimer();
    if (at === undefined) return;
    timer = setTimeout(() => run(core.timeout(performance.now())), Math.max(0, at - performance.now()));
  };
  const run = (actions: IkeAction[]): void => {
    for (const action of actions) {
      if (action.type !== "send") {
        options.onAction(action);
      } else if (action.natT) {
        const out = new Uint8Array(4 + action.datagram.length);
        out.set(MARKER);
        out.set(action.datagram, 4);
        natT.send(out, action.remote.port, action.remote.address);
      } else {
        ike.send(action.datagram, action.remote.port, action.remote.address);
      }
    }
    arm();
  };
  // Each socket's own address, once: socket.address() per datagram was a system call each.
  const ikeLocal = { address: "0.0.0.0", port: ike.address().port };
  const natTLocal = { address: "0.0.0.0", port: natT.address().port };
  ike.on("message", (datagram, from) => run(core.receive(datagram, { local: ikeLocal, remote: { address: from.address, port: from.port }, natT: false }, performance.now())));
  natT.on("message", (datagram, from) => {
    if (datagram.length < 4) return; // a keepalive
    if (datagram.readUInt32BE(0) !== 0) return options.onEsp?.(datagram);
    run(core.receive(datagram.subarray(4), { local: natTLocal, remote: { address: from.address, port: from.port }, natT: true }, performance.now()));
  });
  return { core, natT, run };
}
