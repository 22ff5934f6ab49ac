"""The chunked log-prob path against the naive one, on the loss path alone (hidden states -> loss -> backward).

Side by side, in one run: the naive reference (``(N, V)`` logits, fp32 log-softmax) and the chunked path at several
chunk sizes, for N scored positions, hidden 512 and V in {32000, 151936}. Reports the seconds of forward and of
forward + backward, and the peak RSS each adds, each in a fresh process. The chunked backward recomputes each
chunk's logits (one more (C, H) @ (H, V) matmul per chunk than the naive path); the forward/backward split shows
what that costs, and the chunk-size sweep picks the default (about 32 MiB of fp32 logits per chunk, at least 256
positions).
"""

from __future__ import annotations

import argparse

from common import Timer, emit, limit_memory, machine, peak_rss_bytes, reset_peak_rss, rss_bytes, run_worker

GIB = 2**30


def worker(args) -> None:
    import torch

    from cpo.chunked import LMHead, chunked_token_logps, default_chunk_size, naive_token_logps

    limit_memory(args.limit_gib)
    torch.manual_seed(0)
    hidden = torch.randn(args.positions, 512)
    weight = (torch.randn(args.vocab, 512) * 0.02).requires_grad_(True)
    targets = torch.randint(0, args.vocab, (args.positions,))
    chunk = None if args.chunk == 0 else args.chunk

    def run(backward: bool) -> float:
        h = hidden.clone().requires_grad_(True)
        weight.grad = None
        with Timer() as t:
            if args.path == "naive":
                logps, _ = naive_token_logps(h, LMHead(weight), targets)
            else:
                logps, _ = chunked_token_logps(h, LMHead(weight), targets, chunk)
            if backward:
                logps.sum().backward()
        return t.seconds

    run(True)  # warm-up
    forward = min(run(False) for _ in range(2))
    reset_peak_rss()
    base = rss_bytes()
    total = min(run(True) for _ in range(2))
    emit({"status": "ok", "forward_s": round(forward, 3), "forward_backward_s": round(total, 3),
          "peak_gib": round((peak_rss_bytes() - base) / GIB, 3),
          "chunk": chunk or default_chunk_size(args.vocab)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="chunked", choices=["naive", "chunked"])
    parser.add_argument("--chunk", type=int, default=0, help="0: the default chunk size")
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 151936])
    parser.add_argument("--positions", type=int, default=4096, help="scored positions (completion tokens)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 0, 1024, 4096])
    parser.add_argument("--limit_gib", type=float, default=20.0)
    args = parser.parse_args()
    if args.worker:
        args.vocab = args.vocab[0]
        return worker(args)
    emit({"benchmark": "chunked", "machine": machine(), "positions": args.positions, "hidden": 512})
    for vocab in args.vocab:
        runs = [("naive", 0)] + [("chunked", c) for c in args.chunks]
        for path, chunk in runs:
            result = run_worker(["--path", path, "--chunk", str(chunk), "--vocab", str(vocab), "--positions",
                                 str(args.positions), "--limit_gib", str(args.limit_gib)], timeout=1800)
            emit({"vocab": vocab, "path": path, **result})


if __name__ == "__main__":
    main()
