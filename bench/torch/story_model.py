#!/usr/bin/python3
"""PyTorch (CPU) reference of the embedded story model (src/model/Transformer.ts).

Used by the benchmarks as "the obvious alternative" and to cross-check the ONNX graphs' logprobs.
Llama layout: RMSNorm, rotate-half RoPE, causal multi-head attention, SwiGLU MLP, LM head tied to
the token embedding. Linear weights are stored [in, out] (y = x @ W), named as `paramShapes`.

Run with the system python (Debian's torch 1.13): /usr/bin/python3 bench/torch/story_model.py MODE ...
Every mode prints one JSON object on stdout.

  init-weights --config cfg.json --out model.safetensors [--seed S]
  train        --config cfg.json --batch B --seq T --steps N --warmup W --threads 2
  sample       --config cfg.json --batch 40 --prompt-len 16 --new-tokens 256 --threads 2 [--seed S]
  logprobs     --config cfg.json --weights model.safetensors --tokens tokens.json [--dtype float64]
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

MASKED = -1e9  # additive mask value, as Transformer.ts

# ---- config and weights -----------------------------------------------------------------------


def load_config(path):
    with open(path) as f:
        c = json.load(f)
    for k in ("vocabSize", "dModel", "nLayers", "nHeads", "dFF", "maxContext", "ropeTheta", "normEps"):
        if k not in c:
            raise SystemExit(f"config {path}: missing field {k}")
    if c["dModel"] % c["nHeads"] != 0 or (c["dModel"] // c["nHeads"]) % 2 != 0:
        raise SystemExit("config: dModel/nHeads must be an even integer")
    return c


def param_shapes(c):
    d, f = c["dModel"], c["dFF"]
    out = [("embed", (c["vocabSize"], d))]
    for l in range(c["nLayers"]):
        p = f"layers.{l}."
        out += [
            (p + "attn_norm", (d,)), (p + "wq", (d, d)), (p + "wk", (d, d)), (p + "wv", (d, d)),
            (p + "wo", (d, d)), (p + "mlp_norm", (d,)), (p + "w_gate", (d, f)), (p + "w_up", (d, f)),
            (p + "w_down", (f, d)),
        ]
    out.append(("norm", (d,)))
    return out


def decays(name):
    """Norm gains take no weight decay (as Transformer.ts `decays`)."""
    return not name.endswith("_norm") and name != "norm"


def init_weights(c, seed=0, dtype=torch.float32):
    """N(0, 0.02); wo and w_down N(0, 0.02/sqrt(2L)); norm gains 1. (Not bit-equal to the TS init.)"""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in param_shapes(c):
        if not decays(name):
            w[name] = torch.ones(shape, dtype=dtype)
        else:
            std = 0.02 / math.sqrt(2 * c["nLayers"]) if name.endswith((".wo", ".w_down")) else 0.02
            w[name] = (torch.randn(shape, generator=g, dtype=torch.float32) * std).to(dtype)
    return w


# ---- safetensors (tiny reader/writer; the pip package is not available) -----------------------

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        arr = np.frombuffer(data[b:e], dtype=dt)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise SystemExit(f"{path}: tensor {name} has {arr.size} elements, shape {shape}")
        out[name] = torch.from_numpy(arr.astype(dt.newbyteorder("="), copy=True).reshape(shape))
    return out


def write_safetensors(path, tensors, metadata=None):
    """Compact JSON header (__metadata__ first), tensors sorted by name, header padded to 8 bytes."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    codes = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
    for name in names:
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy())
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- the model --------------------------------------------------------------------------------


