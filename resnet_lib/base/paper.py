"""The paper's own numbers, as printed (machine-readable copy of the tables we compare against)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def targets() -> dict:
    """All of the paper's numbers: Table 1 FLOPs, Tables 2-5 (ImageNet), Table 6 (CIFAR-10),
    Tables 7-14 (detection and localization). Keys name the table; see paper_targets.json."""
    return json.loads(resources.files("resnet_lib.base").joinpath("paper_targets.json").read_text())


def cifar_table6() -> dict[int, float]:
    """Table 6 test error (%) by depth; ResNet-110 is the paper's best of 5 runs (mean 6.61)."""
    t = targets()["cifar10_table6_test_error_pct"]
    out = {}
    for k, v in t.items():
        if k.startswith("ResNet-"):
            out[int(k.split("-")[1])] = v["best"] if isinstance(v, dict) else v
    return out


def cifar_params_exact() -> dict[int, int]:
    """Exact parameter counts of the option-A CIFAR ResNets (Table 6 prints them rounded)."""
    return {int(k): v for k, v in targets()["cifar10_params_exact_optionA"].items()}
