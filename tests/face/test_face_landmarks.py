"""The face mesh's mirror symmetry and the frontal view of a turned face, on real meshes."""

from __future__ import annotations

import numpy as np
import pytest
from _face_helpers import read_rgb

from clinrelease.face.detect import FaceDetector
from clinrelease.face.geometry import apply_affine, fit_similarity
from clinrelease.face.landmarks import MIDLINE_POINTS, N_POINTS, LandmarkModel, frontal_shape, mirror_permutation
from clinrelease.face.surrogates import default_pool, frontal_offset
from clinrelease.models import model_path


@pytest.fixture(scope="module")
def astronaut_mesh() -> np.ndarray:
    """The 3-D mesh of a near-frontal real face (scikit-image's astronaut)."""
    image = read_rgb(model_path("sample_astronaut"))
    (face,) = FaceDetector().detect(image)
    mesh = LandmarkModel().landmarks(image, face.box, depth=True)
    assert mesh is not None and mesh.shape == (N_POINTS, 3)
    return mesh.astype(np.float64)


def test_mirror_permutation_is_an_involution_that_maps_the_triangulation_onto_itself():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    perm = mirror_permutation()
    assert sorted(perm) == list(range(N_POINTS))
    assert np.array_equal(perm[perm], np.arange(N_POINTS))
    assert all(perm[i] == i for i in MIDLINE_POINTS)
    assert set(perm[list(MIDLINE_POINTS)]) == set(MIDLINE_POINTS) and np.sum(perm == np.arange(N_POINTS)) == len(MIDLINE_POINTS)
    left = {i for e in fmc.FACEMESH_LEFT_EYE for i in e}
    right = {i for e in fmc.FACEMESH_RIGHT_EYE for i in e}
    assert {int(perm[i]) for i in left} == right
    assert perm[468] == 473  # iris centres
    edges = {tuple(sorted(e)) for e in fmc.FACEMESH_TESSELATION}
    mapped = sum(tuple(sorted((int(perm[a]), int(perm[b])))) in edges for a, b in edges)
    # mediapipe's triangulation is symmetric but for six edges; a wrong pair would break dozens
    assert mapped >= len(edges) - 6


def test_mirrored_real_face_lies_on_the_face(astronaut_mesh):
    mesh = astronaut_mesh[:, :2]
    mirrored = mesh[mirror_permutation()] * [-1.0, 1.0]
    back = apply_affine(fit_similarity(mirrored, mesh), mirrored)
    eye_span = np.linalg.norm(mesh[33] - mesh[263])
    # a real face is nearly symmetric: each point lands near itself (a wrong pairing lands far off)
    assert np.median(np.linalg.norm(back - mesh, axis=1)) < 0.05 * eye_span


@pytest.mark.parametrize("yaw_degrees", [-25.0, 15.0, 30.0])
def test_frontal_shape_undoes_a_head_turn(astronaut_mesh, yaw_degrees):
    front = frontal_shape(astronaut_mesh)
    t = np.radians(yaw_degrees)
    turn = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    centre = astronaut_mesh.mean(axis=0)
    turned = (astronaut_mesh - centre) @ turn.T + centre
    eye_span = np.linalg.norm(front[33] - front[263])
    # seen in 2-D, the turn moves the face's points by a large fraction of the eye span ...
    plain = turned[:, :2]
    assert np.median(np.linalg.norm(apply_affine(fit_similarity(plain, front), plain) - front, axis=1)) > 0.02 * eye_span
    assert abs(frontal_offset(plain)) > abs(frontal_offset(front)) + 0.1
    # ... and the frontal view of the turned mesh is the frontal view of the original
    again = frontal_shape(turned)
    residual = np.linalg.norm(apply_affine(fit_similarity(again, front), again) - front, axis=1)
    assert np.max(residual) < 0.01 * eye_span


def test_frontal_shape_needs_depth():
    with pytest.raises(ValueError, match="478, 3"):
        frontal_shape(np.zeros((N_POINTS, 2)))


def test_donors_are_mixed_as_seen_from_the_front(tmp_path):
    """Tom Hanks' portrait is turned (nose 0.21 eye spans off the eyes' midpoint): a composite of
    turned shapes squashes one side of every face it is put on (streaks along that cheek)."""
    import shutil

    from clinrelease.face.surrogates import DonorPool
    from clinrelease.models import package_dir

    shutil.copy(package_dir("insightface") / "data/images/Tom_Hanks_54745.png", tmp_path / "hanks.png")
    shutil.copy(model_path("sample_astronaut"), tmp_path / "astronaut.png")
    donors = {d.donor_id: d for d in [*DonorPool.load(tmp_path).donors, *default_pool().donors]}
    hanks = donors["hanks"]
    assert abs(frontal_offset(hanks.landmarks)) > 0.15
    assert abs(frontal_offset(hanks.shape)) < 0.6 * abs(frontal_offset(hanks.landmarks))
    offsets = [abs(frontal_offset(d.shape)) for d in donors.values()]
    assert np.mean(offsets) < np.mean([abs(frontal_offset(d.landmarks)) for d in donors.values()])
