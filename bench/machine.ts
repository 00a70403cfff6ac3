/** What machine a benchmark ran on, for the report. */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { availableParallelism, loadavg, totalmem } from "node:os"

/** A one-paragraph description of the machine and its load. */
export interface Machine {
  readonly cpu: string
  /** Whether the CPU has the SHA extensions (`sha_ni`), which fast sha256 implementations use. */
  readonly shaNi: boolean
  readonly nproc: number
  readonly node: string
  readonly memoryGiB: number
  readonly kernel: string
  readonly load: string
}

const cpuModel = (): string => {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"))
    return line?.split(":")[1]?.trim() ?? "unknown"
  } catch {
    return "unknown"
  }
}

const hasShaNi = (): boolean => {
  try {
    return /^flags\s*:.*\bsha_ni\b/m.test(readFileSync("/proc/cpuinfo", "utf8"))
  } catch {
    return false
  }
}

const nproc = (): number => {
  try {
    return Number(execFileSync("nproc", { encoding: "utf8" }).trim())
  } catch {
    return availableParallelism()
  }
}

const kernel = (): string => {
  try {
    return execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim()
  } catch {
    return process.platform
  }
}

/** The machine now (the load average is sampled at the call). */
export const describeMachine = (): Machine => ({
  cpu: cpuModel(),
  shaNi: hasShaNi(),
  nproc: nproc(),
  node: process.version,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: kernel(),
  load: loadavg().map((x) => x.toFixed(2)).join(" ")
})

/** The machine as one line of text. */
export const machineLine = (m: Machine): string =>
  `CPU "${m.cpu}" (${m.shaNi ? "with" : "without"} SHA extensions), \`nproc\` = ${m.nproc}, ${m.memoryGiB} GiB RAM, ${m.kernel}, Node ${m.node}; load average ${m.load} when the benchmark started`
