// Proves AES-GCM (RFC 4106) on the portable AES pass (node:crypto per packet,
// what runs where the native addon is not built), chosen with
// SLUICE_AES=portable before anything asks for the pass. Same suite as
// test/crypto/aes-gcm.test.ts (test/fixtures/aesGcmSuite.ts).
import { aesGcmSuite } from "../fixtures/aesGcmSuite.js";

process.env.SLUICE_AES = "portable";
aesGcmSuite("portable");
