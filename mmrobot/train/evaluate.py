"""The evaluation API's earlier import path: everything lives in :mod:`mmrobot.train.eval`."""

from mmrobot.train.eval import *  # noqa: F403 - the package's public names, unchanged
from mmrobot.train.eval import __all__ as __all__
