/** Timing helpers of the benchmarks: child processes timed from spawn to exit, and medians. */
import { spawn } from "node:child_process"
import { join } from "node:path"

/** The repository root (child processes run there, so `polaris` resolves to this checkout). */
export const ROOT = join(import.meta.dirname, "..")

/** A child process run: wall time from spawn to exit, and the JSON line it printed last. */
export interface ChildTiming {
  readonly wallMs: number
  readonly report: Readonly<Record<string, number>>
}

/**
 * How polaris starts a process: effect is imported before tsx's loader hooks exist (as
 * `bin/polaris.js` does), so its modules load at plain-node speed.
 */
export const POLARIS_NODE_ARGS = ["--import", "effect", "--import", "tsx"] as const

/**
 * Runs `node --import tsx <file> ...args` (with `preloadEffect`, the way `polaris` starts) in the
 * repository root and times it from `spawn` to the `exit` event. Rejects when the child fails
 * or prints no JSON line.
 */
export const timeChild = (file: string, args: ReadonlyArray<string> = [], options: { readonly preloadEffect?: boolean } = {}): Promise<ChildTiming> =>
  timeNode([...(options.preloadEffect ? POLARIS_NODE_ARGS : ["--import", "tsx"]), join(ROOT, file), ...args])

/** Like {@link timeChild}, with node's whole argument list given (e.g. `-e` without tsx). */
export const timeNode = (nodeArgs: ReadonlyArray<string>): Promise<ChildTiming> =>
  new Promise((resolve, reject) => {
    const file = nodeArgs.join(" ")
    const t0 = performance.now()
    const child = spawn(process.execPath, nodeArgs, {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      const wallMs = performance.now() - t0
      if (code !== 0) return reject(new Error(`${file} exited with ${code ?? signal}: ${stderr.trim()}`))
      const last = stdout.trim().split("\n").at(-1) ?? ""
      try {
        resolve({ wallMs, report: JSON.parse(last) as Record<string, number> })
      } catch {
        reject(new Error(`${file} printed no JSON line: ${stdout}${stderr}`))
      }
    })
  })

/** Times a synchronous or asynchronous function, in ms. */
export const timeIt = async <A>(f: () => A | Promise<A>): Promise<{ readonly ms: number; readonly value: A }> => {
  const t0 = performance.now()
  const value = await f()
  return { ms: performance.now() - t0, value }
}

/** Median, minimum and maximum of a sample. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

export const summarize = (xs: ReadonlyArray<number>): Summary => {
  if (xs.length === 0) throw new Error("summarize: empty sample")
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length }
}

/** A number with `digits` decimals and thousands separators. */
export const fmt = (x: number, digits = 0): string =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** `median (min–max)` of a summary. */
export const fmtSummary = (s: Summary, digits = 0): string => `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`
