"""Views of recordings, datasets and run outputs in Rerun (the ``viz`` extra).

:func:`~mmrobot.viz.rerun_view.view_file` (``mmrobot view FILE``) writes an MCAP recording,
one episode of a demonstration dataset, or an eval/run results JSON as a Rerun recording
(``.rrd``) or serves it to the Rerun web viewer.
"""

from __future__ import annotations

from mmrobot.viz.rerun_view import ENTITY_ROOTS, ViewResult, view_file

__all__ = ["ENTITY_ROOTS", "ViewResult", "view_file"]
