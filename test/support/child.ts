/** Runs the crash fixture pipeline in child processes. */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

export const FIXTURE = join(import.meta.dirname, "..", "fixtures", "crash-pipeline.ts")

export interface ChildRun {
  readonly child: ChildProcess
  /** Resolves when the child has loaded and its run has started. */
  readonly ready: Promise<void>
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>
}

/** Starts the fixture pipeline on `store`, recording executions in `side` under `label`. */
export const startFixture = (store: string, side: string, label: string, env: Record<string, string> = {}): ChildRun => {
  const child = spawn(process.execPath, ["--import", "effect", "--import", "tsx", FIXTURE, store, side, label], {
    cwd: join(import.meta.dirname, "..", ".."),
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  let onReady = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  child.stdout!.on("data", (d) => {
    stdout += d
    if (stdout.startsWith("ready\n")) onReady()
  })
  child.stderr!.on("data", (d) => (stderr += d))
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  return { child, ready, done }
}

/** The JSON result line a fixture printed. */
export const resultOf = (stdout: string): Record<string, any> => {
  const line = stdout.split("\n").find((l) => l.startsWith("result "))
  if (line === undefined) throw new Error(`no result in output: ${stdout}`)
  return JSON.parse(line.slice("result ".length))
}

/** The side-channel records. */
export const readSide = (side: string): Array<Record<string, any>> =>
  existsSync(side) ? readFileSync(side, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l)) : []

/** Names (keys) of the index entries of one index (`nodes` or `memo`) of a store. */
export const indexKeys = (store: string, index: "nodes" | "memo"): Set<string> => {
  const dir = join(store, index)
  if (!existsSync(dir)) return new Set()
  return new Set(readdirSync(dir).flatMap((shard) => readdirSync(join(dir, shard)).map((f) => f.replace(/\.json$/, ""))))
}
