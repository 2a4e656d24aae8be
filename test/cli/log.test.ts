// `sluice up`'s log destination (src/cli/logDestination.ts): lines leave
// within moments of being logged, whole; while stdout does not drain, what
// is held stays bounded and the lines dropped are counted in the next line
// that gets through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const DESTINATION = fileURLToPath(new URL("../../src/cli/logDestination.js", import.meta.url));

/** Runs `body` in a child whose stdout is a batchedStdout(maxHeld); returns its stdout lines and how long before its exit the first arrived. */
async function child(maxHeld: number, body: string): Promise<{ lines: Record<string, unknown>[]; firstBeforeExitMs: number }> {
  const script = `
    import { batchedStdout } from ${JSON.stringify(DESTINATION)};
    const destination = batchedStdout(${maxHeld});
    const log = (fields) => destination.stream.write(JSON.stringify(fields) + "\\n");
    process.on("exit", () => destination.flushSync());
    ${body}
  `;
  const proc = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let raw = "";
  let firstAt: number | undefined;
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (text: string) => {
    firstAt ??= performance.now();
    raw += text;
  });
  const code = await new Promise<number | null>((resolve) => proc.on("close", resolve));
  assert.equal(code, 0, "the child exits cleanly");
  return { firstBeforeExitMs: performance.now() - (firstAt ?? Infinity), lines: raw.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test("a lone line leaves at once, not when the buffer fills or the process ends", async () => {
  // One short line, far below the size that writes at once, then 2 s of nothing before the child exits.
  const { lines, firstBeforeExitMs } = await child(1 << 20, `
    log({ event: "lone" });
    setTimeout(() => log({ event: "last" }), 2000);
  `);
  assert.deepEqual(lines.map((l) => l.event), ["lone", "last"]);
  assert.ok(firstBeforeExitMs > 1000, `the lone line arrived ${firstBeforeExitMs.toFixed(0)} ms before the exit`);
});

test("stdout that does not drain: held bytes stay bounded, dropped lines are counted, every line that arrives is whole", async () => {
  const written = 50_000;
  // 50,000 lines of ~120 bytes in one turn (6 MB) against 256 KiB held at most: nothing drains within one turn of the loop.
  const { lines } = await child(256 << 10, `
    for (let i = 0; i < ${written}; i++) log({ event: "burst", i, pad: "x".repeat(80) });
    setTimeout(() => log({ event: "after" }), 50);
  `);
  const burst = lines.filter((l) => l.event === "burst");
  const notice = lines.find((l) => l.event === "log-dropped");
  assert.ok(notice, "a log-dropped line says what was lost");
  assert.ok(burst.length < written, "some lines were dropped");
  assert.ok(burst.length * 120 <= (256 << 10) + 16384, `at most about 256 KiB of lines were held: ${burst.length} lines arrived`);
  assert.equal(burst.length + Number(notice.lines), written, "arrived + dropped = written");
  assert.equal(lines.at(-1)!.event, "after", "the line after the notice arrives too");
  // Those that arrived are the first ones, in order.
  burst.forEach((l, i) => assert.equal(l.i, i));
});
