/**
 * The probe of `npm run bench -- ike`'s first-packet measurement, run in the
 * bed's namespaces:
 *
 *   node dist/bench/ikeProbe.js send HOST PORT LOCAL   a datagram to HOST:PORT from LOCAL every millisecond, errors ignored
 *   node dist/bench/ikeProbe.js receive HOST PORT      prints {"event":"first","at":EPOCH_MS} at the first datagram, then exits
 *
 * Before the tunnel exists the sender's datagrams have no route (or are
 * dropped by a trap); the first one through marks the tunnel's first packet.
 */
import { createSocket } from "node:dgram";

const [mode, host = "", portText = "9999", local] = process.argv.slice(2);
const port = Number(portText);
const socket = createSocket("udp4");

if (mode === "receive") {
  socket.on("message", () => {
    process.stdout.write(`${JSON.stringify({ event: "first", at: Date.now() })}\n`);
    process.exit(0);
  });
  socket.bind(port, host, () => process.stdout.write(`${JSON.stringify({ event: "listening" })}\n`));
} else if (mode === "send") {
  socket.on("error", () => undefined);
  socket.bind(0, local, () => {
    const payload = Buffer.from("sluice-probe");
    setInterval(() => socket.send(payload, port, host, () => undefined), 1);
  });
} else {
  process.stderr.write("usage: ikeProbe send HOST PORT LOCAL | receive HOST PORT\n");
  process.exit(2);
}
