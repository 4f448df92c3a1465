"""Key-driven generated surrogates (pool: generator): MobileStyleGAN from the random-face wheel.

Tests that need the generator extra skip where it is absent; make install puts it in, so CI runs them.
A face takes ~1.4 s on one core, so each test draws one or two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _face_helpers import KEY_A, KEY_B, embedding, same_person
from clinrelease.models import package_dir

ROOT = Path(__file__).resolve().parents[2]

needs_generator = pytest.mark.skipif(
    package_dir("openvino") is None or package_dir("random_face") is None,
    reason="the generator extra (openvino, random-face) is not installed",
)

#: latents of this key looked at: "p2" wears glasses, "p18" turns its head, "p5" passes (issue 18)
LOOKED_AT = b"k" * 32

#: a child process that refuses every network connection, then draws one patient's face
OFFLINE_FACE = textwrap.dedent(
    """
    import hashlib, json, socket, sys
    def refuse(*a, **k):
        raise OSError("network disabled in this test")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    from clinrelease.face.generator import generate_face
    face = generate_face(bytes.fromhex(sys.argv[1]), sys.argv[2])
    print(json.dumps({"attempt": face.attempt, "sha256": hashlib.sha256(face.donor.image.tobytes()).hexdigest()}))
    """
)


def _offline_face(key: bytes, pseudonym: str, home: Path) -> dict:
    # a HOME of its own: openvino and matplotlib write caches there
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", OFFLINE_FACE, key.hex(), pseudonym], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_generator
def test_generator_loads_offline_and_a_key_gives_the_same_face_in_another_process(tmp_path: Path) -> None:
    from clinrelease.face.generator import generate_face

    import hashlib

    there = _offline_face(KEY_A, "patient-1", tmp_path)  # another process, with no network
    here = generate_face(KEY_A, "patient-1")
    assert hashlib.sha256(here.donor.image.tobytes()).hexdigest() == there["sha256"] and here.attempt == there["attempt"]


@needs_generator
def test_two_keys_give_faces_recognizers_tell_apart() -> None:
    from clinrelease.face.generator import generate_face
    from clinrelease.face.surrogates import _shared_detector

    faces = [generate_face(key, "patient-1").donor.image for key in (KEY_A, KEY_B)]
    embs = [{n: embedding(n, f, box=_shared_detector().detect(f)[0].box) for n in ("dlib", "sface")} for f in faces]
    assert not np.array_equal(faces[0], faces[1])
    for n in ("dlib", "sface"):
        assert embs[0][n] is not None and embs[1][n] is not None
        assert not same_person(n, embs[0][n], embs[1][n]), n


@needs_generator
def test_a_patients_face_is_the_most_distinctive_of_its_first_vetted_latents() -> None:
    """Surrogates far from the generator's average face sit farther apart from each other: of the
    first CHOOSE_OF vetted latents, the one farthest from the average face is the patient's."""
    from clinrelease.face.generator import CHOOSE_OF, distinctiveness, generate_face, latent, shared_generator, vet

    gen = shared_generator()
    chosen = generate_face(KEY_A, "patient-2")
    vetted = []
    for attempt in range(64):
        image = gen.image(gen.style(latent(KEY_A, "patient-2", attempt)))
        verdict, donor = vet(image)
        if verdict.ok:
            vetted.append((attempt, distinctiveness(gen, image, donor)))
        if len(vetted) == CHOOSE_OF:
            break
    assert CHOOSE_OF >= 2 and len(vetted) == CHOOSE_OF
    assert chosen.attempt == max(vetted, key=lambda a: a[1])[0]
    assert len({round(d, 6) for _, d in vetted}) == CHOOSE_OF  # the faces differ in distinctiveness


@needs_generator
def test_vetting_rejects_glasses_and_a_turned_head_and_passes_a_plain_frontal_face() -> None:
    from clinrelease.face.generator import latent, shared_generator, vet

    gen = shared_generator()
    image = {p: gen.image(gen.style(latent(LOOKED_AT, p, 0))) for p in ("p2", "p18", "p5")}
    glasses, turned, plain = (vet(image[p])[0] for p in ("p2", "p18", "p5"))
    assert glasses.reason.startswith("glasses"), glasses
    assert turned.reason.startswith("turned head") or "not frontal" in turned.reason, turned
    assert plain.ok, plain
    # the patient's own embeddings make the same face a reject: it would not hide them
    from clinrelease.face.surrogates import _shared_detector

    box = _shared_detector().detect(image["p5"])[0].box
    patient = {n: embedding(n, image["p5"], box=box) for n in ("dlib", "sface")}
    verdict, donor = vet(image["p5"], [patient])
    assert verdict.reason.startswith("matches the patient") and donor is None


