/**
 * The lock protocol: who counts as a live holder (boot id, pid, process start time on this host;
 * heartbeats from other hosts), the heartbeat of a held lock, and the run and gc locks that keep
 * `cache gc` from deleting under a run. Time is TestClock's: no test sleeps.
 */
import { spawnSync } from "node:child_process"
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, utimesSync, writeFileSync, writeSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import { ArtifactStore, Executor, Pipeline, Stage, StoreMaintenance } from "polaris"
import * as KeyLock from "../src/dag/KeyLock.ts"
import { polaris } from "./support/cli.ts"
import { tempDir } from "./support/store.ts"

const HOST = hostname()
const BOOT_PATH = "/proc/sys/kernel/random/boot_id"
const linux = existsSync(BOOT_PATH) && existsSync("/proc/self/stat")
const bootId = () => readFileSync(BOOT_PATH, "utf8").trim()
/** This process's start time, read independently of KeyLock: field 22 of /proc/self/stat. */
const ownStart = () => /^\d+ \(.*\) (?:\S+ ){19}(\d+) /s.exec(readFileSync("/proc/self/stat", "utf8"))![1]!
/** A pid that is certainly dead: a child that has exited and been reaped. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!

const writeLock = (path: string, holder: object) => writeFileSync(path, JSON.stringify(holder))
const readLock = (path: string) => JSON.parse(readFileSync(path, "utf8"))

/** Events the options record, for assertions. */
const recorder = () => {
  const events: Array<string> = []
  const options = (staleAfterMs?: number): KeyLock.LockOptions => ({
    ...(staleAfterMs !== undefined ? { staleAfterMs } : {}),
    onWait: (holder) => Effect.sync(() => void events.push(`wait ${holder}`)),
    onBreak: (holder) => Effect.sync(() => void events.push(`break ${holder}`))
  })
  return { events, options }
}

/** Forks a take of the lock `key` in `dir`: the fiber ends with "taken" once it held it. */
const take = (dir: string, key: string, options: KeyLock.LockOptions) =>
  Effect.forkChild(KeyLock.withLock(dir, key, Effect.succeed("taken" as const), options))

const isDone = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.pollUnsafe() !== undefined

describe("KeyLock holder identity (this host)", () => {
  it("reads the start time after the last ')' of /proc/<pid>/stat", () => {
    const rest = Array.from({ length: 18 }, (_, i) => String(i + 4)).join(" ")
    expect(KeyLock.startTimeFromStat(`42 (a) b) (c d) S ${rest} 987654 0 0`)).toBe("987654")
    expect(KeyLock.startTimeFromStat(`42 (plain) S ${rest} 31337 0`)).toBe("31337")
    expect(KeyLock.startTimeFromStat("42 no parentheses")).toBeUndefined()
    expect(KeyLock.startTimeFromStat("42 (short) S 1 2")).toBeUndefined()
    if (linux) expect(KeyLock.startTimeFromStat(readFileSync("/proc/self/stat", "utf8"))).toBe(ownStart())
  })

  it.effect.runIf(linux)("writes host, boot id, pid, start time and a heartbeat into the lock it holds", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* TestClock.adjust(1234)
      const content = yield* KeyLock.withLock(dir, "k", Effect.sync(() => readLock(join(dir, "k.lock"))))
      expect(content).toMatchObject({ pid: process.pid, host: HOST, boot: bootId(), start: ownStart(), heartbeat: 1234 })
      expect(existsSync(join(dir, "k.lock"))).toBe(false)
    }))

  it.effect.runIf(linux)("breaks a lock naming another boot id, even though its pid is alive (a reused pid after reboot)", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeLock(join(dir, "k.lock"), { pid: process.pid, host: HOST, boot: "00000000-0000-4000-8000-000000000000", start: ownStart(), nonce: "before-reboot", heartbeat: 0 })
      const { events, options } = recorder()
      const fiber = yield* take(dir, "k", options())
      yield* TestClock.adjust("1 second")
      expect(isDone(fiber)).toBe(true)
      expect(yield* Fiber.join(fiber)).toBe("taken")
      expect(events).toEqual([`break pid ${process.pid} on ${HOST}`])
    }))

  it.effect.runIf(linux)("breaks a lock of this boot whose live pid started at another time (the holder died, the pid was reused)", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const otherStart = String(BigInt(ownStart()) + 1n)
      writeLock(join(dir, "k.lock"), { pid: process.pid, host: HOST, boot: bootId(), start: otherStart, nonce: "dead-holder", heartbeat: 0 })
      const { events, options } = recorder()
      const fiber = yield* take(dir, "k", options())
      yield* TestClock.adjust("1 second")
      expect(isDone(fiber)).toBe(true)
      expect(events).toEqual([`break pid ${process.pid} on ${HOST}`])
    }))

  it.effect.runIf(linux)("respects a live holder's correct identity however old its heartbeat, and takes the lock once it is released", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "k.lock")
      const holder = { pid: process.pid, host: HOST, boot: bootId(), start: ownStart(), nonce: "live-holder", heartbeat: 0 }
      writeLock(path, holder)
      const { events, options } = recorder()
      const fiber = yield* take(dir, "k", options(60_000))
      // Ten times staleAfterMs without heartbeats: this host's holders are judged by identity, not by time.
      yield* TestClock.adjust("10 minutes")
      expect(isDone(fiber)).toBe(false)
      expect(readLock(path)).toEqual(holder)
      expect(events).toEqual([`wait pid ${process.pid} on ${HOST}`])
      writeFileSync(path, "") // (not unlinked: an empty file is unreadable, and young, so still waited for)
      yield* TestClock.adjust("1 second")
      expect(isDone(fiber)).toBe(false)
      unlinkSync(path)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("taken")
      expect(events).toEqual([`wait pid ${process.pid} on ${HOST}`])
    }))

  it.effect("keeps today's rule for old lock files (no boot id): a live pid is respected, a dead one broken", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      writeLock(join(dir, "live.lock"), { pid: process.pid, host: HOST, nonce: "old-live" })
      const dead = deadPid()
      writeLock(join(dir, "dead.lock"), { pid: dead, host: HOST, nonce: "old-dead" })
      const { events, options } = recorder()
      const live = yield* take(dir, "live", options())
      const broken = yield* take(dir, "dead", options())
      yield* TestClock.adjust("10 minutes")
      expect(isDone(live)).toBe(false)
      expect(yield* Fiber.join(broken)).toBe("taken")
      expect(events.sort()).toEqual([`break pid ${dead} on ${HOST}`, `wait pid ${process.pid} on ${HOST}`])
      yield* Fiber.interrupt(live)
      expect(readLock(join(dir, "live.lock")).nonce).toBe("old-live")
    }))
})

