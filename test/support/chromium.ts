/**
 * A page rendered in headless Chromium (Debian's `chromium`), as a reader would open it: the
 * screenshot is kept in test-artifacts/ for a look, and the page must load without console errors.
 */
import { spawnSync } from "node:child_process"
import { statSync } from "node:fs"
import { join } from "node:path"
import { expect } from "vitest"
import { ROOT } from "./cli.ts"
import { tempDirInRepo } from "./store.ts"

/** Renders `htmlPath` to `test-artifacts/<name>.png` at `size` (`width,height`) and checks it drew something, cleanly. */
export const renderInChromium = (htmlPath: string, name: string, size = "1280,2400") => {
  const shot = join(ROOT, "test-artifacts", `${name}.png`)
  const browser = spawnSync("chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", `--user-data-dir=${tempDirInRepo("chromium-")}`, "--enable-logging=stderr", "--v=0",
    `--screenshot=${shot}`, `--window-size=${size}`, `file://${htmlPath}`
  ], { encoding: "utf8", timeout: 60_000 })
  expect(browser.error, "Debian's chromium must be installed (apt-get install chromium)").toBeUndefined()
  expect(browser.status, browser.stderr).toBe(0)
  expect(statSync(shot).size).toBeGreaterThan(20_000)
  expect(browser.stderr).not.toMatch(/CONSOLE\(\d+\)|Uncaught/)
}
