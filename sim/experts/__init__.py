"""Scripted experts with quality knobs, for mixed-quality demonstrations."""

from sim.experts.base import EXPERTS, ExpertQuality, Quality, ScriptedExpert, make_expert, sample_quality

__all__ = ["EXPERTS", "ExpertQuality", "Quality", "ScriptedExpert", "make_expert", "sample_quality"]
