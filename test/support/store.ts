/** Test helpers: a fresh store in a temp directory, and the run of a pipeline against it. */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { ArtifactStore, Executor, type Pipeline } from "polaris"

export const tempDir = (prefix = "polaris-test-") => mkdtempSync(join(tmpdir(), prefix))

/** Runs `pipeline` on the store at `root`, as a promise of its Exit. */
export const runOn = <R, O>(root: string, pipeline: Pipeline.Pipeline<R, O>, options: Executor.RunOptions = {}) =>
  Effect.runPromiseExit(Executor.run(pipeline as Pipeline.Pipeline<never, O>, options).pipe(Effect.provide(ArtifactStore.layer(root))))

/** Runs `pipeline` and returns its result, failing the test on a failed run. */
export const runOk = async <R, O>(root: string, pipeline: Pipeline.Pipeline<R, O>, options: Executor.RunOptions = {}) => {
  const exit = await runOn(root, pipeline, options)
  if (exit._tag === "Failure") throw new Error(`run failed: ${String(exit.cause)}`)
  return exit.value
}

/** Every file under `dir`, recursively. */
export const allFiles = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? allFiles(path) : [path]
  })

/** True when any file under `dir` contains `needle`. */
export const anyFileContains = (dir: string, needle: string) =>
  allFiles(dir).some((f) => readFileSync(f).includes(needle))

/**
 * A temp directory inside the repository (under the git-ignored test-artifacts/), for `.ts`
 * files that import "polaris": the package resolves itself only from files within it.
 */
export const tempDirInRepo = (prefix = "tmp-") => {
  const base = join(import.meta.dirname, "..", "..", "test-artifacts")
  mkdirSync(base, { recursive: true })
  return mkdtempSync(join(base, prefix))
}
