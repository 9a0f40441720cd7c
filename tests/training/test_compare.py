"""training/compare.py: the old name of workbench.training.prune_timing stays importable with the same objects."""

from workbench.training import compare, prune_timing


def test_the_old_module_name_gives_the_same_objects():
    for name in compare.__all__:
        assert getattr(compare, name) is getattr(prune_timing, name), name
    assert set(compare.__all__) == set(prune_timing.__all__)
