"""LeRobot ``Camera`` implementations that robo-reward adds (the MuJoCo views of ``mujoco_so101``)."""
