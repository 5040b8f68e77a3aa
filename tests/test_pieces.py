"""A run continued on other machines says which stretch of its iterations trained where (issue #10's campaign
moves between GPUs, and a run can be finished on a CPU): the result's ``pieces``, and the shipped label."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from resnet_lib.base.device import use_bf16
from resnet_lib.base.io import git_revision
from resnet_lib.data.cifar import Cifar10
from resnet_lib.engine import checkpoint as ck
from resnet_lib.engine import loop
from resnet_lib.engine.config import TrainConfig
from resnet_lib.engine.state import kept_precision, precision_of, resolve_pieces, trained_on
from resnet_lib.experiments.cifar_runs import CifarRun, run_cifar


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return Cifar10(x(160), torch.arange(160) % 10, x(40), torch.arange(40) % 10)


RUN = CifarRun(depth=8, train=dataclasses.replace(TrainConfig(batch_size=16).with_iters(6), eval_every=3,
                                                  checkpoint_every=2))


def train(root, data, machine, monkeypatch, **kw):
    monkeypatch.setattr(loop, "device_name", lambda dev: machine)
    return run_cifar(RUN, root, device="cpu", progress=False, data=data, **kw)


def spans(res):
    return [(p["device"], p["start"], p["end"]) for p in res["pieces"]]


def test_each_machine_s_stretch_is_recorded_and_one_machine_s_calls_make_one_piece(tmp_path, tiny, monkeypatch):
    train(tmp_path, tiny, "machine A", monkeypatch, stop_after=2)
    train(tmp_path, tiny, "machine A", monkeypatch, stop_after=4)
    res = train(tmp_path, tiny, "machine B", monkeypatch)
    assert spans(res) == [("machine A", 0, 4), ("machine B", 4, 6)]
    assert all(p["torch"] == torch.__version__ and p["since_utc"] and p["git"] == git_revision()
               for p in res["pieces"])
    assert sum(p["wall_s"] for p in res["pieces"]) == pytest.approx(res["wall_s"], abs=0.05)
    assert trained_on(res["pieces"], None) == (f"machine A (torch {torch.__version__}) for iterations 0-4 + "
                                               f"machine B (torch {torch.__version__}) for iterations 4-6")
    straight = train(tmp_path / "straight", tiny, "machine A", monkeypatch)
    assert spans(straight) == [("machine A", 0, 6)] and trained_on(straight["pieces"], None) == "machine A"


def test_a_checkpoint_from_before_pieces_gets_its_device_from_the_campaign_s_calls(tmp_path, tiny, monkeypatch):
    train(tmp_path, tiny, "machine A", monkeypatch, stop_after=2)
    path = tmp_path / RUN.slug / ck.CHECKPOINT
    old = ck.load_checkpoint(path)
    del old["state"]["pieces"]  # as written before pieces were kept
    ck.save_checkpoint(path.parent, {k: v for k, v in old.items() if k != "format"})
    res = train(tmp_path, tiny, "machine B", monkeypatch)
    assert spans(res) == [(None, 0, 2), ("machine B", 2, 6)]
    since = res["pieces"][1]["since_utc"]
    calls = [{"device": "GPU X", "torch": "2.11", "started_utc": "2026-01-01T00:00:00Z"},
             {"device": "GPU X", "started_utc": "2026-01-02T00:00:00Z"},
             {"device": "machine B", "torch": "2.14", "started_utc": since}]  # the call that opened piece 2
    got = resolve_pieces(res["pieces"], calls)
    assert (got[0]["device"], got[0]["device_from"]) == ("GPU X", "the campaign's calls log")
    assert got[0]["torch"] is None  # one of the calls did not say
    assert got[1] == res["pieces"][1] and res["pieces"][0]["device"] is None  # the stored record is untouched
    calls.insert(0, {"device": "GPU Y", "started_utc": "2025-12-31T00:00:00Z"})
    assert resolve_pieces(res["pieces"], calls)[0]["device"] is None  # two devices before: unknown stays unknown
    assert trained_on(resolve_pieces(res["pieces"], calls), None).startswith("unrecorded device for iterations 0-2 +")


def test_a_run_keeps_the_precision_it_has_trained_in_where_amp_is_auto(tmp_path, tiny, monkeypatch):
    """A run begun in bf16 on a GPU and continued on an AVX2 CPU (whose "auto" is fp32) stays bf16 to the end,
    and ends bitwise where the same run trained straight through in that precision ends."""
    here = use_bf16(torch.device("cpu"), "auto")
    real = loop.resolve_formats
    monkeypatch.setattr(loop, "resolve_formats", lambda dev, cfg: (not here, not here))  # the other kind of machine
    train(tmp_path, tiny, "machine A", monkeypatch, stop_after=2)
    monkeypatch.setattr(loop, "resolve_formats", real)
    res = train(tmp_path, tiny, "machine B", monkeypatch)
    other = "fp32" if here else "bf16 autocast"
    assert [(p["device"], p["precision"]) for p in res["pieces"]] == [("machine A", other), ("machine B", other)]
    assert res["precision"] == other
    amp = dataclasses.replace(RUN, train=dataclasses.replace(RUN.train, amp="bf16" if not here else "off"))
    straight = run_cifar(amp, tmp_path / "straight", device="cpu", progress=False, data=tiny)
    assert straight["precision"] == other and straight["final"] == res["final"]
    a, b = (ck.load_model(d / r.slug) for d, r in ((tmp_path, RUN), (tmp_path / "straight", amp)))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_run_without_a_recorded_precision_takes_auto_and_mixed_pieces_say_so(tmp_path, tiny, monkeypatch):
    here = "bf16 autocast" if use_bf16(torch.device("cpu"), "auto") else "fp32"
    train(tmp_path, tiny, "machine A", monkeypatch, stop_after=2)
    path = tmp_path / RUN.slug / ck.CHECKPOINT
    old = ck.load_checkpoint(path)
    old["state"]["pieces"][0]["precision"] = None  # as written before pieces recorded their precision
    ck.save_checkpoint(path.parent, {k: v for k, v in old.items() if k != "format"})
    res = train(tmp_path, tiny, "machine B", monkeypatch)
    assert [p["precision"] for p in res["pieces"]] == [None, here] and res["precision"] == here
    pieces = [dict(res["pieces"][0], precision="bf16 autocast"), dict(res["pieces"][1], precision="fp32")]
    assert precision_of(pieces, "fp32") == "bf16 autocast for iterations 0-2 + fp32 for iterations 2-6"
    assert kept_precision(pieces) == "fp32" and kept_precision(pieces[:1]) == "bf16 autocast"
    assert kept_precision([dict(pieces[0], precision=None)]) is None
