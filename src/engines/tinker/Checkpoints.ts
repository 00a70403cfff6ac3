/**
 * A training run's checkpoint list, read to confirm that a save the server answered with 409
 * ("already exists") really is there: a save retried after a dropped connection is not
 * de-duplicated by SkyRL (its `save_weights` / `save_weights_for_sampler` futures carry no
 * seq_id, so the retry hits the checkpoint row the first attempt made and gets 409).
 *
 * Route and shape, as the SDK calls it: Wire.CheckpointsListResponse
 * (thinking-machines-lab/tinker@d595dc2ba62a1494aa0f452fe1d0dbb7b321b870,
 * `src/tinker/resources/weights.py` `list` → GET `/api/v1/training_runs/{model_id}/checkpoints`;
 * `src/tinker/types/checkpoints_list_response.py`, `src/tinker/types/checkpoint.py`).
 *
 * SkyRL (NovaSky-AI/SkyRL@a9564572eb8e91076be43c1bd5e4615e3de17265 `skyrl/tinker/api.py`
 * `list_checkpoints`) lists only COMPLETED checkpoints, with `tinker_path`
 * `tinker://{model_id}/weights/{id}` or `tinker://{model_id}/sampler_weights/{id}`; a pending one
 * appears once the engine has written it. The tinker-cookbook's own advice for a 409 on save
 * (thinking-machines-lab/tinker-cookbook@9dfcc3a2cf44432d621a01005073dc6d76a1e87a
 * `skills/debug/SKILL.md`): "The original save succeeded. Check if the checkpoint is already there".
 *
 * @example
 * const reply = { checkpoints: [{ checkpoint_id: "step_1", checkpoint_type: "training", time: "…", tinker_path: "tinker://m/weights/step_1" }] }
 * findCheckpoint(reply, "step_1", "training") // "tinker://m/weights/step_1"
 * findCheckpoint(reply, "step_1", "sampler")  // undefined
 */

import type * as Wire from "./Wire.ts"

export type CheckpointType = Wire.CheckpointType

/** The route listing `modelId`'s checkpoints, under `/api/v1/` (the id's `:` kept, as the SDK sends it). */
export const checkpointsPath = (modelId: string): string =>
  `training_runs/${encodeURIComponent(modelId).replace(/%3A/gi, ":")}/checkpoints`

/** The `tinker_path` of checkpoint `name` of `type` in a list reply, if it is listed. */
export const findCheckpoint = (reply: Wire.CheckpointsListResponse, name: string, type: CheckpointType): string | undefined =>
  reply.checkpoints.find((c) => c.checkpoint_id === name && c.checkpoint_type === type)?.tinker_path
