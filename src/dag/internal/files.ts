/** File primitives the store is built on: atomic writes and tolerant reads. */
import { randomBytes } from "node:crypto"
import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import { dirname, join } from "node:path"

const madeDirs = new Set<string>()

/** mkdir -p, remembered per process so the hot path does not repeat it. */
export const ensureDir = async (dir: string): Promise<void> => {
  if (madeDirs.has(dir)) return
  await fs.mkdir(dir, { recursive: true })
  madeDirs.add(dir)
}

/** A temp name unique across processes and fibers. */
export const tempName = (tmpDir: string): string => join(tmpDir, `${process.pid}-${randomBytes(8).toString("hex")}.tmp`)

/**
 * Writes `bytes` (or chunks, in order) to `dest` so that a reader sees either the old file or the
 * whole new one, even across a crash: temp file, fsync, rename, fsync of the directory.
 */
export const atomicWrite = async (
  tmpDir: string,
  dest: string,
  bytes: Uint8Array | string | ReadonlyArray<Uint8Array>,
  options: { readonly mode?: number; readonly durable?: boolean } = {}
): Promise<void> => {
  await ensureDir(tmpDir)
  const tmp = tempName(tmpDir)
  const handle = await fs.open(tmp, "wx", options.mode ?? 0o644)
  try {
    if (typeof bytes !== "string" && !(bytes instanceof Uint8Array)) await writeAll(handle, bytes)
    else await handle.writeFile(bytes)
    if (options.durable !== false) await handle.sync()
  } finally {
    await handle.close()
  }
  const dir = dirname(dest)
  await ensureDir(dir)
  await fs.rename(tmp, dest)
  if (options.durable !== false) await syncDir(dir)
}

/** Writes the chunks in order (writev may write part of them: it goes on from where it stopped). */
const writeAll = async (handle: fs.FileHandle, chunks: ReadonlyArray<Uint8Array>): Promise<void> => {
  let rest = chunks.filter((c) => c.byteLength > 0)
  while (rest.length > 0) {
    // Linux takes at most 1024 buffers per writev (IOV_MAX).
    let { bytesWritten } = await handle.writev(rest.slice(0, 1024))
    let i = 0
    while (i < rest.length && bytesWritten >= rest[i]!.byteLength) bytesWritten -= rest[i++]!.byteLength
    rest = rest.slice(i)
    if (bytesWritten > 0) rest[0] = rest[0]!.subarray(bytesWritten)
  }
}

/** fsync of a directory, so a rename in it survives power loss. */
export const syncDir = async (dir: string): Promise<void> => {
  const handle = await fs.open(dir, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Files up to this size are read synchronously (see readIfExists). */
const SYNC_READ_MAX = 4 * 1024 * 1024

/** Where a file's first bytes are read (copied out before any other read can start). */
const firstBytes = Buffer.allocUnsafe(64 * 1024)

/**
 * Reads a file, or undefined when it does not exist. Small files (index entries, most
 * outputs) are read synchronously: an async read is four thread-pool round trips (open, stat,
 * read, close), which cost more than the read itself and dominated cached runs. A file that fits
 * in one read of 64 KiB (an index entry) takes no stat and no second read: reading the 1,000
 * index entries of a cached pipeline took half the time. Large files (weights) are read
 * asynchronously so other fibers keep going.
 */
export const readIfExists = async (path: string): Promise<Buffer | undefined> => {
  const missing = (e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
  let fd: number
  try {
    fd = fsSync.openSync(path, "r")
  } catch (e) {
    return missing(e)
  }
  try {
    // A positioned read (pread): the file's offset stays at 0 for readFileSync below.
    const n = fsSync.readSync(fd, firstBytes, 0, firstBytes.length, 0)
    if (n < firstBytes.length) return Buffer.from(firstBytes.subarray(0, n))
    if (fsSync.fstatSync(fd).size <= SYNC_READ_MAX) return fsSync.readFileSync(fd)
  } finally {
    fsSync.closeSync(fd)
  }
  return fs.readFile(path).catch(missing)
}

/** True when a process with this pid exists on this host. */
export const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}
