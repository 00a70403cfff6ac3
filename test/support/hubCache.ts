/**
 * A Hugging Face hub cache laid out on disk as huggingface_hub writes it
 * (huggingface/huggingface_hub src/huggingface_hub/file_download.py@ee0a451 `repo_folder_name`,
 * `try_to_load_from_cache`): `<cache>/models--<Org>--<Name>/refs/main` holding the commit, and the
 * files under `snapshots/<commit>/`. (The real cache stores blobs under `blobs/` and links them
 * from the snapshot; readers only see the snapshot paths.)
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"

/** Writes `files` as the `main` snapshot of `repoId` in `cache`; returns the snapshot folder. */
export const writeSnapshot = (
  cache: string,
  repoId: string,
  files: Readonly<Record<string, string | Uint8Array>>,
  revision = "3f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
): string => {
  const repo = join(cache, ["models", ...repoId.split("/")].join("--"))
  const snapshot = join(repo, "snapshots", revision)
  mkdirSync(join(repo, "refs"), { recursive: true })
  writeFileSync(join(repo, "refs", "main"), revision) // huggingface_hub writes the hash without a newline
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(snapshot, name)), { recursive: true })
    writeFileSync(join(snapshot, name), content)
  }
  mkdirSync(snapshot, { recursive: true })
  return snapshot
}
