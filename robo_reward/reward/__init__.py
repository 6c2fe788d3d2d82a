"""The process reward model: config, modeling, losses, training (``train``), evaluation metrics
(``evaluate``) and the one inference module (``inference``) that eval, annotate, RA-BC, shaping
and deploy all use for per-frame progress.

May import: ``robo_reward.data``, ``robo_reward.embodiments``, ``robo_reward.registry``, ``robo_reward.stats``.
"""
