// Proves that key files others may read or write are refused
// (src/endpoint/keys.ts: checkKeyFileMode, readKeyFile): a secret_file or a
// keymat_file whose mode gives group or others read or write access fails
// to load with one line naming the file, its mode, who has access and the
// chmod 600 that fixes it (quoted for the shell when the path needs it),
// never the key; modes 0600, 0400 and owner-only ones with execute bits
// load. Through `sluice up` (SLUICE_IO=portable, so no root and no TUN):
// a 0644 secret file means exit status 1, nothing on stdout and exactly
// that line on stderr; after the chmod it prints, the endpoint starts.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { checkKeyFileMode, loadKeymat, loadSecret, readKeyFile } from "../../src/endpoint/keys.js";
import { CLI, ROOT, Proc } from "../fixtures/twoEndpoints.js";

const SECRET = "5e".repeat(32);
const KEYMAT = "11".repeat(32) + "22".repeat(4);

/** Writes `text` to `path` with exactly `mode` (chmod after writing: the umask does not apply). */
function writeWithMode(path: string, text: string, mode: number): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, mode);
}

describe("key file modes", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-keyfile-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const refused: [number, string][] = [
    [0o644, "readable by group and others"],
    [0o640, "readable by group"],
    [0o604, "readable by others"],
    [0o620, "writable by group"],
    [0o602, "writable by others"],
    [0o660, "readable by group, writable by group"],
    [0o666, "readable by group and others, writable by group and others"],
    [0o2640, "readable by group"],
  ];
  for (const [mode, access] of refused) {
    const octal = mode.toString(8).padStart(4, "0");
    test(`mode ${octal}: refused, one line with the mode and the fix`, () => {
      const path = join(dir, `secret-${octal}`);
      writeWithMode(path, SECRET, mode);
      const expected = `key file ${path} is mode ${octal}, ${access}: run chmod 600 ${path}`;
      assert.throws(() => loadSecret({ file: path }), (e: Error) => e.message === expected && !e.message.includes(SECRET));
      writeWithMode(path, KEYMAT, mode);
      assert.throws(() => loadKeymat({ file: path }), (e: Error) => e.message === expected && !e.message.includes(KEYMAT));
      assert.throws(() => readKeyFile(path), (e: Error) => e.message === expected);
    });
  }

  for (const mode of [0o600, 0o400, 0o700, 0o711, 0o601 & 0o700]) {
    const octal = mode.toString(8).padStart(4, "0");
    test(`mode ${octal}: loads`, () => {
      const path = join(dir, `ok-${octal}`);
      writeWithMode(path, SECRET, mode);
      assert.deepEqual(loadSecret({ file: path }), Uint8Array.from(Buffer.from(SECRET, "hex")));
      writeWithMode(path, `${KEYMAT}\n`, mode);
      assert.deepEqual([...loadKeymat({ file: path }).salt], [0x22, 0x22, 0x22, 0x22]);
      assert.equal(readKeyFile(path).toString(), `${KEYMAT}\n`);
    });
  }

  test("checkKeyFileMode alone, for callers with a mode in hand (IKE PSK and private-key files)", () => {
    assert.doesNotThrow(() => checkKeyFileMode("/k", 0o100600));
    assert.doesNotThrow(() => checkKeyFileMode("/k", 0o100711));
    assert.throws(() => checkKeyFileMode("/k", 0o100644), { message: "key file /k is mode 0644, readable by group and others: run chmod 600 /k" });
  });

  test("a path the shell would split is quoted in the chmod", () => {
    const path = join(dir, "it's a key");
    writeWithMode(path, SECRET, 0o640);
    assert.throws(() => loadSecret({ file: path }), { message: `key file ${path} is mode 0640, readable by group: run chmod 600 '${dir}/it'\\''s a key'` });
  });

  test("a missing file is still 'cannot read', naming the errno", () => {
    assert.throws(() => readKeyFile(join(dir, "nope")), { message: `cannot read key file ${join(dir, "nope")}: ENOENT` });
    assert.throws(() => readKeyFile(dir), { message: `cannot read key file ${dir}: EISDIR` });
  });
});

describe("sluice up with a key file others can read", { skip: existsSync(CLI) ? false : `the CLI is not compiled (no ${CLI})` }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-keyfile-cli-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function config(keys: string): string {
    const path = join(dir, `sluice-${Math.random().toString(36).slice(2)}.toml`);
    writeFileSync(path, `
[local]
address = "127.0.0.1"
port = 0
[tun]
name = "slkeyfile0"
[engine]
workers = 1
[state]
dir = "${join(dir, "state")}"

[[peer]]
name = "far"
endpoint = "127.0.0.1:9"
selectors = ["10.67.2.0/24"]
spi_out = 0x4101
spi_in = 0x4102
${keys}
`);
    return path;
  }

  const env = { ...process.env, SLUICE_IO: "portable" };

  function runUp(configPath: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI, "up", "-c", configPath], { cwd: ROOT, env, timeout: 30000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr });
      });
    });
  }

  test("secret_file at 0644: exit status 1 and one line; after the chmod it names, the endpoint starts", { timeout: 60_000 }, async () => {
    const secretPath = join(dir, "far.secret");
    writeWithMode(secretPath, SECRET, 0o644);
    const path = config(`secret_file = "${secretPath}"`);
    const refused = await runUp(path);
    assert.equal(refused.code, 1, `exit status ${refused.code}; stderr: ${refused.stderr}`);
    assert.equal(refused.stdout, "", "a refused start printed something on stdout");
    assert.equal(refused.stderr, `sluice: could not start: key file ${secretPath} is mode 0644, readable by group and others: run chmod 600 ${secretPath}\n`);

    chmodSync(secretPath, 0o600);
    const child = spawn(process.execPath, [CLI, "up", "-c", path], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    const proc = new Proc(child, "sluice up (0600 secret)");
    try {
      await proc.waitFor(() => (proc.stdout.includes('"event":"up"') ? true : undefined), "the up line", 20000);
    } finally {
      child.kill("SIGTERM");
      await proc.exit;
    }
  });

  test("keymat_file at 0640: exit status 1 and one line", { timeout: 30_000 }, async () => {
    const outPath = join(dir, "far.out");
    const inPath = join(dir, "far.in");
    writeWithMode(outPath, KEYMAT, 0o600);
    writeWithMode(inPath, KEYMAT.replace("11", "33"), 0o640);
    const path = config(`[peer.out]\nspi = 0x4101\nkeymat_file = "${outPath}"\n[peer.in]\nspi = 0x4102\nkeymat_file = "${inPath}"`);
    const refused = await runUp(path);
    assert.equal(refused.code, 1, `exit status ${refused.code}; stderr: ${refused.stderr}`);
    assert.equal(refused.stderr, `sluice: could not start: key file ${inPath} is mode 0640, readable by group: run chmod 600 ${inPath}\n`);
  });
});
