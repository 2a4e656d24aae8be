// `sluice up` on the native path when it cannot make its TUN device: exit
// status 1, nothing on stdout (not even the io-path line: the endpoint never
// came up) and exactly one line on stderr naming the cause, the addon's own
// words (native/src/tun.c, MSG_TUN_PERM and MSG_TUN_MISSING). The
// causes are provoked without touching the machine: CAP_NET_ADMIN dropped for
// the child (setpriv), /dev/net hidden under an empty tmpfs in a private
// mount namespace of the child (unshare). Without root, the test user lacks
// CAP_NET_ADMIN already and that case runs as is.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadNativeIo, nativeIoUnavailableReason } from "../../src/io/native.js";
import { CLI, ROOT } from "../fixtures/twoEndpoints.js";
import { hasTool } from "../fixtures/netns.js";

const MSG_TUN_PERM = "creating a TUN device needs CAP_NET_ADMIN (run as root)";
const MSG_TUN_MISSING = "/dev/net/tun is missing: load the tun module or run with --device /dev/net/tun";
const SECRET_VAR = "SLUICE_TEST_STARTUP_SECRET";


function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: ROOT, env, timeout: 30000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function skipReason(): string | false {
  if (process.platform !== "linux") return "TUN devices are Linux-only";
  if (!existsSync(CLI)) return `the CLI is not compiled (no ${CLI})`;
  if (!loadNativeIo()) return `the native I/O addon is unavailable (these errors are the native path's): ${nativeIoUnavailableReason}`;
  return false;
}

describe("sluice up on the native path: one line naming why the TUN cannot be made", { skip: skipReason() }, () => {
  let dir: string;
  let config: string;
  let env: NodeJS.ProcessEnv;
  const root = process.getuid?.() === 0;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-startup-"));
    config = join(dir, "sluice.toml");
    writeFileSync(config, `
[local]
address = "127.0.0.1"
port = 0
[tun]
name = "slst${process.pid.toString(36)}"
addresses = ["10.93.1.1/24"]
[state]
dir = "${join(dir, "state")}"

[[peer]]
name = "far"
endpoint = "127.0.0.1:9"
selectors = ["10.93.2.0/24"]
secret_env = "${SECRET_VAR}"
spi_out = 0x5001
spi_in = 0x5002
`);
    env = { ...process.env, [SECRET_VAR]: "7a".repeat(32) };
    delete env.SLUICE_IO; // the native path, whatever the caller's environment says
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function assertOneLine(result: { code: number | null; stdout: string; stderr: string }, message: string): void {
    assert.equal(result.code, 1, `exit status ${result.code}; stderr: ${result.stderr}; stdout: ${result.stdout}`);
    assert.equal(result.stdout, "", "something was printed on stdout");
    const lines = result.stderr.split("\n").filter((line) => line !== "");
    assert.equal(lines.length, 1, `want one line on stderr, got:\n${result.stderr}`);
    assert.equal(lines[0], `sluice: could not start: ${message}`);
  }

  const setprivSkip = root && !hasTool("setpriv") ? "setpriv (util-linux) is missing: cannot drop CAP_NET_ADMIN for the child" : false;
  test("without CAP_NET_ADMIN", { skip: setprivSkip }, async () => {
    const result = root
      ? await run("setpriv", ["--inh-caps=-net_admin", "--bounding-set=-net_admin", process.execPath, CLI, "up", "-c", config], env)
      : await run(process.execPath, [CLI, "up", "-c", config], env);
    assertOneLine(result, !root && !existsSync("/dev/net/tun") ? MSG_TUN_MISSING : MSG_TUN_PERM);
  });

  const unshareSkip = !root ? "needs root: hides /dev/net/tun in a private mount namespace" : hasTool("unshare") ? false : "unshare (util-linux) is missing";
  test("without /dev/net/tun", { skip: unshareSkip }, async () => {
    // An empty tmpfs over /dev/net, for this child only.
    const script = `mount -t tmpfs none /dev/net && exec "$@"`;
    const result = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", script, "sh", process.execPath, CLI, "up", "-c", config], env);
    assertOneLine(result, MSG_TUN_MISSING);
  });
});
