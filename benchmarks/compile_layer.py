"""One decoder layer, forward + backward, eager against ``torch.compile``, side by side in one run.

What fusing a layer's element-wise operators (RMSNorm, rotary, SiLU and the product, residual adds) would give on
this machine, before anyone makes a compiler part of training: a Qwen2 decoder layer of the throughput benchmark's
model (hidden 512, 8 query heads on 2 key/value heads, MLP 1408, sdpa causal attention), one sequence of ``--tokens``
tokens (680: about one MT step of 8 pairs packed), and the layer's MLP block alone (RMSNorm, MLP, residual). Each
configuration runs the same weights and inputs; the compiled copies are built with ``dynamic=True`` (the lengths of
packed rows change every step) and warmed up on two other lengths first, their compile time reported. The times are
the fastest of ``--repeats`` interleaved runs. Usage: ``python benchmarks/compile_layer.py [--tokens 680]``.
"""

from __future__ import annotations

import argparse
import copy
import time

from common import emit, machine


def blocks():
    """The layer and its MLP block, each as a callable of ``x`` (``(1, T, 512)``) returning the output."""
    import torch
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2MLP, Qwen2RMSNorm, Qwen2RotaryEmbedding

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=2,
                         num_hidden_layers=1)
    config._attn_implementation = "sdpa"
    rope = Qwen2RotaryEmbedding(config)

    class MLPBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.mlp = Qwen2RMSNorm(512), Qwen2MLP(config)

        def forward(self, x):
            return x + self.mlp(self.norm(x))

    def layer_call(module):
        def run(x):
            positions = torch.arange(x.shape[1])[None]
            out = module(x, attention_mask=None, position_ids=positions, position_embeddings=rope(x, positions))
            return out[0] if isinstance(out, tuple) else out
        return run

    return {"decoder layer": (Qwen2DecoderLayer(config, 0), layer_call), "MLP block": (MLPBlock(), lambda m: m)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=680)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import torch

    emit({"benchmark": "compile-layer", "machine": machine(), "tokens": args.tokens, "repeats": args.repeats})
    for name, (module, call) in blocks().items():
        runs = {"eager": call(module)}
        start = time.perf_counter()
        runs["torch.compile"] = call(torch.compile(copy.deepcopy(module), dynamic=True))

        def step(fn, tokens, seed):
            x = torch.randn(1, tokens, 512, generator=torch.Generator().manual_seed(seed), requires_grad=True)
            out = fn(x)
            out.sum().backward()
            return out.detach()

        for tokens in (args.tokens - 10, args.tokens + 20):
            step(runs["torch.compile"], tokens, 0)
        compile_s = time.perf_counter() - start
        same = torch.allclose(step(runs["eager"], args.tokens, 1), step(runs["torch.compile"], args.tokens, 1),
                              rtol=1e-4, atol=1e-5)
        times = {key: [] for key in runs}
        for _ in range(args.repeats):
            for key, fn in runs.items():
                t = time.perf_counter()
                step(fn, args.tokens, 2)
                times[key].append(time.perf_counter() - t)
        eager = min(times["eager"])
        for key, values in times.items():
            emit({"block": name, "path": key, "ms": round(min(values) * 1e3, 2), "vs_eager": round(eager / min(values), 3),
                  **({"compile_s": round(compile_s, 1), "same_outputs": same} if key != "eager" else {})})


if __name__ == "__main__":
    main()
