/**
 * `src/ike/`: IKEv2 (RFC 7296) without I/O. The endpoint's IKE shell
 * (src/endpoint/ikeShell.ts) feeds it datagrams and the time and carries out
 * what it returns; tests drive two cores against each other in one process.
 */
export { IkeCore, type IkeCounters, type IkeSaStatus, type LocalPorts } from "./core.js";
export type { IkeAction, ChildSaInstall, ChildSaDirection } from "./actions.js";
export type { IkePeerConfig, IkeCoreOptions, RetransmitPolicy, StartAction, DpdAction } from "./config.js";
export type { DosSettings, DosStatus } from "./dosGuard.js";
export type { FragmentSettings } from "./fragments.js";
export type { Path, IkeSaState } from "./ikeSa.js";
export type { Endpoint } from "./natDetection.js";
export { parseIdentity, parseIdentityPattern, formatIdentity, formatPattern, type Identity, type IdentityPattern } from "./identity.js";
export { parseIkeProposal, parseEspProposal, DEFAULT_IKE_PROPOSALS, DEFAULT_ESP_PROPOSALS, type IkeProposal, type EspProposal, type Cipher } from "./proposals.js";
export { selectorFromPrefix, type Selector } from "./trafficSelectors.js";
