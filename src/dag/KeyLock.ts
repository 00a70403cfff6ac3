/**
 * Per-key single-flight locks across processes. No global store lock: two runs on one store
 * proceed in parallel and meet only on the keys they share; the first computes, the other
 * waits and then reads the result.
 *
 * A lock is a file `locks/<key>.lock` created with O_EXCL and holding its owner's pid, host
 * and a nonce. A lock whose owner process is gone (killed with SIGKILL, say) is stale and is
 * broken by the next waiter. Locks of another host are trusted until they are `staleAfterMs`
 * old, since their pid cannot be checked from here.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { hostname } from "node:os"
import { join } from "node:path"
import { Data, Effect } from "effect"
import { ensureDir, processAlive, readIfExists } from "./internal/files.ts"

/** A lock could not be taken or released because the file system refused. */
export class LockError extends Data.TaggedError("LockError")<{ readonly path: string; readonly cause: unknown }> {
  override get message() {
    return `lock ${this.path}: ${String(this.cause)}`
  }
}

interface Holder {
  readonly pid: number
  readonly host: string
  readonly nonce: string
}

const HOST = hostname()

/** Settings of the lock protocol. */
export interface LockOptions {
  /** Locks of other hosts count as stale after this long (default 10 min). */
  readonly staleAfterMs?: number
  /** Called once when the lock is found held (for a `lock_wait` event). */
  readonly onWait?: (holder: string) => Effect.Effect<void>
  /** Called when a stale lock is broken. */
  readonly onBreak?: (holder: string) => Effect.Effect<void>
}

const parseHolder = (bytes: Buffer | undefined): Holder | undefined => {
  if (bytes === undefined || bytes.length === 0) return undefined
  try {
    return JSON.parse(bytes.toString("utf8")) as Holder
  } catch {
    return undefined
  }
}

const isStale = async (path: string, holder: Holder | undefined, staleAfterMs: number): Promise<boolean> => {
  if (holder !== undefined && holder.host === HOST) return !processAlive(holder.pid)
  try {
    const stat = await fs.stat(path)
    // An unreadable lock was not written by this protocol (locks are created whole): give it seconds, not minutes.
    return Date.now() - stat.mtimeMs > (holder === undefined ? 5_000 : staleAfterMs)
  } catch {
    return false
  }
}

/**
 * Creates the lock with its content in one step: the holder is written to a private temp file
 * which is then hard-linked to the lock name (link fails if the name exists). A kill can never
 * leave an empty lock file behind.
 */
const tryCreate = async (path: string, me: Holder): Promise<boolean> => {
  const tmp = `${path}.${me.nonce}.tmp`
  await fs.writeFile(tmp, JSON.stringify(me))
  try {
    await fs.link(tmp, path)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    await fs.unlink(tmp).catch(() => undefined)
  }
}

/** Breaks a stale lock: rename it aside (atomic, one winner), then check we took what we judged. */
const breakStale = async (path: string, judged: Holder | undefined): Promise<void> => {
  const aside = `${path}.${randomBytes(6).toString("hex")}.broken`
  try {
    await fs.rename(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return
    throw e
  }
  const taken = parseHolder(await readIfExists(aside))
  if (judged !== undefined && taken !== undefined && taken.nonce !== judged.nonce) {
    // A live owner re-created the lock between our read and our rename: give it back.
    await fs.link(aside, path).catch(() => undefined)
  }
  await fs.unlink(aside).catch(() => undefined)
}

/**
 * Removes the lock at `path` when its owner is a dead process of this host (for `cache gc`);
 * true when it did. Locks of other hosts are left alone: their pid cannot be checked here.
 */
export const removeIfDead = async (path: string): Promise<boolean> => {
  const holder = parseHolder(await readIfExists(path))
  if (!deadHolder(holder)) return false
  await breakStale(path, holder)
  return true
}

/** True when the lock at `path` belongs to a dead process of this host (a dry run of removeIfDead). */
export const isDead = async (path: string): Promise<boolean> => deadHolder(parseHolder(await readIfExists(path)))

const deadHolder = (holder: Holder | undefined): holder is Holder =>
  holder !== undefined && holder.host === HOST && !processAlive(holder.pid)

const acquire = (path: string, options: LockOptions) =>
  Effect.gen(function*() {
    const me: Holder = { pid: process.pid, host: HOST, nonce: randomBytes(8).toString("hex") }
    const staleAfterMs = options.staleAfterMs ?? 600_000
    let delay = 5
    let waited = false
    while (true) {
      const created = yield* Effect.tryPromise({
        try: () => tryCreate(path, me),
        catch: (cause) => new LockError({ path, cause })
      })
      if (created) return me
      const holder = yield* Effect.tryPromise({
        try: () => readIfExists(path).then(parseHolder),
        catch: (cause) => new LockError({ path, cause })
      })
      const stale = yield* Effect.tryPromise({
        try: () => isStale(path, holder, staleAfterMs),
        catch: (cause) => new LockError({ path, cause })
      })
      const who = holder === undefined ? "unknown" : `pid ${holder.pid} on ${holder.host}`
      if (stale) {
        if (options.onBreak) yield* options.onBreak(who)
        yield* Effect.tryPromise({ try: () => breakStale(path, holder), catch: (cause) => new LockError({ path, cause }) })
        continue
      }
      if (!waited && options.onWait) yield* options.onWait(who)
      waited = true
      yield* Effect.sleep(delay)
      delay = Math.min(delay * 2, 200)
    }
  })

const release = (path: string, me: Holder) =>
  Effect.promise(async () => {
    const holder = parseHolder(await readIfExists(path).catch(() => undefined))
    if (holder?.nonce === me.nonce) await fs.unlink(path).catch(() => undefined)
  })

/**
 * Runs `effect` holding the lock of `key` in `locksDir`. The lock is released when the effect
 * ends, whatever the way (success, failure, interruption); a SIGKILL leaves it stale.
 */
export const withLock = <A, E, R>(
  locksDir: string,
  key: string,
  effect: Effect.Effect<A, E, R>,
  options: LockOptions = {}
): Effect.Effect<A, E | LockError, R> =>
  Effect.acquireUseRelease(
    Effect.andThen(
      Effect.tryPromise({ try: () => ensureDir(locksDir), catch: (cause) => new LockError({ path: locksDir, cause }) }),
      acquire(join(locksDir, `${key}.lock`), options)
    ),
    () => effect,
    (me) => release(join(locksDir, `${key}.lock`), me)
  )
