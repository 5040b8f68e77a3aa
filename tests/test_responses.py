"""Fig. 7 hooks: which tensor is recorded, and its std, on nets with known statistics."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from resnet_lib.experiments import responses as rs
from resnet_lib.models.cifar import cifar_resnet
from resnet_lib.models.imagenet import resnet50


def _toy(gammas, betas, mean=0.5, var=4.0):
    """conv3x3 that copies its input (centre tap 1), then BN in eval mode with set statistics, then a 1x1 conv
    with its own BN (which must not be hooked)."""
    c = len(gammas)
    conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for i in range(c):
            conv.weight[i, i, 1, 1] = 1.0
    bn = nn.BatchNorm2d(c, eps=0.0)
    with torch.no_grad():
        bn.running_mean.fill_(mean)
        bn.running_var.fill_(var)
        bn.weight.copy_(torch.tensor(gammas))
        bn.bias.copy_(torch.tensor(betas))
    return nn.Sequential(conv, bn, nn.ReLU(), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c)).eval()


def test_std_of_a_known_response():
    torch.manual_seed(0)
    net = _toy([2.0, -1.0], [0.0, 3.0])
    xs = [torch.randn(16, 2, 6, 6) for _ in range(3)]
    stds = rs.layer_responses(net, xs, device="cpu", precision="fp32")
    assert len(stds) == 1  # the 1x1 conv's BN is not a 3x3 layer's response
    x = torch.cat(xs)
    expected = torch.stack([2.0 * (x[:, 0] - 0.5) / 2.0, -1.0 * (x[:, 1] - 0.5) / 2.0 + 3.0], 1)
    assert stds[0] == pytest.approx(expected.double().std(unbiased=False).item(), rel=1e-6)
    per_channel = rs.layer_responses(net, xs, device="cpu", precision="fp32", per_channel=True)
    want = np.mean([expected[:, i].double().std(unbiased=False).item() for i in range(2)])
    assert per_channel[0] == pytest.approx(want, rel=1e-6)
    assert per_channel[0] < stds[0]  # the offset beta = 3 of channel 2 counts only in the all-element std


def test_measure_gives_each_batch_its_own_std_and_the_median_se():
    torch.manual_seed(0)
    net = _toy([2.0, -1.0], [0.0, 3.0])
    xs = [torch.randn(16, 2, 6, 6) * s for s in (1.0, 2.0, 3.0)]  # batches with different spreads
    m = rs.measure(net, xs, device="cpu")
    per_batch = [rs.layer_responses(net, [x], device="cpu", precision="fp32")[0] for x in xs]
    assert m["stds"][0] == pytest.approx(rs.layer_responses(net, xs, device="cpu", precision="fp32")[0])
    assert m["median"] == m["stds"][0] and m["batches"] == 3
    assert m["se"] == pytest.approx(np.std(per_batch, ddof=1) / np.sqrt(3), rel=1e-6)
    assert rs.measure(net, xs[:1], device="cpu")["se"] is None  # one batch: no sampling error to measure


def test_hooks_read_bn_output_before_the_addition():
    torch.manual_seed(0)
    net = cifar_resnet(8).eval()
    block = net.layer2[0]
    seen = {}
    block.bn2.register_forward_hook(lambda m, i, o: seen.__setitem__("bn2", o.detach().double()))
    x = torch.randn(4, 3, 32, 32)
    stds = rs.layer_responses(net, [x], device="cpu", precision="fp32")
    names = [n for n, _ in rs.conv3x3_bn_pairs(net)]
    assert len(stds) == 7 == len(names)  # stem + 6 convs in blocks; fc excluded
    assert names[0] == "conv1" and names[-1] == "layer3.0.conv2"
    assert stds[names.index("layer2.0.conv2")] == pytest.approx(seen["bn2"].std(unbiased=False).item(), rel=1e-6)


def test_pairs_skip_projection_shortcuts_and_cover_bottlenecks():
    assert len(rs.conv3x3_bn_pairs(cifar_resnet(20, shortcut="B"))) == 19
    assert len(rs.conv3x3_bn_pairs(resnet50())) == 16  # one 3x3 conv per bottleneck block


def test_errors_are_clear():
    with pytest.raises(ValueError, match="no 3x3 conv followed by a BatchNorm2d"):
        rs.conv3x3_bn_pairs(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU()))
    rec = rs.ResponseRecorder(cifar_resnet(8))
    with pytest.raises(RuntimeError, match="no batch"):
        rec.stds()


def test_sorted_by_magnitude():
    assert list(rs.sorted_by_magnitude(np.array([1.0, 3.0, 2.0]))) == [3.0, 2.0, 1.0]


def test_brief_runs_are_stored_found_and_reused(tmp_path):
    root = tmp_path / "runs"
    res = rs.train_brief(8, True, root, iters=2, batch_size=16, subset=100, device="cpu", progress=False)
    result_file = root / res["run_dir"].split("/")[-1] / "result.json"
    stamp = result_file.stat().st_mtime_ns
    again = rs.train_brief(8, True, root, iters=2, batch_size=16, subset=100, device="cpu", progress=False)
    assert result_file.stat().st_mtime_ns == stamp and again["config"]["iters"] == 2
    found = rs.stored_runs(root)
    assert set(found) == {(8, True)} and len(found[(8, True)]) == 1
    assert rs.stored_runs(tmp_path / "nowhere") == {}
    first = json.loads(result_file.read_text())

    def plant(name, iters, seed):
        rec = json.loads(json.dumps(first))
        rec["config"]["iters"] = rec["identity"]["train"]["iters"] = iters
        rec["config"]["seed"] = rec["identity"]["train"]["seed"] = seed
        (root / name).mkdir()
        (root / name / "result.json").write_text(json.dumps(rec))

    # every seed of the longest setting, in seed order; a shorter setting's seeds are not mixed in
    plant("long_s1", 99, 1)
    plant("long_s0", 99, 0)
    plant("short_s2", 2, 2)
    assert [(r["config"]["iters"], r["config"]["seed"]) for r in rs.stored_runs(root)[(8, True)]] == [(99, 0), (99, 1)]


def test_own_nets_average_the_seeds_and_keep_each(tmp_path):
    """Two seeds of a net stored: the entry is their mean, with each seed's median, BN scale and error kept;
    a net with no stored run is trained here, once."""
    root = tmp_path / "runs"
    run = rs.train_brief(8, True, root, iters=2, batch_size=16, subset=100, device="cpu", progress=False)
    # the same weights under a second seed's record: its measurements must equal the first's
    shutil.copytree(run["run_dir"], root / "seed1")
    rec = json.loads((root / "seed1" / "result.json").read_text())
    rec["config"]["seed"] = rec["identity"]["train"]["seed"] = 1
    (root / "seed1" / "result.json").write_text(json.dumps(rec))
    stored = rs.stored_runs(root)
    source = [torch.randn(16, 3, 32, 32) for _ in range(2)]
    nets = rs.own_nets([8], stored, tmp_path / "brief", source, iters=2, batch_size=16, subset=100, device="cpu",
                       progress=False)
    res = nets["ResNet-8"]
    assert res["seeds"] == [0, 1] and res["origin"] == "notebook 03 (short run)" and res["se"] is None
    assert res["medians"][0] == res["medians"][1] == pytest.approx(res["median"])
    assert res["bn_scales"][0] == pytest.approx(1.0, abs=0.05)   # two steps leave gamma near its initial 1
    assert nets["plain-8"]["origin"] == "trained here (brief run)" and nets["plain-8"]["seeds"] == [0]
    assert (res["iters"], res["lr"], res["batch"]) == (2, 0.02, 16)
    table = rs.nets_table(nets)
    assert table[1]["seeds"] == "0, 1" and "BN scale (median of mean |gamma|, 1 at init)" in table[1]
    # the figure's panel says how the reader's nets trained, read from the runs, one entry per distinct setting
    assert rs.own_title(nets) == "your short runs (2 iterations, lr 0.02, batch 16)"
    mixed = {**nets, "ResNet-20": {"iters": 64_000}}
    assert rs.own_title(mixed) == "your short runs (2 iterations, lr 0.02, batch 16; 64,000 iterations)"


