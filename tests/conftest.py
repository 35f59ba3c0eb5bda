"""MuJoCo reads MUJOCO_GL once, when it is first imported: choose the headless backend before
any test module is collected, so that a test file importing mujoco first cannot leave the
rest of the session without a renderer."""

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()
