/**
 * A page in headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
 * JSON messages separated by NUL on file descriptors 3 and 4, no WebSocket needed): evaluate
 * script in the page, reload it, close. For tests that click through a page as a person would.
 */
import { spawn } from "node:child_process"
import type { Readable, Writable } from "node:stream"
import { tempDirInRepo } from "./store.ts"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Page {
  readonly evaluate: <A = unknown>(expression: string) => Promise<A>
  readonly reload: () => Promise<void>
  readonly close: () => Promise<void>
}

export const openPage = async (url: string, ready: string): Promise<Page> => {
  const child = spawn("chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
    // Without it, a file:// page's reloaded document sometimes read an empty localStorage (4 of 20
    // runs of the human-eval test on 2026-12-03, and one clean-clone CI; none in 24 runs with it).
    "--remote-debugging-pipe", "--allow-file-access-from-files", `--user-data-dir=${tempDirInRepo("chromium-")}`, "about:blank"
  ], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] })
  const toBrowser = child.stdio[3] as Writable
  const fromBrowser = child.stdio[4] as Readable
  const pending = new Map<number, (m: any) => void>()
  let buffer = ""
  fromBrowser.setEncoding("utf8")
  fromBrowser.on("data", (d: string) => {
    buffer += d
    for (let i = buffer.indexOf("\0"); i >= 0; i = buffer.indexOf("\0")) {
      const message = JSON.parse(buffer.slice(0, i))
      buffer = buffer.slice(i + 1)
      if (typeof message.id === "number") pending.get(message.id)?.(message)
    }
  })
  let next = 0
  const send = (method: string, params: object = {}, sessionId?: string) =>
    new Promise<any>((resolve, reject) => {
      const id = ++next
      pending.set(id, (m) => (pending.delete(id), m.error !== undefined ? reject(new Error(`${method}: ${JSON.stringify(m.error)}`)) : resolve(m.result)))
      toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId !== undefined ? { sessionId } : {}) }) + "\0")
    })
  const { targetId } = await send("Target.createTarget", { url })
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true })
  const evaluate = async <A>(expression: string): Promise<A> => {
    const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, sessionId)
    if (r.exceptionDetails !== undefined) throw new Error(`in the page: ${JSON.stringify(r.exceptionDetails)}`)
    return r.result.value as A
  }
  const loaded = async () => {
    for (let i = 0; i < 200; i++) {
      const ok = await evaluate<boolean>(`document.readyState === "complete" && (${ready})`).catch(() => false)
      if (ok) return
      await sleep(50)
    }
    throw new Error(`the page at ${url} did not become ready (${ready})`)
  }
  await loaded()
  return {
    evaluate,
    reload: async () => {
      // A mark on the old document: ready means a new document, not the old one still showing.
      await evaluate("window.__beforeReload = true")
      await send("Page.reload", {}, sessionId)
      for (let i = 0; i < 200; i++) {
        if (await evaluate<boolean>("window.__beforeReload !== true").catch(() => false)) break
        await sleep(50)
      }
      await loaded()
    },
    close: async () => {
      await send("Browser.close").catch(() => undefined)
      child.kill()
    }
  }
}
