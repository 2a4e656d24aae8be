// Proves AES-GCM (RFC 4106) on the native AES pass (the sluice_io addon on
// Node's OpenSSL): vectors, node:crypto differential, tampering. The suite
// is test/fixtures/aesGcmSuite.ts; test/crypto/aes-gcm-portable.test.ts runs it on the
// node:crypto fallback. Where the addon is not built, this says so and skips.
import { test } from "node:test";
import { aesGcmPath } from "../../src/crypto.js";
import { aesGcmPass } from "../../src/kernel/gcm.js";
import { aesGcmSuite } from "../fixtures/aesGcmSuite.js";

if (aesGcmPath() === "native") {
  aesGcmSuite("native");
} else {
  test("AES-GCM on the native path", { skip: `the native AES pass is unavailable: ${aesGcmPass().reason}` }, () => {});
}
