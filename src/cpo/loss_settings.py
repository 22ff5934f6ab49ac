"""The loss settings: every :class:`cpo.CPOConfig` field the objective (:mod:`cpo.losses`) reads, declared once with
its default and help, and the papers a run with them cites.

Standard library only, so that ``cpo eval --help`` builds its flags from here without importing torch. The config
takes these fields from here; the trainer passes ``LossSettings.of(args)``; ``cpo eval``'s flags, ``cpo train``'s
help group, the model card's method table and its citations read them. A new loss setting is a field here, its
maths in :mod:`cpo.losses`, and its line (and check) in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class LossSettings:
    """The :class:`cpo.CPOConfig` fields the objective reads: name, default and help (see the module's docstring)."""

    loss_type: str = _setting("sigmoid", "Preference loss: sigmoid (CPO), hinge (SLiC), ipo, simpo (with "
                              "cpo_alpha > 0: CPO-SimPO), alphapo (SimPO with cpo_alpha=0), or sft (no preference "
                              "term: the NLL of the chosen answers alone).")
    beta: float = _setting(0.1, "Temperature of the preference loss (tau for IPO); > 0.")
    label_smoothing: float = _setting(0.0, "Label smoothing of the sigmoid and simpo losses, in [0, 0.5).")
    simpo_gamma: float = _setting(0.5, "Target reward margin of the SimPO loss.")
    alpha: float = _setting(0.0, "AlphaPO reward shape r = (1 - p^(-alpha)) / alpha for every loss; 0 = off.")
    cpo_alpha: float = _setting(1.0, "Weight of the behaviour-cloning regulariser: the NLL of the chosen answers "
                                "per token, added to the preference loss (CPO, Eq. 4); 0 turns it off.")
    arpo: bool = _setting(False, "ARPO (X-ALMA, arXiv 2410.03115): weigh the rejected side by "
                          "g = min(arpo_c1 * exp(arpo_c2 * |m_c - m_r|) - 1, 1), m the per-token mean log-probs, so "
                          "near-identical pairs push the rejected answer down less.")
    arpo_c1: float = _setting(0.9, "ARPO's c1 (the X-ALMA code's default; the paper's text gives another); > 0.")
    arpo_c2: float = _setting(0.4, "ARPO's c2 (the X-ALMA code's default); >= 0.")

    @classmethod
    def of(cls, config: object) -> LossSettings:
        """The settings of a config (or any object with these attributes)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def loss_setting_names() -> tuple[str, ...]:
    """The names of every loss setting, in declaration order."""
    return tuple(f.name for f in fields(LossSettings))


# The papers a run cites (arXiv id, title, authors, venue, year), by method.
PAPERS = {
    "cpo": ("2401.08417", "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in Machine "
            "Translation", "Haoran Xu and Amr Sharaf and Yunmo Chen and Weiting Tan and Lingfeng Shen and Benjamin "
            "Van Durme and Kenton Murray and Young Jin Kim", "ICML", 2024),
    "simpo": ("2405.14734", "SimPO: Simple Preference Optimization with a Reference-Free Reward",
              "Yu Meng and Mengzhou Xia and Danqi Chen", "NeurIPS", 2024),
    "alphapo": ("2501.03884", "AlphaPO: Reward Shape Matters for LLM Alignment", "Aman Gupta and others", "ICML",
                2025),
    "ipo": ("2310.12036", "A General Theoretical Paradigm to Understand Learning from Human Preferences",
            "Mohammad Gheshlaghi Azar and others", "AISTATS", 2024),
    "slic": ("2305.10425", "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", "Yao Zhao and others",
             "arXiv", 2023),
    "arpo": ("2410.03115", "X-ALMA: Plug & Play Modules and Adaptive Rejection for Quality Translation at Scale",
             "Haoran Xu and others", "ICLR", 2025),
}


def papers_for(settings: LossSettings) -> list[str]:
    """The keys of :data:`PAPERS` a run with these settings cites: CPO always, then its loss, AlphaPO, ARPO."""
    keys = ["cpo", *{"simpo": ["simpo"], "ipo": ["ipo"], "hinge": ["slic"]}.get(settings.loss_type, [])]
    return keys + ["alphapo"] * (settings.alpha != 0) + ["arpo"] * bool(settings.arpo)
