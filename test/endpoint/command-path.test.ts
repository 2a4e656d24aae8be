// hasCommand: PATH looked up as a shell would, without a shell.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasCommand } from "../../src/endpoint/commandPath.js";

test("hasCommand finds executables on PATH, not plain files, directories or paths", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-path-"));
  try {
    writeFileSync(join(dir, "runnable"), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(join(dir, "plain"), "data", { mode: 0o644 });
    mkdirSync(join(dir, "folder"), { mode: 0o755 });
    const path = `/nonexistent:${dir}`;
    assert.equal(hasCommand("runnable", path), true);
    assert.equal(hasCommand("plain", path), false);
    assert.equal(hasCommand("folder", path), false);
    assert.equal(hasCommand("missing", path), false);
    assert.equal(hasCommand(`${dir}/runnable`, path), false, "a path is not a command name");
    assert.equal(hasCommand("runnable", ""), false);
    assert.equal(hasCommand("sh"), true, "sh is on this machine's PATH");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
