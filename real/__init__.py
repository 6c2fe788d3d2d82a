"""The robot side: LeRobot ``Robot`` and ``Camera`` classes robo-reward adds (``robots/``, ``cameras/``:
the ``mujoco_so101`` twin), the safety filter (``safety``) and the deploy loop (``deploy/``).

May import: ``robo_reward`` and ``sim`` (the twin runs a sim task).
"""
