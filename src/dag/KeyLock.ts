/**
 * Locks on the store, across processes and hosts: one per key (single flight), one per run in
 * flight, and one for `cache gc`.
 *
 * Per key: no global store lock. Two runs on one store proceed in parallel and meet only on the
 * keys they share; the first computes, the other waits and then reads the result.
 *
 * A lock is a file created whole and exclusively (a private temp file hard-linked to the lock
 * name), holding who holds it: host, boot id, pid, the process's start time, a nonce, and a
 * heartbeat time. A lock whose holder is gone is stale and is broken by the next waiter:
 *
 * - On this host a pid alone proves nothing: after a reboot, or once the holder died, the pid
 *   can belong to another process, and the lock would never be broken. So a holder is live
 *   only if its boot id is this boot's (`/proc/sys/kernel/random/boot_id`), its pid is alive,
 *   and that process started when the recorded one did (`/proc/<pid>/stat`, field 22). Without
 *   /proc (macOS), and in lock files of older versions (no boot id), the pid alone decides.
 * - Another host's process cannot be checked from here, so the holder proves it is alive: while
 *   it holds the lock, a fiber rewrites the heartbeat every `staleAfterMs / 4` (Effect's Clock),
 *   and the lock is stale once its heartbeat is older than `staleAfterMs`, however long ago the
 *   lock was taken (a judge batch may hold its key for hours). Hosts' clocks must agree to well
 *   within `staleAfterMs`. Old lock files (no heartbeat) are judged by their modification time.
 *
 * Runs and gc: `Executor.run` holds `locks/runs/<run-id>.lock` for its whole life (`holdRun`),
 * and `cache gc` takes `locks/gc.lock` (`holdGc`) and then refuses if a live run lock exists
 * (`runLocks`). A run that finds a live gc lock after taking its own gives its own back and
 * waits. Each side creates its lock before looking for the other's, so at least one sees the
 * other: gc never deletes what a run is writing.
 *
 * Lock files are tiny and read and written synchronously: fewer thread-pool round trips on the
 * hot path, and a waiter's loop is driven by TestClock alone in tests.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { hostname } from "node:os"
import { basename, dirname, join } from "node:path"
import { Clock, Data, Effect, Exit, Schedule, Scope } from "effect"
import { processAlive } from "./internal/files.ts"

/** A lock could not be taken or released because the file system refused. */
export class LockError extends Data.TaggedError("LockError")<{ readonly path: string; readonly cause: unknown }> {
  override get message() {
    return `lock ${this.path}: ${String(this.cause)}`
  }
}

/** What a lock file holds. `boot`, `start` and `heartbeat` are absent in files of older versions. */
interface Holder {
  readonly pid: number
  readonly host: string
  readonly nonce: string
  /** Boot id of the holder's kernel (Linux). */
  readonly boot?: string
  /** Start time of the holder's process, clock ticks after boot (`/proc/<pid>/stat` field 22). */
  readonly start?: string
  /** Clock time (ms) of the holder's last heartbeat. */
  readonly heartbeat?: number
}

/** Settings of the lock protocol. */
export interface LockOptions {
  /** Locks of other hosts count as stale this long after their last heartbeat (default 10 min). */
  readonly staleAfterMs?: number
  /** Called once when the lock is found held (for a `lock_wait` event). */
  readonly onWait?: (holder: string) => Effect.Effect<void>
  /** Called when a stale lock is broken. */
  readonly onBreak?: (holder: string) => Effect.Effect<void>
}

const DEFAULT_STALE_AFTER_MS = 600_000
/** An unreadable lock was not written by this protocol (locks are created whole): seconds, not minutes. */
const UNREADABLE_STALE_MS = 5_000
const HOST = hostname()

