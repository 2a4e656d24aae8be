/**
 * A handshake between two throwaway cores in memory, run when the IKE shell
 * starts, so that the first real one does not pay for V8 compiling every
 * path of the IKE code and OpenSSL setting up each primitive on first use.
 * Measured here: the first IKE_SA_INIT answered in 40 ms cold against about
 * 1 ms warm, and a first packet through a new tunnel 120 ms after `start`
 * instead of a few. Nothing of it is kept: fresh random keys, a random PSK,
 * no socket, and its SAs are deleted and wiped before it returns.
 */
import { IkeCore } from "./core.js";
import type { IkeAction } from "./actions.js";
import { INERT_PEER, type IkePeerConfig } from "./config.js";
import { parseIdentity, parseIdentityPattern } from "./identity.js";
import { parseEspProposal, parseIkeProposal, type Cipher } from "./proposals.js";
import { selectorFromPrefix } from "./trafficSelectors.js";

/** Negotiates once per group in `groups` (the groups peers will start with), then deletes. */
export function warmUp(random: (length: number) => Uint8Array, groups: readonly string[], espCiphers: readonly Cipher[]): void {
  const psk = random(32);
  const side = (name: string, local: string, remote: string, ike: string, initiator: boolean): IkePeerConfig => ({
    name,
    remote: initiator ? { address: "192.0.2.2", port: 500 } : undefined,
    remoteNatTPort: 4500,
    localId: parseIdentity(local),
    remoteId: parseIdentityPattern(remote),
    psk: () => psk.slice(),
    ikeProposals: [parseIkeProposal(`aes256gcm16-chacha20poly1305-prfsha256-${ike}`)],
    espProposals: [parseEspProposal("chacha20poly1305", espCiphers)],
    localTs: [selectorFromPrefix(initiator ? "10.0.1.0/24" : "10.0.2.0/24")],
    remoteTs: [selectorFromPrefix(initiator ? "10.0.2.0/24" : "10.0.1.0/24")],
    ...INERT_PEER,
  });
  for (const group of groups) {
    const a = new IkeCore({ peers: [side("warm", "a.warm", "b.warm", group, true)], random });
    const b = new IkeCore({ peers: [side("warm", "b.warm", "a.warm", group, false)], random });
    const path = (natT: boolean, from: string, to: string) => ({ local: { address: to, port: natT ? 4500 : 500 }, remote: { address: from, port: natT ? 4500 : 500 }, natT });
    const pending: [IkeCore, Uint8Array, boolean][] = [];
    const route = (from: IkeCore, actions: IkeAction[]): void => {
      for (const action of actions) {
        if (action.type === "send") pending.push([from === a ? b : a, action.datagram, action.natT]);
        if (action.type === "child-up") for (const d of [action.child.inbound, action.child.outbound]) (d.key.fill(0), d.salt.fill(0));
      }
    };
    route(a, a.initiate("warm", 0));
    for (let steps = 0; pending.length > 0 && steps < 16; steps++) {
      const [to, datagram, natT] = pending.shift()!;
      route(to, to.receive(datagram, to === b ? path(natT, "192.0.2.1", "192.0.2.2") : path(natT, "192.0.2.2", "192.0.2.1"), 0));
      if (pending.length === 0 && a.list().some((sa) => sa.state === "established")) route(a, a.terminate("warm", 0));
    }
    a.shutdown(0);
    b.shutdown(0);
  }
  psk.fill(0);
}