def _plant_over_forehead(frame: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], down_to: float) -> np.ndarray:
    """A copy of ``frame`` with a band of ``colour`` from above the head down to ``down_to`` of the
    way from the face outline's top to the brows (1 = onto the brows), with darker strands in it."""
    import cv2

    out = frame.copy()
    brows, top = points[[70, 105, 107, 336, 334, 300]], points[[54, 109, 10, 338, 284]]
    left, right = min(brows[:, 0].min(), top[:, 0].min()), max(brows[:, 0].max(), top[:, 0].max())
    height = float(points[152, 1] - points[10, 1])
    bottom = top[:, 1].mean() + down_to * (brows[:, 1].mean() - top[:, 1].mean())
    corners = np.array([[left, top[:, 1].min() - 0.3 * height], [right, top[:, 1].min() - 0.3 * height], [right, bottom], [left, bottom]])
    cv2.fillPoly(out, [np.round(corners).astype(np.int32)], colour)
    for x in np.arange(left, right, max(2.0, (right - left) / 25)):
        cv2.line(out, (int(x), int(corners[0, 1])), (int(x), int(bottom)), tuple(int(c * 0.6) for c in colour), 1)
    return out


def test_vetting_rejects_a_fringe_or_a_cap_planted_over_a_real_forehead(shared_media: Path) -> None:
    """A surrogate's fringe or cap would be swapped onto the patient's forehead: a real frame's bare
    forehead passes that check, and fails it once dark hair or a knitted cap covers the forehead."""
    from _face_helpers import clip_frames

    from clinrelease.face.generator import MIN_FOREHEAD_SKIN, face_measures, vet
    from clinrelease.face.surrogates import _donor_from_box, _shared_detector

    import cv2

    whole = clip_frames(str(shared_media / "asl" / "again.mkv"), 3, 10)[2]
    box = _shared_detector().detect(whole)[0].box.astype(int)
    cx, cy, r = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2, box[2] - box[0]
    # the face cropped and doubled, as a donor photo would frame it (the clip's face is about 80 px)
    frame = cv2.resize(np.ascontiguousarray(whole[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r]), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    bare, _ = vet(frame)
    assert "hair fringe or head covering over the forehead" not in bare.kinds, bare
    points = _donor_from_box(frame, _shared_detector().detect(frame)[0].box, "again", 80, "again").landmarks
    fringe = _plant_over_forehead(frame, points, (58, 38, 26), down_to=0.9)
    cap = _plant_over_forehead(frame, points, (34, 44, 96), down_to=0.6)
    for planted in (fringe, cap):
        verdict, donor = vet(planted)
        assert donor is None and "hair fringe or head covering over the forehead" in verdict.kinds, verdict
        # the forehead is part of the oval's periphery too: the face-skin check may see it as well
        added = set(verdict.kinds) - set(bare.kinds)
        assert "hair fringe or head covering over the forehead" in added <= {"hair fringe or head covering over the forehead", "hair or a beard over the face"}
        assert dict(verdict.measures)["forehead_skin"] < MIN_FOREHEAD_SKIN <= face_measures(frame, points)["forehead_skin"]


def test_vetting_finds_the_astronauts_own_fringe_among_all_its_reasons() -> None:
    """scikit-image's astronaut (a real portrait) smiles with her teeth showing and wears a fringe:
    the vetting names both, not only the first it met."""
    from _face_helpers import read_rgb

    from clinrelease.face.generator import vet
    from clinrelease.models import model_path

    verdict, donor = vet(read_rgb(model_path("sample_astronaut")))
    assert donor is None and verdict.kinds == ("open mouth", "hair fringe or head covering over the forehead", "hair or a beard over the face"), verdict.reasons


def _plant_over_temples(frame: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], reach: float) -> np.ndarray:
    """``frame`` with long hair hanging over both sides of the face, ``reach`` of the face's width
    in from the outline, from the brows down to the mouth, with darker strands in it."""
    import cv2

    out = frame.copy()
    left, right = float(points[234, 0]), float(points[454, 0])
    top, bottom = float(points[[70, 300], 1].min()), float(points[[61, 291], 1].max())
    width = right - left
    for x0, x1 in ((left - 0.1 * width, left + reach * width), (right - reach * width, right + 0.1 * width)):
        cv2.rectangle(out, (int(x0), int(top)), (int(x1), int(bottom)), colour, -1)
        for x in np.arange(x0, x1, 2.0):
            cv2.line(out, (int(x), int(top)), (int(x), int(bottom)), tuple(int(c * 0.6) for c in colour), 1)
    return out