const readText = (path: string): string | undefined => {
  try {
    return fs.readFileSync(path, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

const readTextOrUndefined = (path: string): string | undefined => {
  try {
    return fs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/**
 * The start time of a process from the text of its `/proc/<pid>/stat`: field 22, in clock ticks
 * after boot. Field 2, the command name in parentheses, may itself hold spaces and parentheses,
 * so fields are counted from after the last ')'. Undefined when the text is not of that form.
 *
 * @example
 * startTimeFromStat("42 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 9876 0") // "9876"
 */
export const startTimeFromStat = (stat: string): string | undefined => {
  const close = stat.lastIndexOf(")")
  if (close < 0) return undefined
  // After ')' come field 3 (state), field 4, ...: field 22 is the 20th.
  const start = stat.slice(close + 1).trim().split(/\s+/)[22 - 3]
  return start !== undefined && /^\d+$/.test(start) ? start : undefined
}

const startTimeOf = (pid: number): string | undefined => {
  const stat = readTextOrUndefined(`/proc/${pid}/stat`)
  return stat === undefined ? undefined : startTimeFromStat(stat)
}

const BOOT = readTextOrUndefined("/proc/sys/kernel/random/boot_id")?.trim() || undefined
const START = startTimeOf(process.pid)

const parseHolder = (text: string | undefined): Holder | undefined => {
  if (text === undefined) return undefined
  try {
    const h = JSON.parse(text) as Partial<Record<keyof Holder, unknown>>
    if (typeof h.pid !== "number" || typeof h.host !== "string" || typeof h.nonce !== "string") return undefined
    return {
      pid: h.pid,
      host: h.host,
      nonce: h.nonce,
      ...(typeof h.boot === "string" ? { boot: h.boot } : {}),
      ...(typeof h.start === "string" ? { start: h.start } : {}),
      ...(typeof h.heartbeat === "number" ? { heartbeat: h.heartbeat } : {})
    }
  } catch {
    return undefined
  }
}

const describe = (holder: Holder | undefined) => (holder === undefined ? "unknown" : `pid ${holder.pid} on ${holder.host}`)

/** A holder of this host is live when it runs in this boot, and its pid is the very process that wrote the lock. */
const liveHere = (holder: Holder): boolean => {
  if (holder.boot !== undefined && BOOT !== undefined && holder.boot !== BOOT) return false
  if (!processAlive(holder.pid)) return false
  if (holder.start === undefined) return true
  const start = startTimeOf(holder.pid)
  return start === undefined || start === holder.start
}

const mtimeAge = (path: string): number | undefined => {
  try {
    return Date.now() - fs.statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

/** The rules of the module doc. `now` is Clock time, compared with heartbeats; file times are wall-clock. */
const isStale = (path: string, holder: Holder | undefined, staleAfterMs: number, now: number): boolean => {
  if (holder !== undefined && holder.host === HOST) return !liveHere(holder)
  if (holder?.heartbeat !== undefined) return now - holder.heartbeat > staleAfterMs
  const age = mtimeAge(path)
  return age !== undefined && age > (holder === undefined ? UNREADABLE_STALE_MS : staleAfterMs)
}

type Look =
  | { readonly state: "free" }
  | { readonly state: "live" | "stale"; readonly holder: Holder | undefined; readonly who: string }

const inspect = (path: string, staleAfterMs: number, now: number): Look => {
  const text = readText(path)
  if (text === undefined) return { state: "free" }
  const holder = parseHolder(text)
  return { state: isStale(path, holder, staleAfterMs, now) ? "stale" : "live", holder, who: describe(holder) }
}

/** Breaks a stale lock: rename it aside (atomic, one winner), then check we took what we judged. */
const breakStale = (path: string, judged: Holder | undefined): void => {
  const aside = `${path}.${randomBytes(6).toString("hex")}.broken`
  try {
    fs.renameSync(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return
    throw e
  }
  const taken = parseHolder(readTextOrUndefined(aside))
  if (judged !== undefined && taken !== undefined && taken.nonce !== judged.nonce) {
    // A live owner re-created the lock between our read and our rename: give it back.
    try {
      fs.linkSync(aside, path)
    } catch { /* the name was taken again meanwhile: that owner holds it */ }
  }
  fs.rmSync(aside, { force: true })
}

const attempt = <A>(path: string, f: () => A) => Effect.try({ try: f, catch: (cause) => new LockError({ path, cause }) })

/**
 * One look at the lock at `path`, breaking it when stale: the live holder's description, or
 * undefined when the lock is free now.
 */
const look = (path: string, staleAfterMs: number, onBreak?: (holder: string) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const found = yield* attempt(path, () => inspect(path, staleAfterMs, now))
    if (found.state === "free") return undefined
    if (found.state === "live") return found.who
    if (onBreak) yield* onBreak(found.who)
    yield* attempt(path, () => breakStale(path, found.holder))
    return undefined
  })

/** A lock this process holds: the lock file stays open, so heartbeats reach it and no other file. */
interface Held {
  readonly path: string
  readonly nonce: string
  readonly fd: number
  /** Byte offset of the heartbeat field, rewritten in place (fixed width). */
  readonly offset: number
  released: boolean
}

/** The heartbeat field's value and the closing brace: always 17 bytes, so the file never changes length. */
const stamp = (now: number) => `${String(Math.floor(now)).padStart(16)}}`

/**
 * Creates the lock with its content in one step: the holder is written to a private temp file
 * which is then hard-linked to the lock name (link fails if the name exists). A kill can never
 * leave an empty lock file behind. The descriptor stays open while the lock is held.
 */
const tryCreate = (path: string, me: Holder, now: number): Held | undefined => {
  const head = `${JSON.stringify(me).slice(0, -1)},"heartbeat":`
  const tmp = `${path}.${me.nonce}.tmp`
  const fd = fs.openSync(tmp, "w", 0o644)
  let created = false
  try {
    fs.writeSync(fd, head + stamp(now))
    fs.linkSync(tmp, path)
    created = true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
  } finally {
    fs.rmSync(tmp, { force: true })
    if (!created) fs.closeSync(fd)
  }
  return created ? { path, nonce: me.nonce, fd, offset: Buffer.byteLength(head), released: false } : undefined
}

const madeDirs = new Set<string>()
const ensureDirSync = (dir: string) => {
  if (madeDirs.has(dir)) return
  fs.mkdirSync(dir, { recursive: true })
  madeDirs.add(dir)
}

const acquire = (path: string, options: LockOptions) =>
  Effect.gen(function*() {
    yield* attempt(dirname(path), () => ensureDirSync(dirname(path)))
    const me: Holder = {
      pid: process.pid,
      host: HOST,
      nonce: randomBytes(8).toString("hex"),
      ...(BOOT !== undefined ? { boot: BOOT } : {}),
      ...(START !== undefined ? { start: START } : {})
    }
    const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS
    let delay = 5
    let waited = false
    while (true) {
      const now = yield* Clock.currentTimeMillis
      const held = yield* attempt(path, () => tryCreate(path, me, now))
      if (held !== undefined) return held
      const holder = yield* look(path, staleAfterMs, options.onBreak)
      if (holder === undefined) continue
      if (!waited && options.onWait) yield* options.onWait(holder)
      waited = true
      // Waiting holds nothing, so it may be interrupted (a watch cycle, Ctrl-C).
      yield* Effect.interruptible(Effect.sleep(delay))
      delay = Math.min(delay * 2, 200)
    }
  })

const beat = (held: Held) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      if (held.released) return
      try {
        fs.writeSync(held.fd, stamp(now), held.offset)
      } catch {
        // Retried at the next beat; only many missed beats in a row make the lock look stale.
      }
    }))

const release = (held: Held) =>
  Effect.sync(() => {
    held.released = true
    try {
      if (parseHolder(readText(held.path))?.nonce === held.nonce) fs.unlinkSync(held.path)
    } catch { /* gone already, or broken by a waiter that judged it stale */ }
    try {
      fs.closeSync(held.fd)
    } catch { /* already closed */ }
  })

/**
 * Takes the lock at `path` (waiting while a live holder has it, breaking it when stale) and
 * holds it for the life of the scope, its heartbeat refreshed by a fiber of that scope.
 *
 * @example
 * yield* Effect.scoped(Effect.andThen(KeyLock.hold(".polaris/locks/batch.lock"), work))
 */
export const hold = (path: string, options: LockOptions = {}): Effect.Effect<void, LockError, Scope.Scope> =>
  Effect.gen(function*() {
    const held = yield* Effect.acquireRelease(acquire(path, options), release)
    const every = (options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS) / 4
    // Forked after the release is registered, so the scope stops it before releasing.
    yield* Effect.forkScoped(Effect.schedule(beat(held), Schedule.spaced(every)))
  })

/**
 * Runs `effect` holding the lock of `key` in `locksDir`. The lock is released when the effect
 * ends, whatever the way (success, failure, interruption); a SIGKILL leaves it stale.
 *
 * @example
 * yield* KeyLock.withLock(paths.locks, key, computeOnce, { onWait: (holder) => Console.log(`waiting for ${holder}`) })
 */
export const withLock = <A, E, R>(
  locksDir: string,
  key: string,
  effect: Effect.Effect<A, E, R>,
  options: LockOptions = {}
): Effect.Effect<A, E | LockError, R> =>
  Effect.scopedWith((scope) => Effect.andThen(Scope.provide(hold(join(locksDir, `${key}.lock`), options), scope), effect))

/** Path of the lock a run holds while it runs. */
export const runLockPath = (locksDir: string, runId: string) => join(locksDir, "runs", `${runId}.lock`)
/** Path of the lock `cache gc` holds while it deletes. */
export const gcLockPath = (locksDir: string) => join(locksDir, "gc.lock")

/** Settings of `holdRun`. */
export interface RunLockOptions {
  readonly staleAfterMs?: number
  /** Called each time the run has to wait, with why (gc holds the store; the run id is in use). */
  readonly onWait?: (why: string) => Effect.Effect<void>
}

/**
 * Holds the run lock of `runId` for the life of the scope, so `cache gc` refuses to delete
 * while the run writes. While gc holds the store, waits (without its run lock) until gc ends.
 * A second process running the same run id waits for the first.
 *
 * @example
 * yield* Effect.scoped(Effect.andThen(KeyLock.holdRun(paths.locks, runId), runTheNodes))
 */
export const holdRun = (locksDir: string, runId: string, options: RunLockOptions = {}): Effect.Effect<void, LockError, Scope.Scope> =>
  Effect.gen(function*() {
    const outer = yield* Scope.Scope
    const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS
    const gcLock = gcLockPath(locksDir)
    while (true) {
      const scope = yield* Scope.fork(outer)
      yield* Scope.provide(scope)(hold(runLockPath(locksDir, runId), {
        staleAfterMs,
        ...(options.onWait ? { onWait: (holder: string) => options.onWait!(`run ${runId} is in use by ${holder}`) } : {})
      }))
      const gc = yield* look(gcLock, staleAfterMs)
      if (gc === undefined) return
      // gc took its lock first and may be deleting: give the run lock back and wait for gc to end.
      yield* Scope.close(scope, Exit.void)
      if (options.onWait) yield* options.onWait(`cache gc (${gc}) is deleting from the store`)
      let delay = 5
      while ((yield* look(gcLock, staleAfterMs)) !== undefined) {
        yield* Effect.sleep(delay)
        delay = Math.min(delay * 2, 200)
      }
    }
  })

/**
 * Holds the store's gc lock for the life of the scope: runs that start meanwhile wait for it.
 * Runs already going are not stopped: look at `runLocks` once it is held.
 */
export const holdGc = (locksDir: string, options: LockOptions = {}): Effect.Effect<void, LockError, Scope.Scope> =>
  hold(gcLockPath(locksDir), options)

/** A run lock as `runLocks` finds it. `pid` and `host` are absent when the file is unreadable. */
export interface RunLock {
  readonly runId: string
  readonly path: string
  readonly pid?: number
  readonly host?: string
  /** Its run still holds it (by the rules of the module doc). */
  readonly live: boolean
}

/** The run locks of the store, live or stale. */
export const runLocks = (locksDir: string, options: { readonly staleAfterMs?: number } = {}): Effect.Effect<Array<RunLock>, LockError> =>
  Effect.gen(function*() {
    const dir = join(locksDir, "runs")
    const now = yield* Clock.currentTimeMillis
    return yield* attempt(dir, () => {
      const names = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith(".lock")).sort() : []
      return names.flatMap((name): Array<RunLock> => {
        const path = join(dir, name)
        const found = inspect(path, options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS, now)
        if (found.state === "free") return []
        const who = found.holder === undefined ? {} : { pid: found.holder.pid, host: found.holder.host }
        return [{ runId: basename(name, ".lock"), path, ...who, live: found.state === "live" }]
      })
    })
  })

/** True when the lock at `path` is stale by the rules of the module doc (a dry run of `removeIfStale`). */
export const isStaleLock = (path: string, options: { readonly staleAfterMs?: number } = {}): Effect.Effect<boolean, LockError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    attempt(path, () => inspect(path, options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS, now).state === "stale"))

/** Removes the lock at `path` when it is stale (for `cache gc`); true when it did. */
export const removeIfStale = (path: string, options: { readonly staleAfterMs?: number } = {}): Effect.Effect<boolean, LockError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    attempt(path, () => {
      const found = inspect(path, options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS, now)
      if (found.state !== "stale") return false
      breakStale(path, found.holder)
      return true
    }))
