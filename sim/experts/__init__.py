"""Scripted experts with quality knobs, for mixed-quality demonstrations. One function per task
registers with ``@register_expert("<task>")`` (``tasks.py``; the ManiSkill tasks' in ``sim.maniskill.experts``)."""

from sim.experts import tasks  # noqa: F401  (registers the MuJoCo tasks' experts)
from sim.experts.base import EXPERTS, ExpertQuality, Quality, ScriptedExpert, make_expert, sample_quality

__all__ = ["EXPERTS", "ExpertQuality", "Quality", "ScriptedExpert", "make_expert", "sample_quality"]
