// Whether a system tool (resolvectl, resolvconf, iperf3, …) is installed:
// looked up on PATH the way a shell would, without starting one, so that a
// name never reaches a shell and asking costs no process.
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

/**
 * True when `command` names an executable file in a directory of PATH.
 *
 * @example
 * if (!hasCommand("resolvconf")) log.warn("no resolvconf: DNS servers not applied");
 */
export function hasCommand(command: string, path: string = process.env.PATH ?? ""): boolean {
  if (command.includes("/")) return false;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, command);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return true;
    } catch {
      // not here: the next directory
    }
  }
  return false;
}
