"""Random kills: training is SIGKILLed at random moments (some of them inside a checkpoint write), resumed
each time, and must end bitwise equal to a run that was never interrupted, leaving no temporary file.

The training runs in a subprocess (this file run as a script: a tiny net on tiny random data, a checkpoint
after every iteration); the test process kills and restarts it."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITERS = 60


class _PausingFile:
    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, b):
        self.writes += 1
        if self.writes == 12:
            self.f.flush()
            time.sleep(0.03)
        return self.f.write(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def _train(run_dir: Path, slow_writes: bool) -> dict:
    import torch

    from resnet_lib.data.cifar import TensorLoader
    from resnet_lib.engine.config import TrainConfig
    from resnet_lib.engine.loop import fit
    from resnet_lib.models.cifar import cifar_resnet

    torch.set_num_threads(1)
    if slow_writes:  # pause each file write half-way (part of it on disk), so that kills land inside writes
        real_fdopen = os.fdopen
        os.fdopen = lambda fd, *a, **kw: _PausingFile(real_fdopen(fd, *a, **kw))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)
    train = TensorLoader(x, torch.arange(48) % 10, 16, augment=True, shuffle=True, drop_last=True, seed=0)
    test = TensorLoader(x[:16], torch.arange(16) % 10, 16)
    cfg = TrainConfig(batch_size=16, lr=0.05, iters=ITERS, milestones=(20, 30), eval_every=5, checkpoint_every=1,
                      warmup=True, warmup_window=4, warmup_until_err=0.9)
    torch.manual_seed(0)
    model = cifar_resnet(8)
    print("training", flush=True)
    res = fit(model, train, test, cfg, run_dir=run_dir, device="cpu", progress=False, spec={"kind": "cifar", "depth": 8})
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    return {"history": res["history"], "weights": digest, "warmup_ended_at": res["warmup_ended_at"]}


def _start(run_dir: Path, slow: bool = True) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, str(run_dir), "slow" if slow else "fast"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _finish(p: subprocess.Popen) -> dict:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_random_kills_then_resume_end_bitwise_equal(tmp_path):
    reference = _finish(_start(tmp_path / "reference", slow=False))
    run_dir, rng = tmp_path / "killed", random.Random(14)
    kills = in_write = 0
    while kills < 12:
        p = _start(run_dir)
        assert p.stdout.readline().strip() == "training"  # imports done: the kill lands in training
        if kills % 3 == 2:  # wait for a checkpoint write to be under way, and kill inside it
            deadline = time.time() + 30
            while not list(run_dir.glob(f".checkpoint.pt.{p.pid}.*.tmp")) and p.poll() is None and time.time() < deadline:
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0, 0.3))
        if p.poll() is not None:  # finished before the kill: the run is over, fewer kills than planned
            break
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        kills += 1
        in_write += bool(list(run_dir.glob(f".checkpoint.pt.{p.pid}.*.tmp")))  # its temp file, left by the kill
    assert kills >= 10, f"the run finished after {kills} kills; make ITERS larger"
    assert in_write >= 3, "no kill landed inside a checkpoint write"
    resumed = _finish(_start(run_dir, slow=False))
    assert resumed == reference
    left = [f.name for f in run_dir.iterdir()]
    assert not [n for n in left if n.endswith(".tmp")]  # leftovers of the kills removed
    assert not [n for n in left if ".damaged-" in n]  # no kill left a half-written checkpoint behind


if __name__ == "__main__":
    print(json.dumps(_train(Path(sys.argv[1]), sys.argv[2] == "slow")), flush=True)
