"""A run continued on other machines says which stretch of its iterations trained where (issue #10's campaign
moves between GPUs, and a run can be finished on a CPU): the result's ``pieces``, and the shipped label."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from resnet_lib.base import precision
from resnet_lib.base.io import git_revision
from resnet_lib.base.precision import resolve
from resnet_lib.data.cifar import Cifar10, TensorLoader
from resnet_lib.engine import checkpoint as ck
from resnet_lib.engine import loop
from resnet_lib.engine.config import TrainConfig
from resnet_lib.engine.state import precision_of, resolve_pieces, trained_on
from resnet_lib.experiments.cifar_runs import CifarRun, run_cifar
from resnet_lib.models.cifar import cifar_resnet


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return Cifar10(x(160), torch.arange(160) % 10, x(40), torch.arange(40) % 10)


RUN = CifarRun(depth=8, train=dataclasses.replace(TrainConfig(batch_size=16, precision="fp32").with_iters(6),
                                                  eval_every=3, checkpoint_every=2))


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


@pytest.mark.parametrize("policy", ["bf16", "fp32", "bf16-conv"])
def test_a_run_resumed_from_batches_of_the_other_memory_format_ends_bitwise_where_the_straight_run_ends(
        tmp_path, tiny, monkeypatch, policy):
    """The red CI of issue #25: a run resumed on another kind of machine once took its batches in the memory
    format that machine's "auto" chose (channels-last with bf16) while the model kept the run's. The step now
    puts each batch in the model's format, so where the batches come from cannot change a bit of the result."""
    run = dataclasses.replace(RUN, train=dataclasses.replace(RUN.train, precision=policy))
    real = TensorLoader.batches

    def other_format(self, *a, **kw):  # machine A's source: the memory format the policy does not use
        fmt = torch.contiguous_format if resolve(torch.device("cpu"), policy).channels_last else torch.channels_last
        return ((x.contiguous(memory_format=fmt), y) for x, y in real(self, *a, **kw))

    monkeypatch.setattr(TensorLoader, "batches", other_format)
    monkeypatch.setattr(loop, "device_name", lambda dev: "machine A")
    run_cifar(run, tmp_path, device="cpu", progress=False, data=tiny, stop_after=2)
    monkeypatch.setattr(TensorLoader, "batches", real)
    monkeypatch.setattr(loop, "device_name", lambda dev: "machine B")
    res = run_cifar(run, tmp_path, device="cpu", progress=False, data=tiny)
    label = resolve(torch.device("cpu"), policy).label
    assert [(p["device"], p["precision"]) for p in res["pieces"]] == [("machine A", label), ("machine B", label)]
    straight = run_cifar(run, tmp_path / "straight", device="cpu", progress=False, data=tiny)
    assert straight["final"] == res["final"] and straight["history"] == res["history"]
    a, b = (ck.load_model(d / run.slug) for d in (tmp_path, tmp_path / "straight"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_policy_is_part_of_the_run_s_identity_so_auto_cannot_change_it_on_resume(tmp_path, tiny, monkeypatch):
    """A run asked for with "auto" trains in the policy "auto" means where it starts, and that policy is in its
    identity and folder: a machine whose "auto" means another policy starts its own run, never continues this
    one in another precision."""
    auto = dataclasses.replace(RUN, train=dataclasses.replace(RUN.train, precision="auto"))
    cpu = torch.device("cpu")
    monkeypatch.setitem(precision.AUTO, precision.auto_key(cpu), "bf16")
    a = auto.resolved(cpu)
    monkeypatch.setitem(precision.AUTO, precision.auto_key(cpu), "fp32")
    b = auto.resolved(cpu)
    assert (a.train.precision, b.train.precision) == ("bf16", "fp32") and a.slug != b.slug
    train_a = run_cifar(a, tmp_path, device="cpu", progress=False, data=tiny, stop_after=2)
    assert train_a["interrupted_at"] == 2
    res = run_cifar(auto, tmp_path, device="cpu", progress=False, data=tiny)  # "auto" is fp32 here now
    assert res["precision"] == "fp32" and spans(res) == [(res["pieces"][0]["device"], 0, 6)]
    assert (tmp_path / a.slug / ck.CHECKPOINT).exists()  # the bf16 run waits, untouched, for a machine that asks for it
    with pytest.raises(ValueError, match="identity names precision 'bf16'"):
        loop.Trainer(cifar_resnet(8), TensorLoader(tiny.x_train, tiny.y_train, 16), None, b.train,
                     identity=a.identity, device="cpu")


def test_mixed_pieces_say_so():
    pieces = [{"precision": "bf16 autocast", "start": 0, "end": 2}, {"precision": "fp32", "start": 2, "end": 6}]
    assert precision_of(pieces, "fp32") == "bf16 autocast for iterations 0-2 + fp32 for iterations 2-6"
    assert precision_of(pieces[:1], "bf16 autocast") == "bf16 autocast"


def test_a_run_continued_on_the_other_kind_of_cpu_says_it_moved(tmp_path, tiny, monkeypatch):
    """Both kinds of CPU read "x86_64", but a bf16 one and an AVX2 one (or one capped with
    ONEDNN_MAX_CPU_ISA=AVX2) differ in bf16's arithmetic and speed: a run that moves between them gets a piece
    on each, so the precision study does not count it as trained on one device."""
    from resnet_lib.base import io
    from resnet_lib.campaign.precision_evidence import device_of
    monkeypatch.setattr(io, "cpu_has_fast_bf16", lambda: True)
    run_cifar(RUN, tmp_path, device="cpu", progress=False, data=tiny, stop_after=2)
    monkeypatch.setattr(io, "cpu_has_fast_bf16", lambda: False)
    res = run_cifar(RUN, tmp_path, device="cpu", progress=False, data=tiny)
    (fast, _, _), (slow, start, end) = spans(res)
    assert slow == fast[:-1] + ", no fast bf16)" and (start, end) == (2, 6)
    assert device_of({"pieces": res["pieces"]}, None) == f"{fast} + {slow}"
