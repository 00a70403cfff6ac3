/**
 * The Tinker training API's JSON bodies (protocols.md §1) as Effect Schemas, shared by the client
 * (TinkerPolicy.ts) and the server (serve/TinkerRoutes.ts) so the two cannot drift. Field names
 * are the wire names. Each shape cites the SDK model it mirrors, in
 * `thinking-machines-lab/tinker` at v0.25.0 (`d595dc2ba62a1494aa0f452fe1d0dbb7b321b870`; the same
 * in v0.24.1 `6b025363621b57be188c843ec32171ec4094d407` unless noted).
 *
 * Optional fields follow the SDK: it drops `None` (`exclude_none`), other clients may send
 * `null`, so an optional field accepts both an absent key and `null`. Unknown keys are ignored,
 * as the SDK's response models do. The protobuf forms of forward_backward and of its and
 * sample's results are in Proto.ts.
 *
 * @example
 * ```ts
 * const decode = Schema.decodeUnknownEffect(Wire.SampleRequest)
 * const request = yield* decode(JSON.parse(body))
 * const reply: Wire.SampleResponse = { type: "sample", sequences: [{ stop_reason: "stop", tokens: [5, 9], logprobs: [-0.1, -2] }] }
 * ```
 */
import { Option, Schema } from "effect"

/** An optional field: absent or `null` on the wire. */
const optional = <S extends Schema.Constraint>(schema: S) => Schema.optionalKey(Schema.NullOr(schema))

// ---------------------------------------------------------------------------------------------
// Tensors and model inputs.

/** `types/tensor_dtype.py@d595dc2` */
export const TensorDtype = Schema.Literals(["int64", "float32"])
export type TensorDtype = typeof TensorDtype.Type

/** Flattened row-major `data`; CSR fields only for sparse tensors (then `shape` is required). `types/_pydantic_types/tensor_data.py@d595dc2` */
export const TensorData = Schema.Struct({
  data: Schema.Array(Schema.Number),
  dtype: TensorDtype,
  shape: optional(Schema.Array(Schema.Int)),
  sparse_crow_indices: optional(Schema.Array(Schema.Int)),
  sparse_col_indices: optional(Schema.Array(Schema.Int))
})
export type TensorData = typeof TensorData.Type

/** `types/encoded_text_chunk.py@d595dc2`; `type` defaults to "encoded_text". */
export const EncodedTextChunk = Schema.Struct({
  type: Schema.optionalKey(Schema.Literal("encoded_text")),
  tokens: Schema.Array(Schema.Int)
})
/** `types/image_chunk.py@d595dc2` (`data` base64). */
export const ImageChunk = Schema.Struct({
  type: Schema.Literal("image"),
  data: Schema.String,
  format: Schema.Literals(["png", "jpeg"]),
  expected_tokens: optional(Schema.Int)
})
/** `types/image_asset_pointer_chunk.py@d595dc2` */
export const ImageAssetPointerChunk = Schema.Struct({
  type: Schema.Literal("image_asset_pointer"),
  location: Schema.String,
  format: Schema.Literals(["png", "jpeg"]),
  expected_tokens: optional(Schema.Int)
})
/** `types/dmel_chunk.py@d595dc2` (`dmel` base64; hosted only). */
export const DmelChunk = Schema.Struct({ type: Schema.Literal("dmel"), dmel: Schema.String })

/** `types/model_input_chunk.py@d595dc2`: discriminated by `type`. */
export const ModelInputChunk = Schema.Union([EncodedTextChunk, ImageChunk, ImageAssetPointerChunk, DmelChunk])
export type ModelInputChunk = typeof ModelInputChunk.Type

/** `types/_pydantic_types/model_input.py@d595dc2` */
export const ModelInput = Schema.Struct({ chunks: Schema.Array(ModelInputChunk) })
export type ModelInput = typeof ModelInput.Type

/** `types/_pydantic_types/datum.py@d595dc2`: `loss_fn_inputs` e.g. target_tokens, weights, logprobs, advantages. */
export const Datum = Schema.Struct({
  model_input: ModelInput,
  loss_fn_inputs: Schema.Record(Schema.String, TensorData)
})
export type Datum = typeof Datum.Type

// ---------------------------------------------------------------------------------------------
// Training.

