// Builds the native I/O addon (native/build/Release/sluice_io.node) with the
// node-gyp that npm ships.
//
// Why a script and not a bare "node-gyp rebuild": `npm install` must never fail
// because the addon did not build (no compiler, no Node headers, not Linux):
// sluice then runs on its portable path and says so. With --optional a failed
// build prints the reason and exits 0; without it (npm run build:native) it
// fails loudly. It also finds npm's own node-gyp and Node's installed headers
// when run outside npm, so no header download (and no network) is needed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const optional = process.argv.includes("--optional");

function give_up(reason) {
  const text = `sluice: native I/O addon not built: ${reason}`;
  if (!optional) {
    console.error(text);
    process.exit(1);
  }
  console.error(`${text}\nsluice: continuing; the portable I/O path (node:dgram, no TUN) will be used`);
  process.exit(0);
}

if (process.env.SLUICE_SKIP_NATIVE === "1") give_up("SLUICE_SKIP_NATIVE=1");
if (process.platform !== "linux") give_up(`it is Linux-only (this is ${process.platform})`);

const prefix = join(dirname(process.execPath), "..");
const candidates = [
  process.env.npm_config_node_gyp,
  join(prefix, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
].filter((p) => p && existsSync(p));
if (candidates.length === 0) give_up("node-gyp was not found (it ships with npm; run this through npm)");

const args = [candidates[0], "rebuild", "-C", here];
// Node's headers as installed with this node (e.g. /usr/include/node), so node-gyp needs no download.
if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include/node/node_api.h"))) args.push(`--nodedir=${prefix}`);
const result = spawnSync(process.execPath, args, { stdio: "inherit" });
if (result.error) give_up(result.error.message);
if (result.status !== 0) give_up(`node-gyp exited with ${result.status ?? result.signal} (see its output above)`);
if (!existsSync(join(here, "build/Release/sluice_io.node"))) give_up("node-gyp succeeded but produced no build/Release/sluice_io.node");