def test_vetting_rejects_long_hair_over_the_sides_of_a_real_face(shared_media: Path) -> None:
    """Hair over the temples and cheeks is filled with the face's skin before a swap, and on a
    generated face those fills read as flat patches: a real frame passes, the same frame with long
    hair over both sides of the face fails the face-skin check (and only that one)."""
    from _face_helpers import clip_frames

    from clinrelease.face.generator import MIN_FACE_SKIN, vet
    from clinrelease.face.surrogates import _donor_from_box, _shared_detector

    import cv2

    whole = clip_frames(str(shared_media / "asl" / "again.mkv"), 3, 10)[2]
    box = _shared_detector().detect(whole)[0].box.astype(int)
    cx, cy, r = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2, box[2] - box[0]
    frame = cv2.resize(np.ascontiguousarray(whole[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r]), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    bare, _ = vet(frame)
    assert "hair or a beard over the face" not in bare.kinds and dict(bare.measures)["face_skin"] >= MIN_FACE_SKIN, bare
    points = _donor_from_box(frame, _shared_detector().detect(frame)[0].box, "again", 80, "again").landmarks
    verdict, donor = vet(_plant_over_temples(frame, points, (58, 38, 26), reach=0.2))
    assert donor is None and set(verdict.kinds) - set(bare.kinds) == {"hair or a beard over the face"}, verdict


@needs_generator
def test_generated_surrogate_swaps_like_a_donor_with_the_licence_in_profiles_show(tmp_path: Path) -> None:
    from _release_helpers import invoke

    from clinrelease.face.generator import LICENCE, GeneratorPool
    from clinrelease.face.pools import load_pool
    from clinrelease.face.surrogates import TEXTURE_SIZE

    pool = load_pool("generator")
    assert isinstance(pool, GeneratorPool)
    sur = pool.surrogate(KEY_A, "patient-1")
    assert sur.texture.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3) and sur.landmarks.shape == (478, 2)
    assert pool.surrogate(KEY_A, "patient-1") is sur
    profile = tmp_path / "gen.yaml"
    # carphone's face is ~40 px tall: with the default reach 0 the generated face's edge moved the
    # pose model's head points (head AP 0.44); the surrogate reaching past the outline keeps them
    profile.write_text("name: gen\nextends: pd_face\nanonymizer:\n  params:\n    pool: generator\n")
    shown = invoke(["profiles", "show", str(profile)])
    assert shown.exit_code == 0 and f"# licence: {LICENCE}" in shown.output
    assert json.loads(invoke(["profiles", "show", str(profile), "--json"]).output)["licence"] == LICENCE


@needs_generator
def test_the_next_surrogate_of_a_patients_sequence_is_another_generated_face() -> None:
    """When the key's first surrogate is too close to the patient, the swap draws the next of the
    keyed sequence; a generated pool must follow that sequence, not hand back the same face."""
    from clinrelease.face.pools import load_pool
    from clinrelease.face.swap import PATIENT, SwapAnonymizer

    pool = load_pool("generator")
    first, second = (SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=c, pool=pool).surrogate_for(PATIENT, 0) for c in (0, 1))
    assert first is pool.surrogate(KEY_A, "patient-1")  # counter 0: the surrogate earlier releases had
    assert not np.array_equal(first.texture, second.texture)


def test_generator_without_its_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinrelease.errors import MissingModelError
    from clinrelease.face import generator
    from clinrelease.face.pools import load_pool

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    generator.shared_generator.cache_clear()
    with pytest.raises(MissingModelError) as err:
        load_pool("generator")
    generator.shared_generator.cache_clear()
    assert "clinrelease[generator]" in err.value.message and "--no-deps random-face" in err.value.message
    assert "non-commercial" in err.value.message