/** `types/loss_fn_type.py@d595dc2` */
export const LossFnType = Schema.Literals(["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"])
export type LossFnType = typeof LossFnType.Type

/** `types/_pydantic_types/forward_backward_input.py@d595dc2` */
export const ForwardBackwardInput = Schema.Struct({
  data: Schema.Array(Datum),
  loss_fn: LossFnType,
  loss_fn_config: optional(Schema.Record(Schema.String, Schema.Number))
})
export type ForwardBackwardInput = typeof ForwardBackwardInput.Type

/** POST /forward_backward, JSON form (SDK ≤ 0.24 by default). `types/forward_backward_request.py@d595dc2` */
export const ForwardBackwardRequest = Schema.Struct({
  forward_backward_input: ForwardBackwardInput,
  model_id: Schema.String,
  seq_id: optional(Schema.Int)
})
export type ForwardBackwardRequest = typeof ForwardBackwardRequest.Type

/** POST /forward (JSON; SDK 0.24.1 `resources/training.py@6b02536`, dropped in 0.25). `types/forward_request.py@6b02536` */
export const ForwardRequest = Schema.Struct({
  forward_input: ForwardBackwardInput,
  model_id: Schema.String,
  seq_id: optional(Schema.Int)
})
export type ForwardRequest = typeof ForwardRequest.Type

/** Per datum: output name (e.g. `logprobs`) to tensor. `types/loss_fn_output.py@d595dc2` */
export const LossFnOutput = Schema.Record(Schema.String, TensorData)

/** The result of forward_backward and forward. `types/forward_backward_output.py@d595dc2` */
export const ForwardBackwardOutput = Schema.Struct({
  loss_fn_output_type: Schema.String,
  loss_fn_outputs: Schema.Array(LossFnOutput),
  metrics: Schema.Record(Schema.String, Schema.Number)
})
export type ForwardBackwardOutput = typeof ForwardBackwardOutput.Type

/** The SDK's AdamParams; every field has a default there (and the SDK sends them all). `types/optim_step_request.py@d595dc2` */
export const AdamParams = Schema.Struct({
  learning_rate: Schema.optionalKey(Schema.Number),
  beta1: Schema.optionalKey(Schema.Number),
  beta2: Schema.optionalKey(Schema.Number),
  eps: Schema.optionalKey(Schema.Number),
  weight_decay: Schema.optionalKey(Schema.Number),
  grad_clip_norm: Schema.optionalKey(Schema.Number)
})
export type AdamParams = typeof AdamParams.Type

/** The SDK's AdamParams defaults (`types/optim_step_request.py@d595dc2`). */
export const ADAM_DEFAULTS = { learning_rate: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 0 } as const

/** `types/optim_step_request.py@d595dc2` */
export const OptimStepRequest = Schema.Struct({
  adam_params: AdamParams,
  model_id: Schema.String,
  seq_id: optional(Schema.Int),
  type: Schema.optionalKey(Schema.Literal("optim_step"))
})
export type OptimStepRequest = typeof OptimStepRequest.Type

/** `types/optim_step_response.py@d595dc2` (`type` is what SkyRL adds). */
export const OptimStepResponse = Schema.Struct({
  metrics: optional(Schema.Record(Schema.String, Schema.Number)),
  type: optional(Schema.Literal("optim_step"))
})
export type OptimStepResponse = typeof OptimStepResponse.Type

/**
 * The gradient norm's name in optim_step's `metrics`, with or without a reduction suffix
 * (`grad_norm:mean`): `grad_norm` as polaris serve reports it (hosted Tinker's name is not
 * confirmed), or SkyRL JAX's `skyrl.ai/grad_norm` (beside `skyrl.ai/learning_rate`;
 * NovaSky-AI/SkyRL@a9564572 `skyrl/backends/jax.py` `OptimStepMetrics.to_output_metrics`).
 */
export const GRAD_NORM = "grad_norm"
export const SKYRL_GRAD_NORM = "skyrl.ai/grad_norm"

// ---------------------------------------------------------------------------------------------
// Checkpoints.

/** `types/save_weights_request.py@d595dc2` */
export const SaveWeightsRequest = Schema.Struct({
  model_id: Schema.String,
  path: optional(Schema.String),
  seq_id: optional(Schema.Int),
  ttl_seconds: optional(Schema.Int),
  overwrite: Schema.optionalKey(Schema.Boolean),
  type: Schema.optionalKey(Schema.Literal("save_weights"))
})
export type SaveWeightsRequest = typeof SaveWeightsRequest.Type

