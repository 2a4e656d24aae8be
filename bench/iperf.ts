/**
 * One iperf3 run through a path of the tunnel suite, measured the same way
 * for every path: the client in A bound to the path's address, the server
 * in B; TCP reports what the receiver got, UDP the receiver's goodput (sent
 * × (1 − loss)). CPU per watched process comes from /proc/PID/stat
 * (utime + stime, 100% = one core), the machine's from /proc/stat; the
 * per-thread CPU of a process (sluice's main thread and workers) from
 * /proc/PID/task/TID/stat.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { runIn, sleep } from "../test/fixtures/interop/command.js";
import type { RunningPath } from "./tunnelPaths.js";

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux). */
const HZ = 100;
const PORT = 5201;

export interface IperfRun {
  mode: "tcp" | "udp";
  /** Mbit/s that arrived (UDP: goodput), 0 when the run failed. */
  mbps: number;
  /** TCP retransmits; UDP the offered Mbit/s and the loss in percent. */
  retransmits?: number;
  sentMbps?: number;
  lostPercent?: number;
  error?: string;
  /** CPU of each watched pid and of the whole machine, percent of one core / of all. */
  cpu: { pid: number; percent: number }[];
  machineBusy: number;
}

/** utime + stime of a whole process, or of one of its threads when `tid` is given. */
function cpuTicks(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of the whole line)
  } catch {
    return 0;
  }
}

function machineTicks(): { busy: number; total: number } {
  const [, ...values] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq] = values as number[];
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy, total: busy + idle! + iowait! };
}

/** Ticks of every thread of a process: tid → [name, ticks]. */
export function threadTicks(pid: number): Map<number, { name: string; ticks: number }> {
  const out = new Map<number, { name: string; ticks: number }>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      out.set(tid, { name, ticks: cpuTicks(pid, tid) });
    }
  } catch {
    // The process is gone.
  }
  return out;
}

/** Starts iperf3's server in B; resolves once it listens, with a function that stops it. */
async function startServer(path: RunningPath): Promise<() => Promise<void>> {
  const child = spawn("ip", ["netns", "exec", path.bed.b.ns, "iperf3", "-s", "-B", path.serverIp, "-p", String(PORT)], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => (output += text));
  const ended = new Promise<void>((done) => child.on("close", () => done()));
  for (let i = 0; i < 50 && !output.includes("Server listening"); i++) await sleep(100);
  return async () => {
    child.kill("SIGTERM");
    await Promise.race([ended, sleep(3000)]);
  };
}

/**
 * Runs iperf3 once per entry of `runs` through a running path (one server
 * for all), with `duration` seconds each and a second's pause between.
 * UDP entries give the rate (-b; "0" = as fast as the sender can) and the
 * datagram length.
 */
export async function iperfRuns(path: RunningPath, runs: ({ mode: "tcp" } | { mode: "udp"; rate: string; length: number })[], duration: number): Promise<IperfRun[]> {
  const stopServer = await startServer(path);
  const results: IperfRun[] = [];
  try {
    for (const run of runs) {
      const args = ["-c", path.serverIp, "-B", path.bindIp, "-p", String(PORT), "-t", String(duration), "-J"];
      if (run.mode === "udp") args.push("-u", "-b", run.rate, "-l", String(run.length));
      const pidTicks = path.pids.map((pid) => cpuTicks(pid));
      const machine = machineTicks();
      const started = performance.now();
      const result = await runIn(path.bed.a.ns, "iperf3", args, { timeoutMs: (duration + 30) * 1000 });
      const seconds = (performance.now() - started) / 1000;
      const machineAfter = machineTicks();
      const cpu = path.pids.map((pid, i) => ({ pid, percent: Math.round((100 * (cpuTicks(pid) - pidTicks[i]!)) / (HZ * seconds)) }));
      const machineBusy = Math.round((100 * (machineAfter.busy - machine.busy)) / Math.max(1, machineAfter.total - machine.total));
      let report: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits: number }; sum?: { bits_per_second: number; lost_percent: number } } } = {};
      try {
        report = JSON.parse(result.stdout) as typeof report;
      } catch {
        report = { error: (result.stderr || result.stdout).trim().slice(0, 200) || `exit ${result.code}` };
      }
      const end = report.end;
      if (run.mode === "tcp" && end?.sum_received) {
        results.push({ mode: "tcp", mbps: Math.floor(end.sum_received.bits_per_second / 1e6), retransmits: end.sum_sent?.retransmits, cpu, machineBusy });
      } else if (run.mode === "udp" && end?.sum) {
        const { bits_per_second: sent, lost_percent: lost } = end.sum;
        results.push({ mode: "udp", mbps: Math.floor((sent * (1 - lost / 100)) / 1e6), sentMbps: Math.floor(sent / 1e6), lostPercent: Math.floor(lost * 10) / 10, cpu, machineBusy });
      } else {
        results.push({ mode: run.mode, mbps: 0, error: report.error ?? "no result", cpu, machineBusy });
      }
      await sleep(1000);
    }
  } finally {
    await stopServer();
  }
  return results;
}

/** One line per run, as the suite logs them. */
export function describeRun(label: string, run: IperfRun): string {
  const detail = run.error ? `FAILED: ${run.error}` : run.mode === "tcp" ? `retr=${run.retransmits}` : `sent=${run.sentMbps}Mb/s lost=${run.lostPercent}%`;
  const cpu = [`sys_busy=${run.machineBusy}%`, ...run.cpu.map((c) => `pid${c.pid}=${c.percent}%`)].join(" ");
  return `${label.padEnd(24)} ${run.mode.padEnd(3)} ${String(run.mbps).padStart(7)} Mbit/s  ${detail.padEnd(32)} cpu: ${cpu}`;
}
