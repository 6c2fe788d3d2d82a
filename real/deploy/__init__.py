"""``robo-reward deploy``: run a policy on a robot at a fixed rate, behind a safety filter, with the
reward model's live stage and progress, recording every episode for more learning.

One control step:

    robot.get_observation() -> policy observation (the same builder as sim) -> reward model
    (progress, stage) -> policy.act -> ee_delta through the sim's IK -> safety filter ->
    robot.send_action -> record the frame

A watchdog ends the run safely on: SIGINT/SIGTERM or the e-stop key (Esc or q), an overrun
of the control period, a stale camera frame (the driver's TimeoutError), a non-finite value
from the policy or the reward model, or an exception from the driver. It then holds the
measured position, saves (or discards) the episode in flight, finalizes the dataset and
disconnects. Episodes saved before are never touched.
"""


from real.deploy.config import (
    DeployConfig,
    EpisodeResult,
    OnStop,
    RobotConnectionError,
    StopFlag,
    StopReason,
)
from real.deploy.loop import Deployment
from real.deploy.recorder import EpisodeRecorder
from real.deploy.run import DeployResult, check_port, connect_robot, run_deploy

__all__ = ["DeployConfig", "DeployResult", "Deployment", "EpisodeRecorder", "EpisodeResult", "OnStop",
           "RobotConnectionError", "StopFlag", "StopReason", "check_port", "connect_robot", "run_deploy"]