/** `types/save_weights_response.py@d595dc2` */
export const SaveWeightsResponse = Schema.Struct({
  path: Schema.String,
  type: optional(Schema.Literal("save_weights"))
})
export type SaveWeightsResponse = typeof SaveWeightsResponse.Type

/** `types/save_weights_for_sampler_request.py@d595dc2` */
export const SaveWeightsForSamplerRequest = Schema.Struct({
  model_id: Schema.String,
  path: optional(Schema.String),
  sampling_session_seq_id: optional(Schema.Int),
  seq_id: optional(Schema.Int),
  ttl_seconds: optional(Schema.Int),
  type: Schema.optionalKey(Schema.Literal("save_weights_for_sampler"))
})
export type SaveWeightsForSamplerRequest = typeof SaveWeightsForSamplerRequest.Type

/** SaveWeightsForSamplerResponseInternal: no `path` for an ephemeral sampler. `types/_pydantic_types/save_weights_for_sampler_response.py@d595dc2` */
export const SaveWeightsForSamplerResponse = Schema.Struct({
  path: optional(Schema.String),
  sampling_session_id: optional(Schema.String),
  type: optional(Schema.Literal("save_weights_for_sampler"))
})
export type SaveWeightsForSamplerResponse = typeof SaveWeightsForSamplerResponse.Type

/**
 * `model_id` + `seq_id` addressing (a load right after create_model), or create-via-load
 * `session_id` + `model_seq_id` (only when the server advertises `create_model_via_load_weights`).
 * `types/load_weights_request.py@d595dc2`
 */
export const LoadWeightsRequest = Schema.Struct({
  model_id: optional(Schema.String),
  seq_id: optional(Schema.Int),
  session_id: optional(Schema.String),
  model_seq_id: optional(Schema.Int),
  base_model: optional(Schema.String),
  user_metadata: optional(Schema.Record(Schema.String, Schema.Unknown)),
  path: Schema.String,
  optimizer: Schema.Boolean,
  weights_access_token: optional(Schema.String),
  type: Schema.optionalKey(Schema.Literal("load_weights"))
})
export type LoadWeightsRequest = typeof LoadWeightsRequest.Type

/** `types/_pydantic_types/load_weights_response.py@d595dc2` */
export const LoadWeightsResponse = Schema.Struct({
  path: optional(Schema.String),
  model_id: optional(Schema.String),
  type: optional(Schema.Literal("load_weights"))
})
export type LoadWeightsResponse = typeof LoadWeightsResponse.Type

/** POST /weights_info (`lib/public_interfaces/rest_client.py@d595dc2`, used by create_training_client_from_state). */
export const WeightsInfoRequest = Schema.Struct({ tinker_path: Schema.String })
export type WeightsInfoRequest = typeof WeightsInfoRequest.Type

/** `types/weights_info_response.py@d595dc2` */
export const WeightsInfoResponse = Schema.Struct({
  base_model: Schema.String,
  is_lora: Schema.Boolean,
  lora_rank: optional(Schema.Int),
  train_unembed: optional(Schema.Boolean),
  train_mlp: optional(Schema.Boolean),
  train_attn: optional(Schema.Boolean)
})
export type WeightsInfoResponse = typeof WeightsInfoResponse.Type

/** `types/checkpoint.py@d595dc2` (`time`, `expires_at`: ISO datetimes). SkyRL sends the first four only. */
export const Checkpoint = Schema.Struct({
  checkpoint_id: Schema.String,
  checkpoint_type: Schema.Literals(["training", "sampler"]),
  time: Schema.String,
  tinker_path: Schema.String,
  size_bytes: optional(Schema.Int),
  public: Schema.optionalKey(Schema.Boolean),
  expires_at: optional(Schema.String)
})
export type Checkpoint = typeof Checkpoint.Type
export type CheckpointType = Checkpoint["checkpoint_type"]

/**
 * GET /training_runs/{model_id}/checkpoints (`resources/weights.py@d595dc2` `list`).
 * `types/checkpoints_list_response.py@d595dc2`, `types/cursor.py@d595dc2`. SkyRL lists only
 * completed checkpoints (NovaSky-AI/SkyRL@a9564572 `skyrl/tinker/api.py` `list_checkpoints`);
 * polaris serve has no such route.
 */
