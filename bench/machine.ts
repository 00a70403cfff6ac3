/** What machine a benchmark ran on, for the report. */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { availableParallelism, loadavg, totalmem } from "node:os"

/** A one-paragraph description of the machine and its load. */
export interface Machine {
  readonly cpu: string
  /**
   * The CPU's family, model and clock, and whether it has AVX-512: this VM is placed on hosts of
   * more than one generation under one model name ("AMD EPYC"), and they differ in speed (on
   * 2026-12-03, family 25 model 17 with AVX-512 at 2.6 GHz trained the story model 1.6x slower
   * than the host of the day before, while its matmul peak was higher).
   */
  readonly generation: string
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

const generation = (): string => {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8")
    const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(info)?.[1]?.trim()
    const mhz = Number(field("cpu MHz"))
    const avx512 = /^flags\s*:.*\bavx512f\b/m.test(info)
    return `family ${field("cpu family") ?? "?"} model ${field("model") ?? "?"}${Number.isFinite(mhz) ? ` at ${(mhz / 1000).toFixed(1)} GHz` : ""}, ${avx512 ? "with" : "without"} AVX-512`
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
  generation: generation(),
  shaNi: hasShaNi(),
  nproc: nproc(),
  node: process.version,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: kernel(),
  load: loadavg().map((x) => x.toFixed(2)).join(" ")
})

/** The machine as one line of text. */
export const machineLine = (m: Machine): string =>
  `CPU "${m.cpu}" (${m.generation}, ${m.shaNi ? "with" : "without"} SHA extensions), \`nproc\` = ${m.nproc}, ${m.memoryGiB} GiB RAM, ${m.kernel}, Node ${m.node}; load average ${m.load} when the benchmark started`
