import pytest

from neuronx_common import COMPILE_OPTIONS
from neuronx_compile import (
    COMPILE_WORKER_MEMORY_GIB,
    GIB,
    available_memory_bytes,
    compile_workers,
    neuron_cc_flags,
)


@pytest.mark.parametrize("opt_level", COMPILE_OPTIONS["optLevels"])
def test_flags_name_the_opt_level_and_no_target(opt_level):
    # transformers-neuronx passes --target=trn1 itself (platform_target="trn1"): a second target would conflict.
    assert neuron_cc_flags("", opt_level) == f"-O{opt_level}"


@pytest.mark.parametrize(
    "existing, expected",
    [
        ("--verbose=info", "--verbose=info -O2"),
        ("--target=inf2 -O3 --auto-cast=none", "--auto-cast=none -O2"),
        ("--target trn1 -O 1 --model-type=transformer", "--model-type=transformer -O2"),
        ("--optlevel=3 --optlevel 1 '--dump=/tmp/a b'", "'--dump=/tmp/a b' -O2"),
    ],
)
def test_other_flags_are_kept_a_target_is_dropped_and_the_opt_level_replaced(existing, expected):
    assert neuron_cc_flags(existing, 2) == expected
    assert "--target" not in neuron_cc_flags(existing, 2)


@pytest.mark.parametrize(
    "container_gib, graphs_at_once",
    [
        (0.9 * 128, 8),  # inf2.8xlarge (lowCost's compile instance): all 8 graphs of 1024 positions at once
        (0.9 * 384, 24),  # inf2.24xlarge (highPerformance): more than its 12 graphs of 4096 positions
        (0.9 * 32, 2),  # trn1.2xlarge: two compilers, not eight
        (0.9 * 16, 1),  # inf2.xlarge: one at a time
        (1, 1),
    ],
)
def test_compile_workers_leave_each_compiler_its_memory(container_gib, graphs_at_once):
    workers = compile_workers(int(container_gib * GIB))
    assert workers == graphs_at_once
    assert workers == 1 or workers * COMPILE_WORKER_MEMORY_GIB * GIB <= container_gib * GIB


def meminfo(tmp_path, available_kib):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       134000000 kB\nMemFree:         1000 kB\nMemAvailable:   {available_kib} kB\n")
    return path


def test_available_memory_is_the_hosts_without_a_container_limit(tmp_path):
    unlimited = tmp_path / "memory.max"
    unlimited.write_text("max\n")
    missing = tmp_path / "memory.limit_in_bytes"
    assert available_memory_bytes(meminfo(tmp_path, 120 * 1024**2), (unlimited, missing)) == 120 * GIB


def test_available_memory_is_capped_by_the_container_limit(tmp_path):
    # Batch gives the container 0.9 of the host's memory: the compilers must fit in that, not in MemAvailable.
    limit = tmp_path / "memory.max"
    limit.write_text(f"{115 * GIB}\n")
    assert available_memory_bytes(meminfo(tmp_path, 125 * 1024**2), (limit,)) == 115 * GIB


def test_available_memory_falls_back_to_free_memory_on_an_old_kernel(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       134000000 kB\nMemFree:        2097152 kB\n")
    assert available_memory_bytes(path, ()) == 2 * GIB