export const CheckpointsListResponse = Schema.Struct({
  checkpoints: Schema.Array(Checkpoint),
  cursor: optional(Schema.Struct({ offset: Schema.Int, limit: Schema.Int, total_count: Schema.Int }))
})
export type CheckpointsListResponse = typeof CheckpointsListResponse.Type

// ---------------------------------------------------------------------------------------------
// Sessions and models.

/** `types/client_config_request.py@d595dc2` */
export const ClientConfigRequest = Schema.Struct({ sdk_version: Schema.String })

/**
 * The flags a server resolves for a client (the SDK ignores unknown ones and defaults missing
 * ones). `types/client_config_response.py@d595dc2`; `proto_write_fwdbwd` and `fwd_via_fwdbwd`
 * exist in 0.24.1 only (`@6b02536`): 0.25 always sends forward_backward as protobuf.
 */
export const ClientConfigResponse = Schema.Struct({
  pjwt_auth_enabled: Schema.optionalKey(Schema.Boolean),
  proto_write_fwdbwd: Schema.optionalKey(Schema.Boolean),
  proto_compress_fwdbwd: Schema.optionalKey(Schema.Boolean),
  fwd_via_fwdbwd: Schema.optionalKey(Schema.Boolean),
  create_model_via_load_weights: Schema.optionalKey(Schema.Boolean),
  fwdbwd_max_chunk_len: Schema.optionalKey(Schema.Int),
  fwdbwd_max_chunk_bytes_count: Schema.optionalKey(Schema.Int)
})
export type ClientConfigResponse = typeof ClientConfigResponse.Type

/** `types/client_dynamic_config_response.py@d595dc2` */
export const ClientDynamicConfigResponse = Schema.Struct({ refresh_interval_sec: Schema.optionalKey(Schema.Int) })

/** `types/create_session_request.py@d595dc2` */
export const CreateSessionRequest = Schema.Struct({
  tags: Schema.Array(Schema.String),
  user_metadata: optional(Schema.Record(Schema.String, Schema.Unknown)),
  sdk_version: Schema.String,
  project_id: optional(Schema.String),
  type: Schema.optionalKey(Schema.Literal("create_session"))
})
export type CreateSessionRequest = typeof CreateSessionRequest.Type

/** `types/create_session_response.py@d595dc2` */
export const CreateSessionResponse = Schema.Struct({
  type: Schema.optionalKey(Schema.Literal("create_session")),
  session_id: Schema.String,
  info_message: optional(Schema.String),
  warning_message: optional(Schema.String),
  error_message: optional(Schema.String)
})
export type CreateSessionResponse = typeof CreateSessionResponse.Type

/** `types/session_heartbeat_request.py@d595dc2` */
export const SessionHeartbeatRequest = Schema.Struct({
  session_id: Schema.String,
  type: Schema.optionalKey(Schema.Literal("session_heartbeat"))
})

/** `types/lora_config.py@d595dc2` */
export const LoraConfig = Schema.Struct({
  rank: Schema.Int,
  seed: optional(Schema.Int),
  train_unembed: Schema.optionalKey(Schema.Boolean),
  train_mlp: Schema.optionalKey(Schema.Boolean),
  train_attn: Schema.optionalKey(Schema.Boolean)
})
export type LoraConfig = typeof LoraConfig.Type

/** `types/create_model_request.py@d595dc2` */
export const CreateModelRequest = Schema.Struct({
  session_id: Schema.String,
  model_seq_id: Schema.Int,
  base_model: Schema.String,
  user_metadata: optional(Schema.Record(Schema.String, Schema.Unknown)),
  lora_config: optional(LoraConfig),
  type: Schema.optionalKey(Schema.Literal("create_model"))
})
export type CreateModelRequest = typeof CreateModelRequest.Type

/** `types/create_model_response.py@d595dc2` */
export const CreateModelResponse = Schema.Struct({
  model_id: Schema.String,
  type: Schema.optionalKey(Schema.Literal("create_model"))
})
export type CreateModelResponse = typeof CreateModelResponse.Type

/** GetInfoRequest and UnloadModelRequest. `types/get_info_request.py@d595dc2`, `types/unload_model_request.py@d595dc2` */
export const ModelRequest = Schema.Struct({
  model_id: Schema.String,
  type: Schema.optionalKey(Schema.Literals(["get_info", "unload_model"]))
})

