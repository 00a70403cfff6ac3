/**
 * The README's walkthrough, run as written: every command of its `sh` blocks, in order, on a
 * fresh store. A command marked `# fails` must exit non-zero; every other one must succeed.
 */
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { tempDir } from "./support/store.ts"

const ROOT = join(import.meta.dirname, "..")

const walkthroughCommands = () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf("## Walkthrough"), readme.indexOf("\n## ", readme.indexOf("## Walkthrough") + 1))
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split("\n").filter((l) => l.trim().length > 0))
}

describe("README walkthrough", () => {
  it("runs exactly as written", () => {
    const commands = walkthroughCommands()
    expect(commands.length).toBeGreaterThanOrEqual(12)
    const env = { ...process.env, POLARIS_STORE: join(tempDir(), "store") }
    const outputs: Array<string> = []
    for (const command of commands) {
      const r = spawnSync("bash", ["-c", command], { cwd: ROOT, env, encoding: "utf8" })
      outputs.push(r.stdout + r.stderr)
      if (command.includes("# fails")) expect(r.status, `${command}\n${r.stderr}`).not.toBe(0)
      else expect(r.status, `${command}\n${r.stderr}`).toBe(0)
    }
    const at = (prefix: string, n = 1) => outputs.filter((_, i) => commands[i]!.startsWith(prefix))[n - 1] ?? ""
    expect(at("npx polaris run examples/word-stats/recipe.yaml", 1)).toMatch(/7 executed, 0 cached/)
    expect(at("npx polaris run examples/word-stats/recipe.yaml", 2)).toMatch(/0 executed, 7 cached/)
    expect(at("npx polaris run examples/word-stats/recipe.yaml --set params.grow_steps=5")).toMatch(/3 executed, 6 cached/)
    expect(at("npx polaris explain")).toMatch(/inputs\.vocabulary: .* \(from node grow\/step-004\/grow, which re-ran\)/)
    expect(at("npx polaris run examples/word-stats/with-custom-stage.yaml")).toMatch(/executed/)
    expect(at("npx polaris data stats recipes/polaris-data.yaml")).toMatch(/stories: \d+ train, \d+ held out/)
    expect(at("npx polaris dag examples/polaris-data-filter/recipe.yaml")).toMatch(/drop-dialogue-openings .* <- stories: split-stories/)
    expect(at("npx polaris status")).toMatch(/failed rate: TransientError: 503/)
    expect(at("npx polaris run recipes/judge-references.yaml")).toMatch(/judged: 21 stories, 21 scored: quality \d\.\d{3}/)
    expect(at("npx polaris validate recipes/polaris-qwen3.5-9b.yaml")).toMatch(process.env.GEMINI_API_KEY ? /ok: pipeline polaris/ : /warning: recipes\/polaris-qwen3\.5-9b\.yaml:\d+:\d+: judge\.api_key: environment variable GEMINI_API_KEY is not set/)
    expect(at("npx polaris resume")).toMatch(/2 executed, [0-9]+ cached/)
  }, 180_000)
})
