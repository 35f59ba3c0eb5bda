"""Launch: machine checks (``mmrobot doctor``) and, later, launch files that wire a rig or a
simulation, a policy and the control loop."""

__all__: list[str] = []