/** `types/_pydantic_types/get_info_response.py@d595dc2` */
export const GetInfoResponse = Schema.Struct({
  type: optional(Schema.Literal("get_info")),
  model_data: Schema.Struct({
    arch: optional(Schema.String),
    model_name: optional(Schema.String),
    tokenizer_id: optional(Schema.String)
  }),
  model_id: Schema.String,
  is_lora: optional(Schema.Boolean),
  lora_rank: optional(Schema.Int),
  model_name: optional(Schema.String)
})
export type GetInfoResponse = typeof GetInfoResponse.Type

/** `types/unload_model_response.py@d595dc2` */
export const UnloadModelResponse = Schema.Struct({
  model_id: Schema.String,
  type: optional(Schema.Literal("unload_model"))
})

/** `types/get_server_capabilities_response.py@d595dc2` */
export const GetServerCapabilitiesResponse = Schema.Struct({
  supported_models: Schema.Array(Schema.Struct({
    model_name: optional(Schema.String),
    max_context_length: optional(Schema.Int)
  }))
})
export type GetServerCapabilitiesResponse = typeof GetServerCapabilitiesResponse.Type

/** `types/health_response.py@d595dc2` */
export const HealthResponse = Schema.Struct({ status: Schema.Literal("ok") })

// ---------------------------------------------------------------------------------------------
// Sampling.

/** `types/create_sampling_session_request.py@d595dc2` */
export const CreateSamplingSessionRequest = Schema.Struct({
  session_id: Schema.String,
  sampling_session_seq_id: Schema.Int,
  base_model: optional(Schema.String),
  model_path: optional(Schema.String),
  type: Schema.optionalKey(Schema.Literal("create_sampling_session"))
})
export type CreateSamplingSessionRequest = typeof CreateSamplingSessionRequest.Type

/** `types/create_sampling_session_response.py@d595dc2` */
export const CreateSamplingSessionResponse = Schema.Struct({
  type: Schema.optionalKey(Schema.Literal("create_sampling_session")),
  sampling_session_id: Schema.String
})

/** GET /samplers/{id}. `types/get_sampler_response.py@d595dc2` */
export const GetSamplerResponse = Schema.Struct({
  sampler_id: Schema.String,
  base_model: Schema.String,
  model_path: optional(Schema.String)
})

/** `stop`: a string, strings, or token ids. `types/_pydantic_types/sampling_params.py@d595dc2` */
export const SamplingParams = Schema.Struct({
  max_tokens: optional(Schema.Int),
  seed: optional(Schema.Int),
  stop: optional(Schema.Union([Schema.String, Schema.Array(Schema.String), Schema.Array(Schema.Int)])),
  temperature: Schema.optionalKey(Schema.Number),
  top_k: Schema.optionalKey(Schema.Int),
  top_p: Schema.optionalKey(Schema.Number)
})
export type SamplingParams = typeof SamplingParams.Type

/**
 * POST /asample. Addressing: `sampling_session_id` + `seq_id`, or `model_path`, or `base_model`.
 * `types/sample_request.py@d595dc2`
 */
export const SampleRequest = Schema.Struct({
  num_samples: Schema.optionalKey(Schema.Int),
  prompt: ModelInput,
  sampling_params: SamplingParams,
  base_model: optional(Schema.String),
  model_path: optional(Schema.String),
  sampling_session_id: optional(Schema.String),
  seq_id: optional(Schema.Int),
  prompt_logprobs: optional(Schema.Boolean),
  topk_prompt_logprobs: Schema.optionalKey(Schema.Int),
  type: Schema.optionalKey(Schema.Literal("sample"))
})
export type SampleRequest = typeof SampleRequest.Type

/** `types/_pydantic_types/stop_reason.py@d595dc2` */
export const StopReason = Schema.Literals(["length", "stop"])

/** `types/sampled_sequence.py@d595dc2` (JSON form: lists). */
export const SampledSequence = Schema.Struct({
  stop_reason: StopReason,
  tokens: Schema.Array(Schema.Int),
  logprobs: optional(Schema.Array(Schema.Number))
})
export type SampledSequence = typeof SampledSequence.Type