def rms_norm(x, gain, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * gain


def rope_tables(c, n_pos, dtype):
    """cos/sin [n_pos, D] for positions 0..n_pos-1 (float positions in `dtype`, as the graphs)."""
    D = c["dModel"] // c["nHeads"]
    inv_freq = torch.tensor([c["ropeTheta"] ** (-2 * i / D) for i in range(D // 2)], dtype=dtype)
    angles = torch.arange(n_pos, dtype=dtype)[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], -1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def causal_mask(T, dtype):
    return torch.triu(torch.full((T, T), MASKED, dtype=dtype), diagonal=1)


class StoryModel:
    """The forward passes over a dict of weights (plain tensors, so AdamW sees them directly)."""

    def __init__(self, c, weights):
        self.c, self.w = c, weights
        self.H = c["nHeads"]
        self.D = c["dModel"] // c["nHeads"]
        self.scale = 1 / math.sqrt(self.D)
        self.eps = c["normEps"]

    def _split(self, x):  # [B, T, d] -> [B, H, T, D]
        B, T, _ = x.shape
        return x.view(B, T, self.H, self.D).transpose(1, 2)

    def _merge(self, x):  # [B, H, T, D] -> [B, T, d]
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, self.c["dModel"])

    def _mlp(self, x, l):
        p = f"layers.{l}."
        h2 = rms_norm(x, self.w[p + "mlp_norm"], self.eps)
        return x + (F.silu(h2 @ self.w[p + "w_gate"]) * (h2 @ self.w[p + "w_up"])) @ self.w[p + "w_down"]

    def forward(self, tokens, cos, sin, mask, cache=None):
        """Teacher-forced pass from position 0: tokens [B, T] -> logits [B, T, V].
        cos/sin [T, D], mask [T, T]. With `cache` (list of (K, V) [B, H, S_max, D]) the keys and
        values of positions 0..T-1 are written into it (prefill)."""
        w = self.w
        x = w["embed"][tokens]
        T = tokens.shape[1]
        for l in range(self.c["nLayers"]):
            p = f"layers.{l}."
            h = rms_norm(x, w[p + "attn_norm"], self.eps)
            q = apply_rope(self._split(h @ w[p + "wq"]), cos, sin)
            k = apply_rope(self._split(h @ w[p + "wk"]), cos, sin)
            v = self._split(h @ w[p + "wv"])
            if cache is not None:
                cache[l][0][:, :, :T].copy_(k)
                cache[l][1][:, :, :T].copy_(v)
            scores = (q @ k.transpose(-2, -1)) * self.scale + mask
            x = x + self._merge(torch.softmax(scores, -1) @ v) @ w[p + "wo"]
            x = self._mlp(x, l)
        return rms_norm(x, w["norm"], self.eps) @ w["embed"].t()

    def decode(self, tokens, pos, cos, sin, cache):
        """One token per row at position `pos` (same for all rows): tokens [B, 1] -> logits [B, V].
        Writes this position's k/v into the preallocated cache and attends over slots 0..pos."""
        w = self.w
        x = w["embed"][tokens]
        cos_p, sin_p = cos[pos], sin[pos]
        n = pos + 1
        for l in range(self.c["nLayers"]):
            p = f"layers.{l}."
            h = rms_norm(x, w[p + "attn_norm"], self.eps)
            q = apply_rope(self._split(h @ w[p + "wq"]), cos_p, sin_p)
            k = apply_rope(self._split(h @ w[p + "wk"]), cos_p, sin_p)
            v = self._split(h @ w[p + "wv"])
            K, V = cache[l]
            K[:, :, pos:n].copy_(k)
            V[:, :, pos:n].copy_(v)
            scores = (q @ K[:, :, :n].transpose(-2, -1)) * self.scale  # [B, H, 1, n]; all slots are real
            x = x + self._merge(torch.softmax(scores, -1) @ V[:, :, :n]) @ w[p + "wo"]
            x = self._mlp(x, l)
        return (rms_norm(x, w["norm"], self.eps) @ w["embed"].t())[:, 0]


# ---- modes ------------------------------------------------------------------------------------


def runtime_info():
    """What the timings depend on besides the model: the BLAS actually loaded and the thread env."""
    blas = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower() and ".so" in l})
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS") if k in os.environ}
    return {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "blas": blas, "env": env}


def set_threads(n):
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def cmd_init_weights(a):
    c = load_config(a.config)
    write_safetensors(a.out, init_weights(c, a.seed))
    return {"out": a.out, "params": sum(int(np.prod(s)) for _, s in param_shapes(c)), "seed": a.seed}


def cmd_train(a):
    set_threads(a.threads)
    c = load_config(a.config)
    B, T = a.batch, a.seq
    if T > c["maxContext"]:
        raise SystemExit(f"--seq {T} exceeds maxContext {c['maxContext']}")
    torch.manual_seed(a.seed)
    weights = {k: v.requires_grad_() for k, v in init_weights(c, a.seed).items()}
    model = StoryModel(c, weights)
    groups = [
        {"params": [v for k, v in weights.items() if decays(k)], "weight_decay": 0.1},
        {"params": [v for k, v in weights.items() if not decays(k)], "weight_decay": 0.0},
    ]
    # torch 1.13 default: foreach=None -> single-tensor loop on CPU (no fused CPU AdamW in 1.13).
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=a.eps)
    cos, sin = rope_tables(c, T, torch.float32)
    mask = causal_mask(T, torch.float32)
    V = c["vocabSize"]
    batches = [torch.randint(0, V, (B, T + 1)) for _ in range(min(a.steps + a.warmup, 8))]

    def step(i):
        toks = batches[i % len(batches)]
        logits = model.forward(toks[:, :T], cos, sin, mask)
        loss = F.cross_entropy(logits.reshape(-1, V), toks[:, 1:].reshape(-1), reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(a.warmup):
        step(i)
    t0 = time.perf_counter()
    loss = None
    for i in range(a.steps):
        loss = step(a.warmup + i)
    dt = time.perf_counter() - t0
    return {
        "mode": "train", "batch": B, "seq": T, "steps": a.steps, "warmup": a.warmup,
        "tokens_per_s": B * T * a.steps / dt, "ms_per_step": 1000 * dt / max(a.steps, 1),
        "last_loss_per_token": loss / (B * T) if loss is not None else None,
        **runtime_info(),
    }


@torch.no_grad()
def cmd_sample(a):
    set_threads(a.threads)
    c = load_config(a.config)
    B, P, N = a.batch, a.prompt_len, a.new_tokens
    S = P + N
    if S > c["maxContext"]:
        raise SystemExit(f"prompt-len + new-tokens = {S} exceeds maxContext {c['maxContext']}")
    weights = read_safetensors(a.weights) if a.weights else init_weights(c, a.seed)
    weights = {k: v.float().contiguous() for k, v in weights.items()}
    model = StoryModel(c, weights)
    H, D = model.H, model.D
    torch.manual_seed(a.seed)
    prompts = torch.randint(0, c["vocabSize"], (B, P))
    cos, sin = rope_tables(c, S, torch.float32)
    mask = causal_mask(P, torch.float32)

    def run():
        cache = [(torch.zeros(B, H, S, D), torch.zeros(B, H, S, D)) for _ in range(c["nLayers"])]
        torch.manual_seed(a.seed)
        out = torch.empty(B, N, dtype=torch.long)
        t0 = time.perf_counter()
        logits = model.forward(prompts, cos[:P], sin[:P], mask, cache)[:, -1]
        tok = torch.multinomial(torch.softmax(logits, -1), 1)  # [B, 1]
        out[:, 0:1] = tok
        t1 = time.perf_counter()
        # new_tokens sampled per row: 1 from the prefill logits, N-1 from decode steps. The last
        # sampled token is not fed back (its logits would be unused).
        for i in range(1, N):
            logits = model.decode(tok, P + i - 1, cos, sin, cache)
            tok = torch.multinomial(torch.softmax(logits, -1), 1)
            out[:, i:i + 1] = tok
        t2 = time.perf_counter()
        return out, t1 - t0, t2 - t1

    for _ in range(a.warmup):
        run()
    out, prefill_s, decode_s = run()
    total = prefill_s + decode_s
    return {
        "mode": "sample", "batch": B, "prompt_len": P, "new_tokens": N, "decode_steps": N - 1,
        "tokens_per_s": B * N / total, "ms_per_step": 1000 * decode_s / max(N - 1, 1),
        "prefill_ms": 1000 * prefill_s, "total_ms": 1000 * total,
        "first_row_head": out[0, :8].tolist(),
        **runtime_info(),
    }


@torch.no_grad()
def cmd_logprobs(a):
    set_threads(a.threads)
    c = load_config(a.config)
    dtype = {"float64": torch.float64, "float32": torch.float32}[a.dtype]
    raw = read_safetensors(a.weights)
    missing = [n for n, _ in param_shapes(c) if n not in raw]
    if missing:
        raise SystemExit(f"{a.weights}: missing weights {missing[:5]}")
    for n, s in param_shapes(c):
        if tuple(raw[n].shape) != tuple(s):
            raise SystemExit(f"{a.weights}: {n} has shape {tuple(raw[n].shape)}, expected {s}")
    model = StoryModel(c, {n: raw[n].to(dtype) for n, _ in param_shapes(c)})
    with open(a.tokens) as f:
        seqs = json.load(f)
    out = []
    for toks in seqs:
        T = len(toks)
        if T > c["maxContext"]:
            raise SystemExit(f"sequence of {T} tokens exceeds maxContext {c['maxContext']}")
        if T < 2:
            out.append([])
            continue
        cos, sin = rope_tables(c, T, dtype)
        t = torch.tensor([toks], dtype=torch.long)
        logp = torch.log_softmax(model.forward(t, cos, sin, causal_mask(T, dtype)), -1)[0]  # [T, V]
        out.append(logp[:-1].gather(-1, t[0, 1:, None])[:, 0].tolist())
    return {"logprobs": out, "dtype": a.dtype, "torch_version": torch.__version__}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)

    p = sub.add_parser("init-weights", help="write N(0,0.02)-initialised weights as safetensors")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_init_weights)

    p = sub.add_parser("train", help="training throughput: CE fwd+bwd + AdamW step")
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=float, default=1e-12, help="AdamW eps (project/Tinker default 1e-12)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("sample", help="KV-cache sampling throughput (fixed length)")
    p.add_argument("--config", required=True)
    p.add_argument("--weights", default=None, help="safetensors (default: random init)")
    p.add_argument("--batch", type=int, default=40)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--warmup", type=int, default=0, help="untimed full runs before the timed one")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("logprobs", help="teacher-forced logprobs (float64 reference)")
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--tokens", required=True, help="JSON list of token-id lists")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(fn=cmd_logprobs)

    a = ap.parse_args(argv)
    json.dump(a.fn(a), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
