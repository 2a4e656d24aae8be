#!/usr/bin/env node
/**
 * The `sluice` command. The endpoint (`sluice up`, `sluice demo`) arrives
 * with the I/O issue; until then the command says so instead of pretending.
 */
import { readFileSync } from "node:fs";

const USAGE = `usage: sluice <command>

commands:
  version        print the version
  help           this text

coming with the endpoint: up -c sluice.toml, demo
benchmarks: npm run bench (from the repository)`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

const [command = "help"] = process.argv.slice(2);
switch (command) {
  case "version":
  case "--version":
    console.log(version());
    break;
  case "help":
  case "--help":
  case "-h":
    console.log(USAGE);
    break;
  case "up":
  case "demo":
    console.error(`sluice ${command}: not available yet (the endpoint is not built in this version)`);
    process.exit(2);
    break;
  default:
    console.error(`sluice: unknown command '${command}'\n\n${USAGE}`);
    process.exit(2);
}
