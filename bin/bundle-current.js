// Whether dist/cli/ was built from exactly the files on disk now (scripts/build-cli.mjs records
// each input's size and mtime, and package-lock.json's): the one check bin/polaris.js, the
// start-up benchmark and the bundle test share.
const { readFileSync, statSync } = require("node:fs")

/** @param {URL} root the project's folder, as a file URL ending in "/" @returns {boolean} */
exports.bundleIsCurrent = (root) => {
  try {
    const { lock, inputs } = JSON.parse(readFileSync(new URL("dist/cli/inputs.json", root), "utf8"))
    /** @param {string} path @param {[number, number]} stamp */
    const same = (path, [size, mtime]) => {
      const s = statSync(new URL(path, root))
      return s.size === size && Math.round(s.mtimeMs) === mtime
    }
    return same("package-lock.json", lock) && inputs.every(/** @param {[string, number, number]} i */ ([path, size, mtime]) => same(path, [size, mtime]))
  } catch {
    return false
  }
}
