/**
 * The `polaris` command in a child process, asynchronously (tests that serve a protocol from
 * their own process must keep answering while it runs), and reading a node's stored output.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"

export const ROOT = join(import.meta.dirname, "..", "..")
export const BIN = join(ROOT, "bin", "polaris.js")

export interface CliResult {
  readonly status: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `polaris ARGS` from the repository root (or from `root`, a copy of the project, with its
 * own `bin/polaris.js`). `killOn`: SIGKILL it `delayMs` after the plain progress lines say that
 * node started.
 */
export const polaris = (
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly killOn?: string; readonly delayMs?: number; readonly root?: string } = {}
) =>
  new Promise<CliResult>((resolve) => {
    const root = options.root ?? ROOT
    const child = spawn(process.execPath, [join(root, "bin", "polaris.js"), ...args], { cwd: root, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => {
      stderr += d
      if (options.killOn !== undefined && stderr.includes(`${options.killOn} started`)) setTimeout(() => child.kill("SIGKILL"), options.delayMs ?? 0)
    })
    child.on("exit", (status, signal) => resolve({ status, signal, stdout, stderr }))
  })

/** A node's output as stored: the JSON object named by its digest. */
export const readObject = (store: string, digest: string): any =>
  JSON.parse(readFileSync(join(store, "objects", digest.slice(0, 2), digest), "utf8"))
