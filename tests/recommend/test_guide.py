"""recommend/guide.py: the old name of workbench.recommend.choosing stays importable and is the same function."""

from workbench.recommend import choosing
from workbench.recommend.guide import guide_markdown


def test_the_old_module_name_gives_the_same_guide_function():
    assert guide_markdown is choosing.guide_markdown
