"""Old name of `workbench.recommend.choosing` (one module is named `guide`: `workbench.ui.guide`); kept importable."""

from .choosing import guide_markdown

__all__ = ["guide_markdown"]
