/**
 * A worker of SamplerPool.ts: StoryModels on one onnxruntime thread each, running the pool's
 * jobs under the weights each job names (a StoryModel.sampler per version). Jobs run as they
 * come: the generations in flight on one sampler are decoded together (KvDecoder.ts).
 */
import { parentPort } from "node:worker_threads"
import { unpack, type Job, type Reply, type Stop, type WeightsVersion } from "./SamplerPool.ts"
import { StoryModel, type Sampler } from "./StoryModel.ts"
import type { ModelConfig } from "./Transformer.ts"

const models = new Map<string, StoryModel>()
const samplers = new Map<number, Promise<Sampler>>()

const modelOf = (config: ModelConfig): StoryModel => {
  const key = JSON.stringify(config)
  let m = models.get(key)
  if (m === undefined) models.set(key, (m = StoryModel.create(config, { threads: 1 })))
  return m
}

const load = (w: WeightsVersion): Promise<Sampler> => modelOf(w.config).sampler(unpack(w))

const run = async (job: Job): Promise<unknown> => {
  for (const v of job.drop) {
    const s = samplers.get(v)
    samplers.delete(v)
    if (s !== undefined) await (await s).release()
  }
  if (job.weights !== undefined && !samplers.has(job.version)) {
    const loading = load(job.weights)
    samplers.set(job.version, loading)
    loading.catch(() => samplers.delete(job.version)) // a failed load is retried by the next job
  }
  const sampler = samplers.get(job.version)
  if (sampler === undefined) throw new Error(`sampling worker: weights version ${job.version} was never sent`)
  const s = await sampler
  if (job.kind === "load") return null
  if (job.kind === "generate") return s.generate(job.prompts, job.params, job.stop)
  return (await s.score(job.items)).map((r) => r.logprobs)
}

parentPort!.on("message", async (job: Job | Stop) => {
  // Handled between onnxruntime calls (this thread runs one message handler at a time): exiting
  // here never cuts a call short, as the pool's worker.terminate() could (SamplerPool.close).
  if (job.kind === "stop") process.exit(0)
  let reply: Reply
  try {
    reply = { id: job.id, ok: true, value: await run(job) }
  } catch (e) {
    reply = { id: job.id, ok: false, message: e instanceof Error ? e.message : String(e) }
  }
  parentPort!.postMessage(reply)
})
