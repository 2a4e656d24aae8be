/**
 * The local control socket of `sluice up`: `sluice status`, `sluice
 * initiate NAME` and `sluice terminate NAME` talk to the running endpoint
 * through it, as swanctl talks to charon over vici.
 *
 * Protocol: one JSON object per line each way. A request is
 * `{"command": "status"}`, `{"command": "initiate" | "terminate", "name": "…"}` or
 * `{"command": "rekey", "name": "…", "ike": true | false}`;
 * the answer is `{"ok": true, …}` or `{"ok": false, "error": "…"}`.
 *
 * Why a Unix socket with mode 0600: whoever can connect can tear tunnels
 * down and read the SA list; the socket is created under a umask that never
 * lets another user in (no window between bind and chmod) and is owned by
 * the user sluice runs as. Requests are bounded in size, connections in
 * number and time, so a stuck or hostile client costs nothing lasting.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";

export type ControlRequest =
  | { command: "status" }
  | { command: "initiate"; name: string }
  | { command: "terminate"; name: string }
  | { command: "rekey"; name: string; ike?: boolean };
export type ControlAnswer = { ok: true; [key: string]: unknown } | { ok: false; error: string };

export interface ControlHandler {
  status(): Record<string, unknown>;
  /** Resolves once the peer's child SA is up or the attempt failed. */
  initiate(name: string): Promise<ControlAnswer>;
  terminate(name: string): Promise<ControlAnswer>;
  /** Rekeys the peer's child SAs, or with `ike` its IKE SA. */
  rekey(name: string, ike: boolean): Promise<ControlAnswer>;
}

const MAX_REQUEST_BYTES = 4096;
const MAX_CONNECTIONS = 16;
const IDLE_TIMEOUT_MS = 60_000;

function parseRequest(line: string): ControlRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return "not JSON";
  }
  if (typeof value !== "object" || value === null) return "not a JSON object";
  const request = value as Record<string, unknown>;
  if (request.command === "status") return { command: "status" };
  if (request.command === "initiate" || request.command === "terminate" || request.command === "rekey") {
    if (typeof request.name !== "string" || request.name === "") return `${request.command} needs a peer name`;
    if (request.command === "rekey") return { command: "rekey", name: request.name, ike: request.ike === true };
    return { command: request.command, name: request.name };
  }
  return `unknown command ${JSON.stringify(request.command)} (status, initiate, terminate, rekey)`;
}

/**
 * Listens on `path` (a stale socket file left by a killed sluice is
 * replaced; a live one is an error). Close the returned server to remove it.
 * @example
 * ```ts
 * const server = await serveControl("/run/sluice/sluice.sock", handler);
 * process.on("SIGTERM", () => server.close());
 * ```
 */
export async function serveControl(path: string, handler: ControlHandler): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  await removeStale(path);
  const server = createServer((socket) => serveConnection(socket, handler));
  server.maxConnections = MAX_CONNECTIONS;
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
  server.on("close", () => {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  });
  return server;
}

async function removeStale(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (alive) throw new Error(`${path} is in use: is another sluice running?`);
  unlinkSync(path);
}

function serveConnection(socket: Socket, handler: ControlHandler): void {
  socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
  socket.on("error", () => socket.destroy());
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    if (buffered.length > MAX_REQUEST_BYTES) {
      socket.end(`${JSON.stringify({ ok: false, error: "request too long" })}\n`);
      return;
    }
    const newline = buffered.indexOf("\n");
    if (newline < 0) return;
    const line = buffered.slice(0, newline);
    buffered = "";
    socket.pause();
    void answer(line, handler).then((reply) => socket.end(`${JSON.stringify(reply)}\n`));
  });
}

async function answer(line: string, handler: ControlHandler): Promise<ControlAnswer> {
  const request = parseRequest(line);
  if (typeof request === "string") return { ok: false, error: request };
  try {
    switch (request.command) {
      case "status":
        return { ok: true, ...handler.status() };
      case "initiate":
        return await handler.initiate(request.name);
      case "terminate":
        return await handler.terminate(request.name);
      case "rekey":
        return await handler.rekey(request.name, request.ike ?? false);
    }
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Sends one request to a running sluice and returns its answer.
 * @throws Error naming the socket when nothing listens there
 */
export function requestControl(path: string, request: ControlRequest, timeoutMs = 60_000): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let reply = "";
    socket.setEncoding("utf8");
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs / 1000} s`));
    });
    socket.once("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      reject(new Error(error.code === "ENOENT" || error.code === "ECONNREFUSED" ? `no sluice is listening on ${path} (is \`sluice up\` running?)` : `${path}: ${error.code ?? error.message}`));
    });
    socket.once("end", () => {
      try {
        resolve(JSON.parse(reply) as ControlAnswer);
      } catch {
        reject(new Error(`${path} answered something that is not JSON`));
      }
    });
  });
}
