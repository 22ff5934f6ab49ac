"""benchmarks/gpu.py on the CPU: its whole code path with a tiny model (``--device cpu --tiny``), checked through
the JSON lines it writes, and the one line it says where there is no CUDA device."""

import json
import sys
import types

import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu  # noqa: E402

PAIRS, SEQ, VOCAB, LAYERS = 4, 160, 512, 2


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "gpu.jsonl")]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1 and out.out.startswith("No CUDA device") and out.err == ""
    assert not (tmp_path / "gpu.jsonl").exists()


def test_mt_like_rows_by_length():
    """The longer sequence of each pair is exactly T tokens (BOS on the prompt, EOS on each answer); answers 40-55%."""
    for row in gpu.mt_like_rows(VOCAB, 8, SEQ):
        prompt, chosen, rejected = (len(row[k].split()) + 1 for k in ("prompt", "chosen", "rejected"))
        assert prompt + max(chosen, rejected) == SEQ
        assert 0.40 * SEQ - 1 <= chosen <= 0.48 * SEQ and 0.85 * chosen - 1 <= rejected <= 1.15 * chosen


class FakeLigerCPOLoss(torch.nn.Module):
    """Stands in for liger_kernel's ``LigerFusedLinearCPOLoss`` (called alike: head weight, hidden states (2B, L, H)
    with the chosen rows first, labels (2B, L) at -100 where nothing is scored; returns the loss and extras): minus
    the chosen answers' summed log-prob, averaged over pairs, to check the benchmark's loop against cpo's."""

    def __init__(self, **kwargs):
        super().__init__()

    def forward(self, weight, hidden, target, bias=None):
        logps = torch.log_softmax((hidden @ weight.T).float(), dim=-1)
        scored = target != -100
        token_logps = logps.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
        return -token_logps[: len(target) // 2].sum(-1).mean(), None


def test_without_liger_its_row_says_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # an import of it fails as a missing package does
    assert gpu.measure_liger(None, [], None, None, None) == {"status": "not installed"}


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu-cpu-tiny.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        liger = types.ModuleType("liger_kernel.chunked_loss")
        liger.LigerFusedLinearCPOLoss = FakeLigerCPOLoss
        mp.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
        mp.setitem(sys.modules, "liger_kernel.chunked_loss", liger)
        assert gpu.main(["--device", "cpu", "--tiny", "--steps", "2", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return records[0], {r["path"]: r for r in records[1:]}


def test_the_cpu_path_measures_every_path_on_the_same_tokens(cpu_run):
    header, rows = cpu_run
    assert (header["setting"], header["device"], header["dtype"], header["pairs"]) == ("tiny", "cpu", "fp32", PAIRS)
    assert list(rows) == gpu.PATHS  # no test record: pytest -m cuda runs only on CUDA
    tokens = sum(SEQ + min(len(r["chosen"].split()), len(r["rejected"].split())) + 1
                 for r in gpu.mt_like_rows(VOCAB, PAIRS, SEQ))  # prompt + longer answer = T, plus the shorter one
    for path in gpu.PATHS:
        r = rows[path]
        assert r["status"] == "ok" and r["T"] == SEQ, r
        assert r["tokens_per_step"] == tokens and len(r["step_seconds"]) == 2
        assert r["seconds_per_step"] == pytest.approx(sum(r["step_seconds"]) / 2, abs=1e-4)
        assert r["tokens_per_s"] == pytest.approx(tokens / r["seconds_per_step"], rel=1e-2)
        assert r["pairs_per_s"] == pytest.approx(PAIRS / r["seconds_per_step"], rel=1e-2)
        assert r["peak_gib"] > 0.05
    default = rows["cpo, defaults"]
    for path in gpu.PATHS[:-1]:  # the same pairs and weights: every trainer's first step agrees (fp32), TRL's too
        for key in ("first_loss", "first_chosen_logps"):
            assert rows[path][key] == pytest.approx(default[key], rel=1e-5), (path, key)
    # the Liger loop's padded batch, labels and head give cpo's log-probs (through the stand-in's loss)
    assert rows[gpu.LIGER]["first_loss"] == pytest.approx(-default["first_chosen_logps"], rel=1e-5)


def test_the_cpu_path_reports_layouts_kernels_and_square_tensors(cpu_run):
    _, rows = cpu_run
    tokens = rows["cpo, defaults"]["tokens_per_step"]
    default = rows["cpo, defaults"]
    # everything in one row with each prompt once; the pairs' two paths each, of similar lengths, run as one sdpa
    # call a layer, forward only (the default checkpointing keeps attention's outputs); full checkpointing runs
    # them again in its recompute
    assert (default["rows"], default["row_length"], default["square_tensors"]) == (1, tokens, 0)
    assert default["sdpa_kernels"] == {"flash (CPU)": LAYERS}
    assert rows["cpo, full checkpointing"]["sdpa_kernels"] == {"flash (CPU)": LAYERS * 2}
    for path in ("TRL 1.16", "cpo, all off"):  # padded rows of T, and their (2B, 1, T, T) mask
        assert (rows[path]["rows"], rows[path]["row_length"]) == (2 * PAIRS, SEQ)
        assert rows[path]["square_tensors"] > 0 and rows[path]["sdpa_kernels"] == {"flash (CPU)": LAYERS * 2}
    assert rows["cpo, path attention off"]["square_tensors"] > 0
    for path in ("cpo, chunked head off", "cpo, packing off", "cpo, prefix sharing off"):
        assert rows[path]["square_tensors"] == 0, path
    # the chunked head never holds the logits of the whole row; with it off, they exist
    assert default["largest_tensor_elements"] < tokens * VOCAB <= rows["cpo, chunked head off"]["largest_tensor_elements"]
