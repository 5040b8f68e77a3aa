"""bf16 autocast's gradient against fp32's (``experiments.grad_precision``): the measurement on real CIFAR-10
batches, and the words it prints, which must follow the numbers."""
import json

import pytest
import torch

from resnet_lib.data.cifar import TensorLoader, load_cifar10
from resnet_lib.experiments import grad_precision as gp
from resnet_lib.models.cifar import cifar_resnet


@pytest.fixture(scope="module")
def data():
    return load_cifar10()


def _batches(data, n=2, size=32):
    src = TensorLoader(data.x_train[:n * size], data.y_train[:n * size], size, augment=True, shuffle=True, seed=1)
    return list(src.batches(0))


def test_measure_net_finds_the_bf16_error_and_leaves_the_net_alone(data):
    torch.manual_seed(0)
    net = cifar_resnet(8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = _batches(data)
    m = gp.measure_net(net, batches)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN running stats untouched
    assert 0 < m["rel_err"] < 1 and 0 < m["first_conv_rel_err"] < 2 and m["rel_err_std"] >= 0
    assert -1 <= m["err_cos"] <= 1 and -1 <= m["grad_cos"] <= 1
    x, y = batches[0]
    g1, g2 = gp.gradients(net, x, y, False, torch.device("cpu")), gp.gradients(net, x, y, False, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))  # fp32 is the fixed reference
    with pytest.raises(ValueError, match="at least 2 batches"):
        gp.measure_net(net, batches[:1])


def test_measure_has_a_row_per_net_and_its_provenance(data, tmp_path):
    m = gp.measure(root=tmp_path, n_batches=2, data=data, init_depths=(8, 14))  # tmp_path: no shipped weights
    assert [(r["net"], r["weights"]) for r in m["rows"]] == [("ResNet-8", "initialisation"), ("ResNet-14", "initialisation")]
    assert m["batches"] == 2 and m["provenance"]["torch"] == torch.__version__
    path = tmp_path / gp.FILE
    path.write_text(json.dumps(m))
    text = gp.grad_precision_text(path)
    assert text.count("| ResNet-") == 2 and f"{100 * m['rows'][1]['rel_err']:.1f} ±" in text
    assert gp.grad_precision_text(tmp_path / "none.json") == ""
    m["provenance"]["device"] = "NVIDIA H100 80GB HBM3"  # a GPU's measurement beside this CPU's: both shown
    (tmp_path / "grad_precision_h100.json").write_text(json.dumps(m))
    section = gp.precision_section(tmp_path)
    assert section.count("bf16 autocast's gradient against fp32's") == 2 and "NVIDIA H100" in section


def _row(net, weights, rel, err_cos=0.0, grad_cos=0.0):
    return {"net": net, "weights": weights, "rel_err": rel, "rel_err_std": 0.01, "first_conv_rel_err": 2 * rel,
            "err_cos": err_cos, "grad_cos": grad_cos}


def test_the_verdict_follows_the_numbers():
    assert gp.minibatch_noise(0.8) == pytest.approx(0.5) and gp.minibatch_noise(0.01) is None
    noise = gp._verdict([_row("ResNet-20", "final weights", 0.1), _row("ResNet-56", "final weights", 0.2),
                         _row("ResNet-20", "initialisation", 0.05, grad_cos=0.8),
                         _row("ResNet-110", "initialisation", 0.3, grad_cos=0.8)])
    assert "grows with depth: 10.0% for ResNet-20, 20.0% for ResNet-56" in noise and "noise, not a bias" in noise
    assert "small beside it" in noise and "0.60 times that noise" in noise and "If bf16 matters".lower() in noise.lower()
    bias = gp._verdict([_row("ResNet-20", "final weights", 0.3, err_cos=0.5), _row("ResNet-56", "final weights", 0.1)])
    assert "does not grow" in bias and "a bias, which accumulates" in bias and "not a bias" not in bias
    assert "If bf16 matters".lower() not in bias.lower()
    # over 4 batches (std 0.01 each) a 1-point gap is inside twice its standard error (1.4 points): said so
    close = gp._verdict([_row("ResNet-20", "final weights", 0.10), _row("ResNet-56", "final weights", 0.11)], n_batches=4)
    assert "may grow with depth; inside the batch spread: 10.0% for ResNet-20, 11.0% for ResNet-56" in close
    assert "the 1.0-point gap is inside twice its standard error over the 4 batches (1.4 points)" in close
    assert "grows with depth: 10.0% for ResNet-20, 20.0% for ResNet-56" in gp._verdict(
        [_row("ResNet-20", "final weights", 0.1), _row("ResNet-56", "final weights", 0.2)], n_batches=4)


def test_the_shipped_measurement_is_shown():
    path = gp.FILE
    from resnet_lib.experiments.shipped import default_root
    stored = json.loads((default_root() / path).read_text())
    text = gp.grad_precision_text()
    assert text and text in gp.precision_section()  # notebook 03 and the README show it under Table 6
    assert "since replaced" not in text  # measured on the weights shipped now
    for r in stored["rows"]:
        assert f"| {r['net']} | {r['weights']} | {100 * r['rel_err']:.1f} ± {100 * r['rel_err_std']:.1f} |" in text


def test_a_measurement_on_other_weights_says_so(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "ResNet-20.pt").write_bytes(b"weights measured")
    row = {**_row("ResNet-20", "final weights", 0.1), "weights_sha256": gp._sha256(tmp_path / "weights" / "ResNet-20.pt")}
    m = {"rows": [row, _row("ResNet-20", "initialisation", 0.05, grad_cos=0.8)], "batches": 2, "batch_size": 128,
         "provenance": {"device": "cpu", "torch": torch.__version__}}
    (tmp_path / gp.FILE).write_text(json.dumps(m))
    assert "since replaced" not in gp.grad_precision_text(tmp_path / gp.FILE)
    (tmp_path / "weights" / "ResNet-56.pt").write_bytes(b"shipped later")
    assert "since replaced or added (ResNet-56)" in gp.grad_precision_text(tmp_path / gp.FILE)
    (tmp_path / "weights" / "ResNet-20.pt").write_bytes(b"retrained")
    assert "(ResNet-20, ResNet-56)" in gp.grad_precision_text(tmp_path / gp.FILE)
