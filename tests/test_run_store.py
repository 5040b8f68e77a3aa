"""The run store: a run's identity, no pickle, one complete result, damaged files moved aside (never
deleted), no temporary files left, output folders checked first, divergence and full disks survived.
Tiny nets on tiny random data: each test trains for well under a second of CPU."""
from __future__ import annotations

import dataclasses
import errno
import io as pyio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_lib.base import io
from resnet_lib.base import precision as P
from resnet_lib.data.cifar import Cifar10, TensorLoader
from resnet_lib.engine import checkpoint as ck
from resnet_lib.engine.config import MIN_EVAL_EVERY, TrainConfig
from resnet_lib.engine.loop import TrainingDiverged, fit
from resnet_lib.experiments import responses as rs
from resnet_lib.experiments.cifar_runs import CifarRun, list_runs, run_cifar
from resnet_lib.models.cifar import cifar_resnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return Cifar10(x(160), torch.arange(160) % 10, x(40), torch.arange(40) % 10)


def tiny_run(**train) -> CifarRun:
    cfg = dataclasses.replace(TrainConfig(batch_size=16).with_iters(6), eval_every=3, checkpoint_every=2, **train)
    return CifarRun(depth=8, train=cfg)


def train(tmp_path, data, run=None, **kw):
    return run_cifar(run or tiny_run(), tmp_path, device="cpu", progress=False, data=data, **kw)


