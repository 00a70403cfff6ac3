/**
 * Where SamplerPool.ts loads its workers' code from: by default the TypeScript sources through
 * tsx; the prebuilt command (scripts/build-cli.mjs) sets its own bundled worker instead, which
 * starts without a TypeScript loader and carries only the model's modules (a smaller heap to
 * collect). Either runs the same code: a request's tokens do not depend on which.
 *
 * @example
 * useWorkerScript(join(__dirname, "sampler-worker.cjs"))
 */
let script: string | undefined

/** Makes SamplerPool start its workers from `path` (a CommonJS file) from now on. */
export const useWorkerScript = (path: string): void => {
  script = path
}

/** The worker script set by {@link useWorkerScript}, if any. */
export const workerScript = (): string | undefined => script
