"""The CPU path: which precision the library picks (a capped oneDNN must give fp32), and the malloc
settings that stop the page-fault storm of large CPU tensors. Each check runs in a fresh process where
the environment (ONEDNN_MAX_CPU_ISA, RESNET_MALLOC) must be set before torch or resnet_lib load."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from resnet_lib.base import device
from resnet_lib.base import precision as P

LINUX_GLIBC = sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")


def _python(code: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cap, fast", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_AMX", True),
                                       ("DEFAULT", True), ("", True)])
def test_an_isa_cap_below_bf16_means_fp32(monkeypatch, cap, fast):
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert device.cpu_has_fast_bf16() is fast
    # "auto" is the precision study's choice for this kind of CPU (base.precision.AUTO, by auto_key: fp32 until a
    # faster policy is shown faithful), not the CPU's speed at bf16 alone
    assert P.auto_key(torch.device("cpu")) == ("cpu-bf16" if fast else "cpu")
    assert device.use_bf16(torch.device("cpu"), "auto") is (P.AUTO[P.auto_key(torch.device("cpu"))] in ("bf16", "bf16-conv"))
    assert device.use_bf16(torch.device("cpu"), "bf16") is True  # asked for explicitly: given


def test_a_cpu_without_bf16_flags_gets_fp32(monkeypatch):
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert not device.cpu_has_fast_bf16()


def test_the_avx2_stand_in_trains_in_fp32_and_says_so():
    """Under ONEDNN_MAX_CPU_ISA=AVX2 a fresh process resolves fp32 NCHW and oneDNN reports AVX2."""
    got = _python("""
        import json, torch
        from resnet_lib.base.device import cpu_path
        from resnet_lib.engine.config import TrainConfig
        from resnet_lib.engine.step import resolve_formats
        bf16, cl = resolve_formats(torch.device("cpu"), TrainConfig())
        print(json.dumps(cpu_path(bf16, cl)))
    """, ONEDNN_MAX_CPU_ISA="AVX2")
    assert got["precision"] == "fp32" and got["memory_format"] == "NCHW" and not got["fast_bf16"]
    assert got["onednn_max_isa"] == "AVX2"
    assert "AVX2" in got["onednn_isa"] and "512" not in got["onednn_isa"], got["onednn_isa"]


FAULTS = """
    import json, resource, torch
    import resnet_lib
    from resnet_lib.base.malloc import malloc_settings
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # what an evaluation at batch 1000 does: 65 MB activations (16 x 32 x 32 floats per image), made and freed
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU()).eval()
    x = torch.randn(1000, 3, 32, 32)
    with torch.no_grad():
        for _ in range(3):  # the heap grows to its working size
            net(x).sum().item()
        before = faults()
        for _ in range(3):
            net(x).sum().item()
    print(json.dumps({"faults": (faults() - before) // 3, "malloc": malloc_settings()}))
"""


@pytest.mark.skipif(not LINUX_GLIBC, reason="glibc's malloc only")
def test_large_tensors_reuse_memory_instead_of_faulting_it_in_again():
    tuned = _python(FAULTS)
    assert tuned["malloc"] == {"allocator": "glibc", "applied": True, "mmap_max": 0, "trim_threshold": 2**31 - 1}
    # about 140k 4-KiB pages per pass if each activation came from a fresh mmap; none once the heap is reused
    assert tuned["faults"] < 20_000, tuned  # first touches only (seen 0-5k, depending on what else runs)
    system = _python(FAULTS, RESNET_MALLOC="system")
    assert system["malloc"]["applied"] is False
    assert system["faults"] > 50_000, system  # glibc's default: each one mapped, faulted in and unmapped


@pytest.mark.skipif(not LINUX_GLIBC, reason="glibc's malloc only")
def test_a_preloaded_allocator_or_glibc_setting_is_left_alone():
    got = _python(FAULTS, MALLOC_MMAP_THRESHOLD_="1048576")
    assert got["malloc"] == {"allocator": "glibc, as set in the environment", "applied": False}


def test_fp32_on_a_gpu_turns_tf32_convolutions_off_and_leaves_the_cpu_alone():
    """The precision study's fp32 is full fp32 on a GPU too (cuDNN's default would be TF32). The flags are
    process-wide and exist in CPU builds too, so the switch can be checked here; restored afterwards."""
    from resnet_lib.base.device import full_fp32, tf32_convolutions

    conv = torch.backends.cudnn.conv
    saved = (conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    try:
        conv.fp32_precision = torch.backends.cudnn.rnn.fp32_precision = "tf32"
        full_fp32(torch.device("cpu"))
        assert tf32_convolutions()  # a CPU run changes nothing
        full_fp32(torch.device("cuda"))
        assert not tf32_convolutions() and torch.backends.cuda.matmul.fp32_precision == "ieee"
    finally:
        conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