def weights(model_or_dir):
    m = ck.load_model(model_or_dir) if isinstance(model_or_dir, (str, Path)) else model_or_dir
    return {k: v.clone() for k, v in m.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Evil:  # unpickling it would create the file `marker`
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# ------------------------------------------------------------------------------------------- identity

def test_every_setting_that_changes_the_numbers_changes_the_run_folder():
    base = tiny_run()
    changed = {f.name: {int: 1, float: 0.5, bool: True, str: "x", tuple: (2, 4)}.get(type(getattr(base.train, f.name)))
               for f in dataclasses.fields(TrainConfig)}
    changed.update(precision="bf16", channels_last="on", cuda_graph="off", compile="off", iters=7, batch_size=32, eval_every=2,
                   milestones=(1,), warmup=True)
    slugs = {base.slug}
    for name, value in changed.items():
        other = dataclasses.replace(base, train=dataclasses.replace(base.train, **{name: value}))
        assert getattr(other.train, name) != getattr(base.train, name), name
        if name not in ck.EXECUTION_ONLY:
            slugs.add(other.slug)
        assert (other.slug == base.slug) == (name in ck.EXECUTION_ONLY), name
    for name, value in dict(depth=14, residual=False, shortcut="B", subset=100, val_split=True, normalize="channel",
                            test_subset=20).items():
        other = dataclasses.replace(base, **{name: value})
        assert other.slug != base.slug, name
        slugs.add(other.slug)
    assert len(slugs) == len(changed) - len(ck.EXECUTION_ONLY) + 7 + 1  # all different from each other too
    assert dataclasses.replace(base).slug == base.slug  # an identical request: the same folder
    named = dataclasses.replace(base, train=dataclasses.replace(base.train, precision=P.AUTO[P.auto_key(torch.device("cpu"))]))
    assert named.slug == base.slug  # "auto" is the policy it names here: one run, one folder


def test_identical_request_reuses_a_changed_one_retrains_and_keeps_the_old(tmp_path, tiny):
    first = train(tmp_path, tiny)
    again = train(tmp_path, None)  # no data: nothing may train
    assert again == first
    other = train(tmp_path, tiny, tiny_run(lr=0.05))
    assert other["config"]["lr"] == 0.05 and len(list(tmp_path.iterdir())) == 2
    assert train(tmp_path, None) == first  # the first one is still there, untouched


def test_a_stored_result_of_another_run_is_moved_aside_and_the_run_redone(tmp_path, tiny):
    run = tiny_run()
    first = train(tmp_path, tiny, run)
    path = tmp_path / run.slug / ck.RESULT
    forged = {**first, "identity": {**first["identity"], "train": {**first["identity"]["train"], "lr": 9.0}}}
    path.write_text(json.dumps(forged))
    with pytest.warns(ck.RunStoreWarning, match=r"belongs to another run \(train\.lr 9\.0 vs 0\.1.*python -m "
                                                r"resnet_lib train --depth 8"):
        redone = train(tmp_path, tiny, run)
    assert redone["history"] == first["history"] and redone["identity"] == first["identity"]
    aside = list(path.parent.glob("result.json.damaged-*"))
    assert len(aside) == 1 and json.loads(aside[0].read_text()) == forged  # kept as it was


# ------------------------------------------------------------------------------------------- no pickle

def test_a_crafted_pickle_is_refused_on_every_path_that_loads(tmp_path, tiny):
    run = tiny_run()
    marker = tmp_path / "code_ran"
    train(tmp_path / "runs", tiny, run, stop_after=2)
    run_dir = tmp_path / "runs" / run.slug
    torch.save({"format": ck.FORMAT, "identity": run.identity, "model": Evil(marker), "optimizer": {},
                "schedule": {}, "state": {}}, run_dir / ck.CHECKPOINT)
    refused = r"refused to load .*checkpoint\.pt.*could run code"
    with pytest.raises(ck.UnsafeCheckpoint, match=refused):  # resuming through the library
        train(tmp_path / "runs", tiny, run)
    with pytest.raises(ck.UnsafeCheckpoint, match=refused):
        ck.load_model(run_dir)
    # notebook 04 reuses stored runs: stored_runs reads result.json (JSON), then load_model
    done = tiny_run(lr=0.05)
    train(tmp_path / "runs", tiny, done)
    (tmp_path / "runs" / done.slug / ck.CHECKPOINT).write_bytes((run_dir / ck.CHECKPOINT).read_bytes())
    found = rs.stored_runs(tmp_path / "runs")
    with pytest.raises(ck.UnsafeCheckpoint, match=refused):
        ck.load_model(found[(8, True)][0]["run_dir"])
    # the command line: one message, exit code 2, nothing trained
    cli = subprocess.run([sys.executable, "-m", "resnet_lib", "train", *run.command().split()[4:], "--subset", "0",
                          "--out", str(tmp_path / "runs"), "--device", "cpu"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert "--eval-every 3" in run.command()
    assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
    assert "refused to load" in cli.stderr and "could run code" in cli.stderr
    assert not marker.exists()
    assert (run_dir / ck.CHECKPOINT).exists()  # left for the user to look at


def test_checkpoints_hold_only_tensors_and_plain_containers(tmp_path, tiny):
    run = tiny_run()
    train(tmp_path, tiny, run, stop_after=2)
    ckpt = torch.load(tmp_path / run.slug / ck.CHECKPOINT, weights_only=True)  # raises on anything else
    assert ckpt["format"] == ck.FORMAT and ckpt["identity"] == run.identity
    assert isinstance(ckpt["state"], dict) and ckpt["state"]["iteration"] == 2


# ----------------------------------------------------------------------- results: once, complete, readable

def test_the_result_is_written_once_and_complete(tmp_path, tiny, monkeypatch):
    writes = []
    real = io._atomic_replace
    monkeypatch.setattr(io, "_atomic_replace", lambda path, write: (writes.append(Path(path).name), real(path, write))[1])
    res = train(tmp_path, tiny)
    assert writes.count(ck.RESULT) == 1
    stored = json.loads((tmp_path / tiny_run().slug / ck.RESULT).read_text())
    assert stored == res and stored["name"] == "ResNet-8" and stored["train_examples"] == 160


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.atomic_write_json(tmp_path / "r.json", {"a": 1})
        io.atomic_torch_save(tmp_path / "c.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------------------------ damaged files

def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _drop_name(p: Path):
    r = json.loads(p.read_text())
    del r["name"]
    p.write_text(json.dumps(r))


@pytest.mark.parametrize("damage, says", [(_truncate, "is not valid JSON"), (_drop_name, r"is incomplete \(no name\)"),
                                          (lambda p: p.write_text("[1, 2]"), "does not hold a result")])
def test_a_damaged_result_is_moved_aside_and_the_run_redone(tmp_path, tiny, damage, says):
    run = tiny_run()
    first = train(tmp_path, tiny, run)
    path = tmp_path / run.slug / ck.RESULT
    damage(path)
    broken = path.read_bytes()
    with pytest.warns(ck.RunStoreWarning, match=f"{path}.*{says}.*moved aside.*python -m resnet_lib train"):
        redone = train(tmp_path, tiny, run)
    assert redone["final"] == first["final"]
    assert [p.read_bytes() for p in path.parent.glob("result.json.damaged-*")] == [broken]


def _other_architecture(run_dir, run):
    ckpt = torch.load(run_dir / ck.CHECKPOINT, weights_only=True)
    ckpt["model"] = cifar_resnet(14).state_dict()
    torch.save(ckpt, run_dir / ck.CHECKPOINT)


def _old_version(run_dir, run):
    ckpt = torch.load(run_dir / ck.CHECKPOINT, weights_only=True)
    ckpt["format"] = 1
    torch.save(ckpt, run_dir / ck.CHECKPOINT)


def _no_state(run_dir, run):
    ckpt = torch.load(run_dir / ck.CHECKPOINT, weights_only=True)
    del ckpt["state"]
    torch.save(ckpt, run_dir / ck.CHECKPOINT)


def _foreign(run_dir, run):
    ckpt = torch.load(run_dir / ck.CHECKPOINT, weights_only=True)
    ckpt["identity"] = {**run.identity, "spec": {**run.spec, "depth": 14}}
    torch.save(ckpt, run_dir / ck.CHECKPOINT)


@pytest.mark.parametrize("damage, says", [
    (lambda d, r: _truncate(d / ck.CHECKPOINT), "cannot be read as a checkpoint"),
    (_other_architecture, "weights of another architecture"),
    (_old_version, "another version of resnet_lib"),
    (_no_state, r"incomplete \(no state\)"),
    (_foreign, r"written for another run \(spec\.depth 14 vs 8"),
])
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_redone(tmp_path, tiny, damage, says):
    run = tiny_run()
    clean = train(tmp_path / "clean", tiny, run)
    train(tmp_path, tiny, run, stop_after=4)
    run_dir = tmp_path / run.slug
    damage(run_dir, run)
    broken = (run_dir / ck.CHECKPOINT).read_bytes()
    with pytest.warns(ck.RunStoreWarning, match=f"{run_dir / ck.CHECKPOINT}.*{says}.*moved aside.*python -m resnet_lib"):
        redone = train(tmp_path, tiny, run)
    assert redone["history"] == clean["history"]  # trained again from the start, to the same numbers
    assert same_weights(weights(run_dir), weights(tmp_path / "clean" / run.slug))
    assert [p.read_bytes() for p in run_dir.glob("checkpoint.pt.damaged-*")] == [broken]


def test_load_model_names_the_file_and_the_problem(tmp_path, tiny):
    run = tiny_run()
    train(tmp_path, tiny, run, stop_after=2)
    _old_version(tmp_path / run.slug, run)
    with pytest.raises(ck.DamagedFile, match=r"checkpoint\.pt was written by another version"):
        ck.load_model(tmp_path / run.slug)


def test_list_runs_skips_and_moves_aside_a_damaged_result(tmp_path, tiny):
    run = tiny_run()
    train(tmp_path, tiny, run)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / ck.RESULT).write_text('{"spec": ')
    with pytest.warns(ck.RunStoreWarning, match="broken/result.json is not valid JSON"):
        found = list_runs(tmp_path)
    assert [r["name"] for r in found] == ["ResNet-8"]
    assert list((tmp_path / "broken").glob("result.json.damaged-*"))


# ----------------------------------------------------------------------------- temporary files, outputs

def test_stale_temporary_files_are_removed_on_start_and_live_ones_kept(tmp_path, tiny):
    run = tiny_run()
    run_dir = tmp_path / run.slug
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = run_dir / f".checkpoint.pt.{dead.stdout.strip()}.ab12cd.tmp"
    live = run_dir / f".checkpoint.pt.{os.getppid()}.ab12cd.tmp"  # a process that is running: not ours to remove
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    train(tmp_path, tiny, run)
    assert not stale.exists() and live.exists()


def test_the_output_folder_is_checked_before_any_data_is_loaded(tmp_path, monkeypatch):
    def no_data():
        raise AssertionError("data loaded before the output folder was checked")
    monkeypatch.setattr("resnet_lib.experiments.cifar_runs.load_cifar10", no_data)
    afile = tmp_path / "a_file"
    afile.write_text("")
    with pytest.raises(io.OutputNotWritable, match=f"{afile} is a file, not a folder"):
        run_cifar(tiny_run(), afile, device="cpu", progress=False)
    real_mkstemp = io.tempfile.mkstemp

    def read_only(*a, dir=None, **kw):
        if str(dir).startswith(str(tmp_path / "ro")):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*a, dir=dir, **kw)
    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)  # as root, chmod cannot make a folder read-only
    with pytest.raises(io.OutputNotWritable, match=r"cannot write to the output folder .*ro.*Permission denied"):
        run_cifar(tiny_run(), tmp_path / "ro", device="cpu", progress=False)


def test_cli_out_naming_a_file_fails_at_once(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("")
    cli = subprocess.run([sys.executable, "-m", "resnet_lib", "train", "--out", str(afile)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "RESNET_DATA": str(tmp_path / "none")},
                         timeout=300)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
    assert f"{afile} is a file, not a folder" in cli.stderr and not (tmp_path / "none").exists()


# ------------------------------------------------------------------------------- divergence, full disk

def _source(n=64, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return TensorLoader(x, torch.arange(n) % 10, batch, augment=True, shuffle=True, drop_last=True, seed=seed)


def _fit(run_dir, cfg, **kw):
    torch.manual_seed(0)
    model = cifar_resnet(8)
    res = fit(model, _source(), _source(32, seed=1), cfg, run_dir=run_dir, device="cpu", progress=False,
              spec={"kind": "cifar", "depth": 8}, **kw)
    return model, res


def test_divergence_keeps_the_checkpoint_from_before_the_bad_step(tmp_path):
    # a gentle warm-up that ends at iteration 2, then an lr that blows the weights up in one step
    cfg = TrainConfig(batch_size=16, lr=1e4, iters=12, milestones=(), eval_every=12, checkpoint_every=1, warmup=True,
                      warmup_window=2, warmup_until_err=1.01)
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration (\d+).*last good checkpoint, from iteration "
                                               r"(\d+), is .*checkpoint\.pt") as e:
        _fit(tmp_path, cfg)
    bad, good = map(int, re.search(r"iteration (\d+).*iteration (\d+)", str(e.value)).groups())
    assert good < bad and good == bad - 1
    kept = torch.load(tmp_path / ck.CHECKPOINT, weights_only=True)
    assert kept["state"]["iteration"] == good
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    model, _ = _fit(tmp_path / "again", cfg, stop_after=good)  # the same weights, got by stopping there
    assert same_weights(kept["model"], model.state_dict())
    assert list(tmp_path.glob("checkpoint.pt.diverged-*"))  # the diverged one kept aside, not deleted


class _FillsUp(pyio.RawIOBase):
    """A file on a disk that fills up after ``room`` bytes (unbuffered, so closing it succeeds: torch.save
    then reports only ``RuntimeError: [enforce fail at inline_container.cc]``)."""

    def __init__(self, fd, room):
        self.fd, self.room = fd, room

    def writable(self):
        return True

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return os.write(self.fd, b)

    def close(self):
        if not self.closed:
            os.close(self.fd)
        super().close()


@pytest.mark.parametrize("disk", ["dev_full", "fills_up"])
def test_a_full_disk_during_a_checkpoint_loses_nothing(tmp_path, monkeypatch, disk):
    cfg = TrainConfig(batch_size=16, iters=8, milestones=(4,), eval_every=4, checkpoint_every=2)
    full, _ = _fit(tmp_path / "full", cfg)
    real_fdopen = os.fdopen
    calls = {"n": 0}

    def fdopen(fd, *a, **kw):  # the third checkpoint (iteration 6) meets a full disk
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] == 3 and disk == "fills_up":
                return _FillsUp(fd, room=5000)
            if calls["n"] == 3:  # /dev/full: every write fails with ENOSPC, as on a full disk
                full = os.open("/dev/full", os.O_WRONLY)
                os.close(fd)
                return real_fdopen(full, *a, **kw)
        return real_fdopen(fd, *a, **kw)
    monkeypatch.setattr(io.os, "fdopen", fdopen)
    with pytest.raises(io.WriteFailed) as e:
        _fit(tmp_path / "run", cfg)
    msg = str(e.value)
    assert "No space left on device" in msg and "ENOSPC" in msg and "Nothing was lost" in msg
    assert f"the previous {tmp_path / 'run' / ck.CHECKPOINT} is untouched" in msg
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert torch.load(tmp_path / "run" / ck.CHECKPOINT, weights_only=True)["state"]["iteration"] == 4
    monkeypatch.setattr(io.os, "fdopen", real_fdopen)
    resumed, _ = _fit(tmp_path / "run", cfg)  # and the run goes on from it, to the same end
    assert same_weights(resumed.state_dict(), full.state_dict())


# ---------------------------------------------------------------------------------- evaluation interval

def test_the_default_evaluation_interval_never_dominates():
    paper = TrainConfig()
    assert paper.eval_every == 2000 and paper.with_iters(64_000).eval_every == 2000
    assert TrainConfig().with_iters(64).eval_every == 64  # once, at the end (was every 2 iterations)
    assert TrainConfig().with_iters(3200).eval_every == MIN_EVAL_EVERY
    assert TrainConfig().scaled(0.5).eval_every == 1000