describe("KeyLock heartbeats", () => {
  it.effect("another host's lock lives while its heartbeat is fresh, even when the file is old, and is broken once it stops for longer than staleAfterMs", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "k.lock")
      const longAgo = new Date("2001-01-01T00:00:00Z")
      const beat = (at: number) => {
        writeLock(path, { pid: 4242, host: "elsewhere.invalid", boot: "other-boot", start: "1", nonce: "remote", heartbeat: at })
        utimesSync(path, longAgo, longAgo)
      }
      beat(0)
      const { events, options } = recorder()
      const fiber = yield* take(dir, "k", options(60_000))
      // The remote holder keeps beating every 20 s for 5 minutes, five times staleAfterMs.
      for (let i = 0; i < 15; i++) {
        yield* TestClock.adjust("20 seconds")
        beat(yield* Clock.currentTimeMillis)
      }
      expect(isDone(fiber)).toBe(false)
      expect(readLock(path).nonce).toBe("remote")
      // Then it stops: still trusted at 59 s after the last beat, broken past 60 s.
      yield* TestClock.adjust("59 seconds")
      expect(isDone(fiber)).toBe(false)
      yield* TestClock.adjust("2 seconds")
      expect(isDone(fiber)).toBe(true)
      expect(yield* Fiber.join(fiber)).toBe("taken")
      expect(events).toEqual(["wait pid 4242 on elsewhere.invalid", "break pid 4242 on elsewhere.invalid"])
    }))

  it.effect("a held lock's heartbeat advances with the clock every staleAfterMs/4 and stops at release, also on interruption", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "k.lock")
      // A second name for the lock file's inode: it outlives the release, and shows any write after it.
      const shadow = join(dir, "shadow")
      const seen: Array<number> = []
      yield* KeyLock.withLock(dir, "k", Effect.gen(function*() {
        linkSync(path, shadow)
        seen.push(readLock(path).heartbeat)
        yield* TestClock.adjust("10 seconds")
        seen.push(readLock(path).heartbeat)
        yield* TestClock.adjust("25 seconds")
        seen.push(readLock(path).heartbeat)
      }), { staleAfterMs: 40_000 })
      expect(seen).toEqual([0, 10_000, 30_000])
      expect(existsSync(path)).toBe(false)
      // The lock's descriptor number is free again and likely reused here: a beat after release must not reach it.
      const victim = join(dir, "victim")
      const victimFd = openSync(victim, "w+")
      writeSync(victimFd, "untouched".padEnd(64, "."))
      yield* TestClock.adjust("10 minutes")
      closeSync(victimFd)
      expect(readLock(shadow).heartbeat).toBe(30_000)
      expect(readFileSync(victim, "utf8")).toBe("untouched".padEnd(64, "."))

      // Interrupted while held: released, and no beat after.
      const shadow2 = join(dir, "shadow2")
      const fiber = yield* Effect.forkChild(KeyLock.withLock(dir, "k", Effect.andThen(Effect.sync(() => linkSync(path, shadow2)), Effect.never), { staleAfterMs: 40_000 }))
      yield* TestClock.adjust("10 seconds")
      const beforeInterrupt = readLock(shadow2).heartbeat
      expect(beforeInterrupt).toBe(Date.parse("1970-01-01T00:10:45Z"))
      yield* Fiber.interrupt(fiber)
      expect(existsSync(path)).toBe(false)
      yield* TestClock.adjust("10 minutes")
      expect(readLock(shadow2).heartbeat).toBe(beforeInterrupt)
    }))
})

