// The endpoint's configuration, selectors and key material: every bad
// setting is refused with its key named, prefixes match longest first, and
// both ends derive the same SA keys from one shared secret.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig, ConfigError } from "../../src/endpoint/config.js";
import { parsePrefix, addressBytes, PrefixTable } from "../../src/endpoint/prefix.js";
import { loadKeymat, loadSecret, deriveSaKeys } from "../../src/endpoint/keys.js";

const PEER = `
[[peer]]
endpoint = "192.168.77.2:4500"
selectors = ["10.77.2.0/24"]
secret_env = "SLUICE_TEST_SECRET"
spi_out = 0x1001
spi_in = 0x2001
`;

test("a minimal config gets its defaults", () => {
  const config = parseConfig(PEER);
  assert.deepEqual(config.local, { address: "0.0.0.0", port: 4500 });
  assert.equal(config.tun.name, "sluice0");
  assert.equal(config.tun.mtu, 1420, "IPv4 outer: 1420");
  assert.equal(parseConfig(`[local]\naddress = "::"\n${PEER}`).tun.mtu, 1400, "IPv6 outer: 1400");
  assert.equal(parseConfig(`[tun]\nmtu = 1280\n${PEER}`).tun.mtu, 1280, "given");
  assert.equal(config.keepaliveSeconds, 20);
  const [peer] = config.peers;
  assert.equal(peer!.address, "192.168.77.2");
  assert.equal(peer!.port, 4500);
  assert.equal(peer!.esn, true);
  assert.equal(peer!.replayWindow, 1024);
  assert.deepEqual(peer!.secret, { env: "SLUICE_TEST_SECRET" });
  assert.equal(peer!.spiOut, 0x1001);
  assert.equal(peer!.spiIn, 0x2001);
});

test("explicit SAs and an IPv6 endpoint", () => {
  const config = parseConfig(`
[local]
address = "::"
port = 14500
[tun]
name = "sl-test"
addresses = ["10.77.1.1/24", "fd00:1::1/64"]
mtu = 1380
[[peer]]
name = "b"
endpoint = "[fd00::2]:4500"
selectors = ["10.77.2.0/24", "fd00:2::/64"]
esn = false
replay_window = 4096
[peer.out]
spi = 4097
keymat_file = "/etc/sluice/b.out"
[peer.in]
spi = 8193
keymat_env = "B_IN"
`);
  const peer = config.peers[0]!;
  assert.equal(peer.address, "fd00::2");
  assert.deepEqual(peer.out, { spi: 4097, keymat: { file: "/etc/sluice/b.out" } });
  assert.deepEqual(peer.in, { spi: 8193, keymat: { env: "B_IN" } });
  assert.deepEqual(config.tun.addresses.map((p) => p.text), ["10.77.1.1/24", "fd00:1::1/64"]);
});

test("[ike] DoS and fragmentation settings: strongSwan's defaults, and values given", () => {
  const defaults = parseConfig(PEER).ike;
  assert.deepEqual(
    [defaults.cookieThreshold, defaults.blockThreshold, defaults.initLimitHalfOpen, defaults.initRatePerSource, defaults.fragmentation, defaults.fragmentSize],
    [30, 5, 1000, 20, true, 1280],
  );
  const given = parseConfig(`[ike]\ncookie_threshold = 0\nblock_threshold = 2\ninit_limit_half_open = 0\ninit_rate_per_source = 0\nfragmentation = false\nfragment_size = 1400\n${PEER}`).ike;
  assert.deepEqual(
    [given.cookieThreshold, given.blockThreshold, given.initLimitHalfOpen, given.initRatePerSource, given.fragmentation, given.fragmentSize],
    [0, 2, 0, 0, false, 1400],
  );
});

