// sluice as IKE responder under a spoofed IKE_SA_INIT flood while a real
// strongSwan initiator connects, rekeys its child SA and its IKE SA
// (CREATE_CHILD_SA), and disconnects, again and again (test/fixtures/interop/flood.ts:
// a raw-socket flooder in A sends well-formed requests from random addresses
// of 10.200.0.0/16; B routes that net back to A). Short here: 5,000
// requests/s for 6 s; `npm run bench -- ike --flood` runs the long one beside
// strongSwan. What must hold:
//
// - every legitimate handshake completes (through the cookie exchange), and
//   every rekey after it;
// - sluice answers what it reads (a COOKIE notify each: no Diffie-Hellman, no
//   state for a request without a valid cookie), and its drop counters say so
//   (on this shared 2-core machine it may not read everything: the kernel's
//   socket drops are reported, not failed on);
// - memory stays flat while the flood goes on, and the log does not flood.
// Needs root, strongSwan, nftables and a C compiler (cc) for the flooder.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { hasTool } from "../fixtures/netns.js";
import { bedSkip } from "../fixtures/interop/requirements.js";
import { runFlood } from "../fixtures/interop/flood.js";

const skip = bedSkip() || (hasTool("cc") ? false : "missing cc (Debian package gcc) for the flooder");
const RATE = 5000;
const SECONDS = 8;

describe("IKE_SA_INIT flood", { skip }, () => {
  test(`${RATE} spoofed requests/s for ${SECONDS} s: legitimate handshakes and rekeys complete, sluice answers with cookies, memory and log stay flat`, async () => {
    const result = await runFlood("sluice", { rate: RATE, seconds: SECONDS, log: (line) => console.log(`# ${line}`) });
    const summary = JSON.stringify({ ...result, legit: { ...result.legit, ms: result.legit.ms.map(Math.round) } });
    assert.ok(result.offered.sent >= 0.8 * RATE * SECONDS, `the flooder sent ${result.offered.sent}: ${summary}`);
    assert.ok(result.legit.attempts >= 1, summary);
    assert.equal(result.legit.completed, result.legit.attempts, `every legitimate handshake completed: ${summary}`);
    assert.deepEqual(result.legit.errors, [], summary);
    assert.ok(result.legit.childRekeyMs.length >= 1 && result.legit.ikeRekeyMs.length >= 1, `strongSwan rekeyed during the flood: ${summary}`);
    assert.equal(result.cookiesSeen, true, "sluice switched cookies on");
    // What sluice read it answered (what the kernel dropped at a full socket while a busy machine starved it was never read).
    const read = result.arrived - result.socketDrops;
    assert.ok(result.answered >= 0.99 * read, `answered ${result.answered} of ${read} read: ${summary}`);
    // All but the first (at most cookie_threshold) with N(COOKIE): no key exchange, no state.
    assert.ok((result.sluiceDrops?.["cookie-required"] ?? 0) >= result.answered - 30, `counted as cookie-required: ${summary}`);
    // Flat: what the heap settles at in the first quarter of the flood is what it ends with.
    assert.ok(result.rssMb.end - result.rssMb.quarter < 16, `RSS ${result.rssMb.quarter.toFixed(1)} MB a quarter in, ${result.rssMb.end.toFixed(1)} MB at the end`);
    // Flat log: the flood's own lines are bounded by the once-per-10-s summaries, whatever the rate; the
    // legitimate peer's handshakes and rekeys are logged as ever (and are not counted here).
    assert.ok((result.sluiceFloodLogLines ?? 0) < 40, `${result.sluiceFloodLogLines} log lines about no SA (${result.sluiceLogLines} in all) for ${result.arrived} requests: ${JSON.stringify(result.sluiceLogEvents)}`);
  });
});