const echo = Stage.make({
  name: "echo",
  version: "1",
  output: Schema.String,
  params: Schema.Struct({ text: Schema.String }),
  run: (_, { text }) => Effect.succeed(text)
})
const echoPipeline = Pipeline.make("echo", (p) => ({ out: p.node(echo, { id: "echo", params: { text: "hi" } }) }))

describe("run locks and cache gc", () => {
  it.effect("gc refuses while a live run holds its lock (naming it), removes nothing, then succeeds once it is released and removes a dead run's lock", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const paths = ArtifactStore.pathsOf(root)
      const orphan = yield* ArtifactStore.make(root).put(new TextEncoder().encode("nobody points here"))
      mkdirSync(join(paths.locks, "runs"), { recursive: true })
      const deadRun = KeyLock.runLockPath(paths.locks, "run-dead")
      writeLock(deadRun, { pid: deadPid(), host: HOST, nonce: "dead-run", heartbeat: 0 })
      const scope = yield* Scope.make()
      yield* Scope.provide(scope)(KeyLock.holdRun(paths.locks, "run-live"))

      const refused = yield* Effect.flip(StoreMaintenance.gc(paths, { dryRun: false }))
      expect(refused._tag).toBe("StoreInUse")
      expect(refused).toMatchObject({ runs: [{ runId: "run-live", pid: process.pid, host: HOST }] })
      expect(refused.message).toContain(`run run-live (pid ${process.pid} on ${HOST})`)
      expect(existsSync(ArtifactStore.objectPath(paths, orphan))).toBe(true)
      expect(existsSync(deadRun)).toBe(true)
      expect(existsSync(KeyLock.gcLockPath(paths.locks))).toBe(false) // a refusal gives the gc lock back

      // A dry run still only reports; it counts the dead run's lock.
      const plan = yield* StoreMaintenance.gc(paths)
      expect(plan.removed.locks.count).toBe(1)

      yield* Scope.close(scope, Exit.void)
      expect(existsSync(KeyLock.runLockPath(paths.locks, "run-live"))).toBe(false)
      const done = yield* StoreMaintenance.gc(paths, { dryRun: false })
      expect(done.removed.objects.count).toBe(1)
      expect(done.removed.locks.count).toBe(1)
      expect(existsSync(ArtifactStore.objectPath(paths, orphan))).toBe(false)
      expect(existsSync(deadRun)).toBe(false)
      expect(existsSync(KeyLock.gcLockPath(paths.locks))).toBe(false)
    }))

  it.effect("Executor.run holds its run lock while it runs: gc from inside a stage is refused, naming the run", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const paths = ArtifactStore.pathsOf(root)
      const probe = Stage.make({
        name: "probe",
        version: "1",
        output: Schema.String,
        params: Schema.Struct({}),
        run: () => Effect.map(Effect.flip(StoreMaintenance.gc(paths, { dryRun: false })), (e) => e.message)
      })
      const result = yield* Executor.run(Pipeline.make("probe", (p) => ({ out: p.node(probe, { id: "probe", params: {} }) })), { runId: "run-probe" })
        .pipe(Effect.provide(ArtifactStore.layer(root)))
      expect(result.outputs.out).toContain(`run run-probe (pid ${process.pid} on ${HOST})`)
      expect(existsSync(KeyLock.runLockPath(paths.locks, "run-probe"))).toBe(false)
    }))

  it.effect("a run starting while gc holds the store waits, says why, and runs once gc is done", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const paths = ArtifactStore.pathsOf(root)
      const gcScope = yield* Scope.make()
      yield* Scope.provide(gcScope)(KeyLock.holdGc(paths.locks))
      const fiber = yield* Effect.forkChild(Executor.run(echoPipeline, { runId: "run-late" }).pipe(Effect.provide(ArtifactStore.layer(root))))
      yield* TestClock.adjust("1 minute")
      expect(isDone(fiber)).toBe(false)
      expect(existsSync(join(paths.runs, "run-late"))).toBe(false)
      expect(existsSync(KeyLock.runLockPath(paths.locks, "run-late"))).toBe(false)
      const said = (yield* TestConsole.errorLines).map(String).join("\n")
      expect(said).toContain(`run run-late waits: cache gc (pid ${process.pid} on ${HOST}) is deleting from the store`)
      yield* Scope.close(gcScope, Exit.void)
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      expect(result.outputs.out).toBe("hi")
    }))

  it("`polaris cache gc --apply` names the run that blocks it and exits 1", async () => {
    const root = tempDir()
    const scope = Effect.runSync(Scope.make())
    Effect.runSync(Scope.provide(scope)(KeyLock.holdRun(ArtifactStore.pathsOf(root).locks, "run-busy")))
    try {
      const r = await polaris(["cache", "gc", "--apply", "--store", root])
      expect(r.status).toBe(1)
      expect(r.stderr).toContain(`polaris: cache gc refused: run run-busy (pid ${process.pid} on ${HOST}) is still writing`)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
    const ok = await polaris(["cache", "gc", "--apply", "--store", root])
    expect(ok.status, ok.stderr).toBe(0)
  })
})
