import pytest

from neuronx_compile import COMPILER_TARGETS, OPT_LEVELS, neuron_cc_flags


@pytest.mark.parametrize("target", COMPILER_TARGETS)
@pytest.mark.parametrize("opt_level", OPT_LEVELS)
def test_flags_name_the_serving_target_and_opt_level(target, opt_level):
    assert neuron_cc_flags("", target, opt_level) == f"--target={target} -O{opt_level}"


def test_the_serving_families_are_inf2_and_trn1():
    assert COMPILER_TARGETS == ("inf2", "trn1")
    assert OPT_LEVELS == (1, 2, 3)


@pytest.mark.parametrize(
    "existing, expected",
    [
        ("--verbose=info", "--verbose=info --target=inf2 -O2"),
        ("--target=trn1 -O3 --auto-cast=none", "--auto-cast=none --target=inf2 -O2"),
        ("--target trn1 -O 1 --model-type=transformer", "--model-type=transformer --target=inf2 -O2"),
        ("--optlevel=3 --optlevel 1 '--dump=/tmp/a b'", "'--dump=/tmp/a b' --target=inf2 -O2"),
    ],
)
def test_other_flags_are_kept_and_conflicting_ones_replaced(existing, expected):
    assert neuron_cc_flags(existing, "inf2", 2) == expected
