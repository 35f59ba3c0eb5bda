"""The pinhole projection against MuJoCo's own rendering of the scene camera."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmrobot.envs import names
from mmrobot.envs.projection import CameraProjection
from mmrobot.envs.scene import Scene


def _corners(scene: Scene, block: tuple[str, str]) -> np.ndarray:
    half, pos, mat = scene.block_half_m(*block), scene.block_pos(*block), scene.block_mat(*block)
    return np.array(
        [pos + mat @ (np.array(s) * half) for s in itertools.product((-1, 1), repeat=3)]
    )


@pytest.mark.parametrize("size", [(96, 96), (64, 128)])
def test_projected_blocks_cover_the_pixels_the_renderer_draws_them_on(size):
    """Every block's eight projected corners span the same pixels as the block's geom in
    MuJoCo's segmentation image (to within a pixel), at a square and a wide image size."""
    h, w = size
    scene = Scene()
    projection = scene.camera_projection(names.SCENE_CAMERA, h, w)
    renderer = scene.renderer(h, w)
    renderer.enable_segmentation_rendering()
    renderer.update_scene(scene.data, camera=names.SCENE_CAMERA)
    seg = renderer.render()
    geom = int(scene.mujoco.mjtObj.mjOBJ_GEOM)
    compared = 0
    for block, gid in scene.ids.block_geom.items():
        rows, cols = np.nonzero((seg[..., 0] == gid) & (seg[..., 1] == geom))
        assert len(rows) > 20, f"{block} is not in the scene camera's view"
        uv = projection.pixels(_corners(scene, block))
        drawn = [cols.min(), cols.max() + 1, rows.min(), rows.max() + 1]  # pixel edges
        projected = [uv[:, 0].min(), uv[:, 0].max(), uv[:, 1].min(), uv[:, 1].max()]
        np.testing.assert_allclose(projected, drawn, atol=1.0, err_msg=str(block))
        compared += 1
    renderer.close()
    scene.close()
    assert compared == len(scene.ids.block_geom) == 8


def test_on_plane_inverts_pixels_for_a_known_height():
    scene = Scene()
    projection = scene.camera_projection(names.SCENE_CAMERA, 96, 96)
    rng = np.random.default_rng(0)
    points = np.column_stack(
        [rng.uniform(0.2, 0.7, 50), rng.uniform(-0.3, 0.3, 50), rng.uniform(0, 0.2, 50)]
    )
    back = projection.on_plane(projection.pixels(points), points[:, 2])
    np.testing.assert_allclose(back, points, atol=1e-9)
    scene.close()


def test_points_behind_the_camera_are_nan_and_bad_parameters_are_refused():
    cam = CameraProjection((0.0, 0.0, 1.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), 60.0, 48, 64)
    uv = cam.pixels(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))  # below: in front; above: behind
    np.testing.assert_allclose(uv[0], [32.0, 24.0])  # on the optical axis: the image centre
    assert np.isnan(uv[1]).all()
    with pytest.raises(ValueError, match="rotation matrix"):
        CameraProjection((0, 0, 0), ((2, 0, 0), (0, 1, 0), (0, 0, 1)), 60.0, 48, 64)
    with pytest.raises(ValueError, match="fovy_deg"):
        CameraProjection((0, 0, 0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), 180.0, 48, 64)
