"""cpo: Contrastive Preference Optimization and its family (SimPO, CPO-SimPO, AlphaPO, hinge, IPO).

Switch from TRL by changing one import: ``from cpo import CPOConfig, CPOTrainer``. The two names load lazily, so
``import cpo`` (and ``cpo --help``) does not pull in torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["CPOConfig", "CPOTrainer"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import CPOConfig
    from .trainer import CPOTrainer


def __getattr__(name: str):
    if name == "CPOConfig":
        from .config import CPOConfig

        return CPOConfig
    if name == "CPOTrainer":
        from .trainer import CPOTrainer

        return CPOTrainer
    raise AttributeError(f"module 'cpo' has no attribute {name!r}")