/**
 * `prompt_logprobs[0]` is null (nothing to condition on); `topk_prompt_logprobs` per position a
 * list of `[token_id, logprob]`. `types/sample_response.py@d595dc2` (JSON form: lists).
 *
 * SkyRL tx's JAX backend sends n − 1 prompt logprobs for an n-token prompt, with no leading null
 * (NovaSky-AI/SkyRL@a9564572 `skyrl/tx/utils/generator.py`: `prompt_logprobs_host[i, :
 * prompt_lengths_host[i] - 1]`); this Schema admits both, and the length tells them apart
 * (PromptLogprobs.ts).
 */
export const SampleResponse = Schema.Struct({
  type: optional(Schema.Literal("sample")),
  sequences: Schema.Array(SampledSequence),
  prompt_logprobs: optional(Schema.Array(Schema.NullOr(Schema.Number))),
  topk_prompt_logprobs: optional(Schema.Array(Schema.NullOr(Schema.Array(Schema.Tuple([Schema.Int, Schema.Number])))))
})
export type SampleResponse = typeof SampleResponse.Type

// ---------------------------------------------------------------------------------------------
// Futures.

/** What a work request answers at once. `types/shared/untyped_api_future.py@d595dc2` (SkyRL adds `future_id`, `status`). */
export const UntypedAPIFuture = Schema.Struct({
  request_id: Schema.String,
  model_id: optional(Schema.String)
})
export type UntypedAPIFuture = typeof UntypedAPIFuture.Type

/** POST /retrieve_future. `types/future_retrieve_request.py@d595dc2` */
export const FutureRetrieveRequest = Schema.Struct({
  request_id: Schema.String,
  allow_metadata_only: Schema.optionalKey(Schema.Boolean)
})
export type FutureRetrieveRequest = typeof FutureRetrieveRequest.Type

/** Still queued: poll again. `types/try_again_response.py@d595dc2` */
export const TryAgainResponse = Schema.Struct({
  type: Schema.Literal("try_again"),
  request_id: Schema.String,
  queue_state: Schema.Literals(["active", "paused_capacity", "paused_rate_limit"]),
  queue_state_reason: optional(Schema.String)
})

/** `types/request_error_category.py@d595dc2` (StrEnum(auto()): lowercase names). */
export const RequestErrorCategory = Schema.Literals(["unknown", "server", "user"])
export type RequestErrorCategory = typeof RequestErrorCategory.Type

/** A failed request's terminal answer (HTTP 200). `types/request_failed_response.py@d595dc2` */
export const RequestFailedResponse = Schema.Struct({
  error: Schema.String,
  category: RequestErrorCategory
})
export type RequestFailedResponse = typeof RequestFailedResponse.Type

/**
 * How a client sorts a JSON 200 from retrieve_future, as the SDK does
 * (`lib/api_future_impl.py@d595dc2` `_fetch_via_rest`): by one key each, in this order.
 * `type: "try_again"` (TryAgainResponse) and `status: "complete_metadata"` (a metadata-only
 * answer with `response_payload_size`, sent only when `allow_metadata_only`) mean poll again; a
 * body with `error` failed (a `category` outside RequestErrorCategory reads as "unknown");
 * anything else is the result, in the request's own response shape.
 */
export const FuturePending = Schema.Union([
  Schema.Struct({ type: Schema.Literal("try_again") }),
  Schema.Struct({ status: Schema.Literal("complete_metadata") })
])
/** See FuturePending: RequestFailedResponse as the SDK tells it apart. */
export const FutureFailed = Schema.Struct({ error: Schema.String, category: Schema.optionalKey(Schema.Unknown) })

/** SkyRL's and FastAPI's error body (408, 4xx, 5xx). */
export const ErrorDetail = Schema.Struct({ detail: Schema.String })
export type ErrorDetail = typeof ErrorDetail.Type

const decodeErrorDetail = Schema.decodeUnknownOption(Schema.fromJsonString(ErrorDetail))

/** The `detail` of an ErrorDetail body, or undefined when `text` is not one (how clients read error replies). */
export const errorMessage = (text: string): string | undefined =>
  Option.getOrUndefined(Option.map(decodeErrorDetail(text), (e) => e.detail))

/** The protobuf media type (`resources/training.py@d595dc2`, `lib/api_future_impl.py@d595dc2`). */
export const PROTOBUF = "application/x-protobuf"
