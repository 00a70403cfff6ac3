/**
 * TensorBoard's own Python readers, for tests of the event files polaris writes. Tests that
 * need them skip, saying why, where `python3 -c "import tensorboard"` fails (`.ci/run` installs
 * it with pip where pip can).
 */
import { spawnSync } from "node:child_process"
import { join } from "node:path"

const READER = join(import.meta.dirname, "..", "fixtures", "read_tfevents.py")

/** Why TensorBoard cannot be used here, or undefined when it can. */
export const tensorboardMissing = (): string | undefined => {
  const r = spawnSync("python3", ["-c", "import tensorboard"], { encoding: "utf8" })
  if (r.error !== undefined) return `python3 is not available (${r.error.message})`
  return r.status === 0 ? undefined : `python3 cannot import tensorboard (pip install tensorboard): ${r.stderr.trim().split("\n").at(-1)}`
}

/** What TensorBoard reads under a log directory. */
export interface Read {
  /** Each event file, read strictly record by record: its run folder, name, record count, first record's file_version, later records' steps. */
  readonly files: ReadonlyArray<{ run: string; name: string; records: number; file_version: string | null; steps: Array<number> }>
  /** Per run folder: tag -> [step, value] in file order, as EventAccumulator loads them. */
  readonly runs: Readonly<Record<string, Readonly<Record<string, ReadonlyArray<readonly [number, number]>>>>>
}

export const readTensorBoard = (logdir: string): Read => {
  const r = spawnSync("python3", [READER, logdir], { encoding: "utf8", env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "3" } })
  if (r.status !== 0) throw new Error(`read_tfevents.py failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout) as Read
}