const BAD: [string, string, RegExp][] = [
  ["no peer", `[local]\nport = 4500`, /^peer: at least one/],
  ["unknown top-level key", `bogus = 1\n${PEER}`, /^bogus: unknown setting/],
  ["unknown peer key", PEER.replace("spi_in", "colour = 1\nspi_in"), /^peer\[0\]\.colour: unknown setting/],
  ["endpoint without port", PEER.replace("192.168.77.2:4500", "192.168.77.2"), /^peer\[0\]\.endpoint: .*ADDRESS:PORT/],
  ["endpoint not an address", PEER.replace("192.168.77.2:4500", "gateway:4500"), /^peer\[0\]\.endpoint: "gateway" is not an IP address/],
  ["bad selector", PEER.replace("10.77.2.0/24", "10.77.2.0/33"), /^peer\[0\]\.selectors\[0\]: .*length must be 0 to 32/],
  ["empty selectors", PEER.replace(`["10.77.2.0/24"]`, "[]"), /^peer\[0\]\.selectors: must be a non-empty list/],
  ["inline secret", PEER.replace(`secret_env = "SLUICE_TEST_SECRET"`, `secret = "hunter2hunter2"`), /^peer\[0\]\.secret: keys are never inline/],
  ["no keys at all", PEER.replace(`secret_env = "SLUICE_TEST_SECRET"`, ""), /^peer\[0\]\.out: is required/],
  ["replay window not a multiple of 64", `${PEER}replay_window = 100\n`, /^peer\[0\]\.replay_window: must be a multiple of 64/],
  ["equal SPIs", PEER.replace("0x2001", "0x1001"), /^peer\[0\]\.spi_in: the inbound and outbound SPIs must differ/],
  ["SPI below 256", PEER.replace("0x2001", "7"), /^peer\[0\]\.spi_in: must be an integer from 256/],
  ["MTU too small", `[tun]\nmtu = 100\n${PEER}`, /^tun\.mtu: must be an integer from 576 to 9000, got 100/],
  ["TUN name too long", `[tun]\nname = "a-very-long-interface-name"\n${PEER}`, /^tun\.name: must be at most 15/],
  ["not TOML", `[[peer]\n`, /^\(file\): not valid TOML/],
  ["negative cookie threshold", `[ike]\ncookie_threshold = -1\n${PEER}`, /^ike\.cookie_threshold: must be an integer from 0/],
  ["cookie threshold above the half-open cap", `[ike]\ncookie_threshold = 50\ninit_limit_half_open = 40\n${PEER}`, /^ike\.cookie_threshold: 50 is above init_limit_half_open \(40\)/],
  ["fragment size below 576", `[ike]\nfragment_size = 500\n${PEER}`, /^ike\.fragment_size: must be an integer from 576 to 65535, got 500/],
  ["fragmentation not a boolean", `[ike]\nfragmentation = "yes"\n${PEER}`, /^ike\.fragmentation: must be true or false/],
  ["unknown [ike] key", `[ike]\nmax_packet = 10000\n${PEER}`, /^ike\.max_packet: unknown setting/],
  ["inbound SPI shared by two peers", `${PEER}${PEER.replace("0x1001", "0x3001")}`, /^peer\[1\]\.spi_in: SPI 8193 is already used/],
];
for (const [what, text, message] of BAD) {
  test(`refused with the key named: ${what}`, () => {
    assert.throws(() => parseConfig(text), (error: unknown) => error instanceof ConfigError && message.test(error.message));
  });
}

