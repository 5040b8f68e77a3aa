"""Errors a user can cause on the command line end in one message (what, why, the fix) on stderr, exit
code 2 and no traceback; ``--debug`` or RESNET_DEBUG=1 shows the traceback. The commands run as a user
runs them, in a subprocess."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_lib.__main__ import EXIT_USER_ERROR, main
from resnet_lib.base.errors import UserError
from resnet_lib.data import images, tiny_imagenet
from resnet_lib.experiments import cifar_runs
from resnet_lib.runner import notebooks


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_lib", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RESNET_DEBUG": "", **(env or {})})


def assert_one_message(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == EXIT_USER_ERROR, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    # ours ("error: ...") or argparse's ("python -m resnet_lib train: error: ..." after its usage line)
    errors = [ln for ln in r.stderr.splitlines() if re.match(r"(python -m resnet_lib [\w-]+: )?error: ", ln)]
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w in errors[0], f"{w!r} not in {errors[0]!r}"
    return errors[0]


def test_bad_depth_is_one_message(tmp_path):
    r = cli("train", "--depth", "21", "--out", str(tmp_path))
    assert_one_message(r, "depth 21 is not of the form 6n+2", "pick one of those")


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    """In-process (each subprocess costs a torch import): --debug anywhere, or RESNET_DEBUG=1, lets the
    exception through with its traceback."""
    monkeypatch.delenv("RESNET_DEBUG", raising=False)
    with pytest.raises(ValueError, match="6n\\+2"):
        main(["train", "--depth", "21", "--debug", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="6n\\+2"):
        main(["--debug", "train", "--depth", "21", "--out", str(tmp_path)])
    monkeypatch.setenv("RESNET_DEBUG", "1")
    with pytest.raises(ValueError, match="6n\\+2"):
        main(["train", "--depth", "21", "--out", str(tmp_path)])
    monkeypatch.setenv("RESNET_DEBUG", "0")
    assert main(["train", "--depth", "21", "--out", str(tmp_path)]) == EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("error: depth 21")


def test_unknown_command_and_bad_option_exit_2(capsys):
    assert main(["trian"]) == 2 and "unknown command 'trian'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse's own clean message
        main(["train", "--shortcut", "D"])
    assert e.value.code == 2 and "invalid choice: 'D'" in capsys.readouterr().err


def test_the_handler_catches_user_errors_only(monkeypatch, capsys):
    """In-process view of the one place: a ValueError/OSError becomes one line; a bug keeps its traceback."""
    def raising(exc):
        return lambda argv: (_ for _ in ()).throw(exc)
    monkeypatch.setattr(cifar_runs, "cli", raising(OSError(28, "No space left on device", "/x/checkpoint.pt")))
    assert main(["train"]) == EXIT_USER_ERROR
    assert "error: [Errno 28] No space left on device: '/x/checkpoint.pt'" in capsys.readouterr().err
    monkeypatch.setattr(cifar_runs, "cli", raising(json.JSONDecodeError("Expecting value", "{", 1)))
    assert main(["train"]) == EXIT_USER_ERROR
    assert "error: a stored JSON file is damaged or was cut short" in capsys.readouterr().err
    monkeypatch.setattr(cifar_runs, "cli", raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        main(["train"])
    monkeypatch.setattr(cifar_runs, "cli", raising(KeyboardInterrupt()))
    assert main(["train"]) == 130 and "resumes from its last checkpoint" in capsys.readouterr().err


def _run_folder(tmp_path: Path, monkeypatch, args: list[str]) -> Path:
    """The folder ``train args`` keeps its run in, as the command itself decides it (no training)."""
    seen = {}

    def stop(*a, run_dir=None, **k):
        seen["dir"] = Path(run_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(cifar_runs, "Trainer", stop)
    with pytest.raises(KeyboardInterrupt):
        cifar_runs.cli(args)
    return seen["dir"]


TINY_TRAIN = ["--depth", "8", "--iters", "1", "--subset", "100", "--batch-size", "10", "--device", "cpu"]


def test_half_written_result_is_not_a_traceback(tmp_path, monkeypatch):
    """A finished run whose result.json was cut short: the run store reports (or redoes) it; either way
    the user sees no traceback."""
    args = [*TINY_TRAIN, "--out", str(tmp_path)]
    run_dir = _run_folder(tmp_path, monkeypatch, args)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text('{"final": {"test_err": 0.1')
    r = cli("train", *args)
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode != 0:
        assert_one_message(r)


def test_checkpoint_whose_spec_lacks_fields_is_one_message(tmp_path, monkeypatch):
    args = [*TINY_TRAIN, "--out", str(tmp_path)]
    run_dir = _run_folder(tmp_path, monkeypatch, args)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": {"kind": "cifar"}, "config": {}, "model": {}, "optimizer": {}, "schedule": {},
                "state": {"iteration": 0}}, run_dir / "checkpoint.pt")
    r = cli("train", *args)
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode != 0:
        assert_one_message(r, str(run_dir))


def _image_folder(root: Path, counts: dict[str, int]) -> None:
    for split in ("train", "val"):
        for cls, n in counts.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else 1):
                Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(root / split / cls / f"{i}.jpg")


def test_train_imagenet_refuses_a_class_without_training_images(tmp_path):
    _image_folder(tmp_path / "data", {"cat": 2, "dog": 0})
    r = cli("train-imagenet", "--data", str(tmp_path / "data"), "--iters", "1", "--batch-size", "2",
            "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-test")
    assert_one_message(r, f"class folder {tmp_path / 'data' / 'train' / 'dog'} holds no images")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_torchrun_entry_reports_bad_input_in_one_line_too(tmp_path):
    """``torchrun ... -m resnet_lib.experiments.imagenet_train`` runs that module's ``__main__``: bad input is the
    same one line as on ``python -m resnet_lib``, with no traceback of ours. torchrun itself then reports the failed
    process in its own words (its ChildFailedError, with its launcher's traceback), which is not ours to change."""
    env = {**os.environ, "RESNET_DEBUG": "", "OMP_NUM_THREADS": "1"}
    bad = ["-m", "resnet_lib.experiments.imagenet_train", "--data", str(tmp_path / "missing")]
    r = subprocess.run([sys.executable, *bad], capture_output=True, text=True, timeout=600, env=env)
    assert_one_message(r, f"--data {tmp_path / 'missing'} does not exist")
    t = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *bad],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert t.returncode != 0
    ours = [ln for ln in t.stderr.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 1 and "does not exist" in ours[0], t.stderr[-3000:]
    assert "resnet_lib/experiments/imagenet_train.py" not in t.stderr, t.stderr[-3000:]  # no frame of ours


def test_an_empty_class_is_an_error_naming_its_folder(tmp_path):
    _image_folder(tmp_path, {"a": 1, "b": 0})
    with pytest.raises(UserError, match=f"class folder {tmp_path / 'train' / 'b'} holds no images"):
        images.list_images(tmp_path / "train")
    images.list_images(tmp_path / "val")  # one image per class: fine
    # Tiny ImageNet's layout: train/<wnid>/images/*.JPEG
    (tmp_path / "tiny" / "train" / "n01" / "images").mkdir(parents=True)
    (tmp_path / "tiny" / "train" / "n02" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "tiny" / "train" / "n01" / "images" / "n01_0.JPEG")
    with pytest.raises(UserError, match="class folder .*n02/images holds no .JPEG images"):
        tiny_imagenet.tiny_imagenet_samples(tmp_path / "tiny", "train", ["n01", "n02"])


def test_a_failing_notebook_in_the_main_job_is_one_message(tmp_path, monkeypatch):
    import papermill as pm

    def fails(nb, out, tiny=False):
        raise pm.PapermillExecutionError(4, 5, "run = ...", "ValueError", "depth 21 is not of the form 6n+2", [])
    monkeypatch.setattr(notebooks, "run_notebook", fails)
    with pytest.raises(UserError) as e:
        notebooks.run_all(tmp_path, only=["03"])
    msg = str(e.value)
    assert "03_cifar10_plain_vs_residual.ipynb stopped in its cell [5] with ValueError: depth 21" in msg
    assert str(tmp_path / "executed" / "03_cifar10_plain_vs_residual.ipynb") in msg