@needs_generator
def test_a_release_with_generated_surrogates_names_the_licence_in_report_and_audit_record(tmp_path: Path) -> None:
    from _release_helpers import invoke, json_result, make_keys, summary

    from clinrelease.face.generator import LICENCE
    from clinrelease.fixtures import Identity, build_dicom_fixture, carphone_path

    keys = make_keys(tmp_path / "keys")
    (keys / "release.key").write_text(KEY_A.hex() + "\n")
    build_dicom_fixture(tmp_path / "in" / "face.dcm", carphone_path(), "h264", 8, identity=Identity())
    profile = tmp_path / "gen.yaml"
    profile.write_text(
        "name: gen\nextends: pd_face\nanonymizer:\n  params:\n    pool: generator\n    reach: 0.05\n"
        "verify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n"
    )
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(tmp_path / "in"), "-o", str(out), "-k", str(keys), "--json"])
    doc = json_result(result)
    item = summary(out)["items"][0]
    assert doc["counts"]["released"] == 1, item["reasons"]
    for name, rec in item["verification"]["recognizers"].items():
        assert rec["frames_checked"] >= 1 and rec["frames_matched"] == 0, (name, rec)
    assert summary(out)["surrogates"]["pool"]["licence"] == LICENCE
    html = (out / "report" / "index.html").read_text()
    assert "one generated face per patient" in html and "non-commercial" in html
    start = json.loads((out / "audit" / "log.jsonl").read_text().splitlines()[0])
    assert start["type"] == "release_start" and start["surrogate_generator"] == {"pool": "generator", "licence": LICENCE}
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0


@needs_generator
def test_a_generated_face_that_is_the_patient_is_skipped_the_same_way_in_two_releases(tmp_path: Path) -> None:
    """The key's first vetted face for this patient is filmed as the patient. The release hands the
    patient's embeddings to the generator, which skips that face; a second release that has forgotten
    the decision (a fresh key folder with the same release key, this process's faces dropped) skips it
    the same way, and the decision kept with the key names the latent every later item draws.

    The profile's SFace threshold is 0.6 here: at 384 px SFace puts any two generated faces 0.33-0.58
    apart (measured on this clip), so under 0.363 the screening tried all 24 candidates of the sequence
    (about eight minutes a release) and took the farthest; this is a test of the generator's skip,
    so the key's first counter must be the one decided."""
    import av
    import cv2

    from _release_helpers import invoke, json_result, make_keys, records

    from clinrelease.dicom.keyed import pseudonym
    from clinrelease.face.generator import GeneratorPool, generate_face
    from clinrelease.face.surrogate_choice import ChoiceStore
    from clinrelease.fixtures import Identity, build_dicom_fixture

    identity = Identity()
    patient = pseudonym(KEY_A, identity.patient_id)
    own = generate_face(KEY_A, patient)  # what the key gives this patient when nobody checks
    clip = tmp_path / "patient.mp4"
    face = cv2.resize(own.donor.image, (384, 384), interpolation=cv2.INTER_AREA)
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 384, 384, "yuv420p"
        for shift in range(8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(face, shift, axis=1)), format="rgb24")))
        container.mux(stream.encode())
    build_dicom_fixture(tmp_path / "in" / "face.dcm", clip, "h264", 8, identity=identity, burn_text=False)
    profile = tmp_path / "gen.yaml"
    profile.write_text(
        "name: gen\nextends: pd_face\nanonymizer:\n  params:\n    pool: generator\n"
        "verify:\n  recognizers:\n    sface: {threshold: 0.6, max_matched_fraction: 0.0}\n"
    )
    decisions = []
    for run in ("first", "second"):
        keys = make_keys(tmp_path / f"keys-{run}")
        (keys / "release.key").write_text(KEY_A.hex() + "\n")
        GeneratorPool._chosen.clear()
        GeneratorPool._faces.clear()
        out = tmp_path / f"release-{run}"
        doc = json_result(invoke(["run", "-p", str(profile), "-i", str(tmp_path / "in"), "-o", str(out), "-k", str(keys), "--json"]))
        record = records(out)[0]
        assert doc["counts"]["released"] == 1, record["reasons"]
        decision = record["faces"]["surrogate"]
        assert decision["decided"] == "measured" and ChoiceStore(keys, KEY_A).stored(patient).attempt == decision["attempt"]
        decisions.append((decision["counter"], decision["attempt"]))
    assert decisions[0] == decisions[1]
    counter, attempt = decisions[0]
    # the patient's own face was the key's first surrogate: the release drew another latent for it
    assert counter == 0 and attempt != own.attempt