test("prefixes: parsing, host bits cleared, longest match wins, families kept apart", () => {
  assert.deepEqual([...parsePrefix("10.77.2.9/20").bytes], [10, 77, 0, 0]);
  assert.deepEqual([...parsePrefix("::ffff:1.2.3.4").bytes], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
  assert.equal(parsePrefix("fd00::1").length, 128);
  for (const bad of ["10.0.0.0/", "10.0.0.0/x", "10.0.0/8", "fd00::/129", "1.2.3.4/8/1"]) assert.throws(() => parsePrefix(bad), RangeError, bad);
  const table = new PrefixTable<string>();
  table.add(parsePrefix("10.0.0.0/8"), "wide");
  table.add(parsePrefix("10.77.2.0/24"), "narrow");
  table.add(parsePrefix("0.0.0.0/0"), "default");
  table.add(parsePrefix("fd00:2::/64"), "six");
  const v4 = (a: string): string | undefined => table.lookup(4, addressBytes(a, 4), 0);
  const v6 = (a: string): string | undefined => table.lookup(6, addressBytes(a, 6), 0);
  assert.equal(v4("10.77.2.200"), "narrow");
  assert.equal(v4("10.77.3.1"), "wide");
  assert.equal(v4("192.0.2.1"), "default");
  assert.equal(v6("fd00:2::1:2"), "six");
  assert.equal(v6("fd00:3::1"), undefined);
  // Odd prefix lengths compare only the leading bits of the last byte.
  const odd = new PrefixTable<number>();
  odd.add(parsePrefix("192.168.100.0/22"), 1);
  assert.equal(odd.lookup(4, addressBytes("192.168.103.255", 4), 0), 1);
  assert.equal(odd.lookup(4, addressBytes("192.168.104.0", 4), 0), undefined);
});

test("key material: 72 hex digits from a file or the environment; errors never echo it", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-keys-"));
  try {
    const hex = "11".repeat(32) + "22".repeat(4);
    writeFileSync(join(dir, "k"), `${hex.slice(0, 40)}\n${hex.slice(40)}\n`, { mode: 0o600 }); // see endpoint-keyfile for other modes
    const fromFile = loadKeymat({ file: join(dir, "k") });
    assert.deepEqual([...fromFile.key], new Array(32).fill(0x11));
    assert.deepEqual([...fromFile.salt], [0x22, 0x22, 0x22, 0x22]);
    const fromEnv = loadKeymat({ env: "K" }, { K: hex });
    assert.deepEqual(fromEnv, fromFile);
    const short = "ab".repeat(20);
    assert.throws(() => loadKeymat({ env: "K" }, { K: short }), (e: Error) => /72 hex digits/.test(e.message) && !e.message.includes(short));
    assert.throws(() => loadKeymat({ env: "MISSING" }, {}), /environment variable MISSING is not set/);
    assert.throws(() => loadKeymat({ file: join(dir, "nope") }), /cannot read key file .*ENOENT/);
    assert.throws(() => loadSecret({ env: "S" }, { S: "short" }), (e: Error) => /too short/.test(e.message) && !e.message.includes("short\""));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("derived keys: both ends agree per SA, and the two directions differ", () => {
  const secret = loadSecret({ env: "S" }, { S: "a shared secret of at least thirty-two characters" });
  const aOut = deriveSaKeys(secret, 0x1001, 0x2001);
  const bIn = deriveSaKeys(secret, 0x1001, 0x2001);
  const aIn = deriveSaKeys(secret, 0x2001, 0x1001);
  assert.deepEqual(aOut, bIn);
  assert.notDeepEqual(aOut.key, aIn.key);
  assert.equal(aOut.key.length, 32);
  assert.equal(aOut.salt.length, 4);
  const other = deriveSaKeys(loadSecret({ env: "S" }, { S: "ab".repeat(32) }), 0x1001, 0x2001);
  assert.notDeepEqual(other.key, aOut.key);
});

test("cipher: chacha20poly1305 by default, aes128gcm16 / aes256gcm16 accepted, anything else refused naming the key", () => {
  assert.equal(parseConfig(PEER).peers[0]!.cipher, "chacha20poly1305");
  for (const cipher of ["chacha20poly1305", "aes128gcm16", "aes256gcm16"]) {
    assert.equal(parseConfig(`${PEER}cipher = "${cipher}"\n`).peers[0]!.cipher, cipher);
  }
  for (const bad of [`"aes192gcm16"`, `"aes256gcm"`, `"AES256GCM16"`, "5", `["aes256gcm16"]`]) {
    assert.throws(() => parseConfig(`${PEER}cipher = ${bad}\n`), (e: Error) => e instanceof ConfigError && /peer\[0\]\.cipher/.test(e.message) && /chacha20poly1305/.test(e.message), bad);
  }
});

test("key material follows the cipher: 40 hex digits for aes128gcm16, 72 for the others; derived keys differ per cipher", () => {
  const hex40 = "33".repeat(16) + "44".repeat(4);
  const aes128 = loadKeymat({ env: "K" }, { K: hex40 }, "aes128gcm16");
  assert.deepEqual([...aes128.key], new Array(16).fill(0x33));
  assert.deepEqual([...aes128.salt], [0x44, 0x44, 0x44, 0x44]);
  assert.throws(() => loadKeymat({ env: "K" }, { K: hex40 }, "aes256gcm16"), (e: Error) => /72 hex digits \(32-byte aes256gcm16 key/.test(e.message) && !e.message.includes(hex40));
  assert.throws(() => loadKeymat({ env: "K" }, { K: "11".repeat(36) }, "aes128gcm16"), /40 hex digits \(16-byte aes128gcm16 key/);
  const secret = loadSecret({ env: "S" }, { S: "a shared secret of at least thirty-two characters" });
  const chacha = deriveSaKeys(secret, 0x1001, 0x2001);
  const a256 = deriveSaKeys(secret, 0x1001, 0x2001, "aes256gcm16");
  const a128 = deriveSaKeys(secret, 0x1001, 0x2001, "aes128gcm16");
  assert.equal(a256.key.length, 32);
  assert.equal(a128.key.length, 16);
  assert.equal(a128.salt.length, 4);
  assert.notDeepEqual(a256.key, chacha.key, "one secret never gives two ciphers the same key");
  assert.deepEqual(deriveSaKeys(secret, 0x1001, 0x2001, "aes256gcm16"), a256, "both ends agree");
});
