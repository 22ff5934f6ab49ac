"""cpo: Contrastive Preference Optimization and its family (SimPO, CPO-SimPO, AlphaPO, hinge, IPO).

Switch from TRL by changing one import: ``from cpo import CPOConfig, CPOTrainer``.
"""

from .config import CPOConfig
from .trainer import CPOTrainer

__all__ = ["CPOConfig", "CPOTrainer"]
__version__ = "0.1.0"
