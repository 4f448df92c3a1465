"""Release profiles: the shipped profiles, ``extends``, schema errors, lookup and the digest."""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from pathlib import Path

import pytest
import rfc8785
import yaml

from clinrelease.errors import ConfigError
from clinrelease.profiles import (
    PROFILE_PATH_ENV,
    Profile,
    ProfileError,
    find_profile,
    list_profiles,
    load_profile,
    merge,
    profile_dirs,
    validate_profile,
)

SHIPPED = ("basic", "pd_gait", "pd_face", "pd_motor")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path | str) -> list[str]:
    return [str(p) for p in validate_profile(path)]


# --- the shipped profiles -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_is_documented(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.description
    assert profile.source == find_profile(name)
    # each profile explains itself to a newcomer in comments
    assert profile.source.read_text().lstrip().startswith(f"# {name}:")
    assert validate_profile(name) == []


def test_list_profiles_shows_the_shipped_ones_with_their_parents() -> None:
    infos = {i.name: i for i in list_profiles()}
    assert set(SHIPPED) <= set(infos)
    assert infos["pd_face"].extends == "pd_gait"
    assert infos["pd_motor"].extends == "pd_gait"
    assert infos["basic"].extends is None
    assert all(i.description for i in infos.values())
    # the shipped folder is the repository's top-level profiles/
    assert Path(__file__).resolve().parents[1] / "profiles" in [d.resolve() for d in profile_dirs()]


def test_basic_is_header_only() -> None:
    basic = load_profile("basic")
    assert basic.deid.options == ()
    assert basic.faces.enabled is False
    assert basic.anonymizer is None
    assert dict(basic.verify.recognizers) == {}
    assert basic.verify.leak_scan is True
    assert basic.verify.ocr.enabled is False and basic.verify.residual_faces is False
    assert basic.verify.gallery is None


def test_pd_gait_keeps_characteristics_swaps_faces_and_checks_body_and_legs() -> None:
    gait = load_profile("pd_gait")
    assert set(gait.deid.options) == {
        "retain_patient_characteristics",
        "retain_long_modified_dates",
        "clean_pixel_data",
        "clean_recognizable_visual_features",
    }
    assert gait.faces.enabled and gait.anonymizer is not None and gait.anonymizer.name == "swap"
    assert gait.verify.keypoints.body_ap_min >= 0.95
    assert gait.verify.keypoints.legs_ap_min >= 0.95
    assert gait.verify.recognizers["dlib"].threshold == 0.6
    assert gait.verify.recognizers["sface"].threshold == 0.363
    assert gait.verify.ocr.enabled and gait.verify.leak_scan and gait.verify.residual_faces


def test_pd_face_inherits_from_pd_gait_and_weighs_the_face() -> None:
    gait, face = load_profile("pd_gait"), load_profile("pd_face")
    assert face.extends == "pd_gait"
    assert face.chain == (find_profile("pd_gait").resolve(), find_profile("pd_face").resolve())
    assert face.deid == gait.deid  # inherited whole
    assert face.verify.recognizers == gait.verify.recognizers  # as strict as the parent
    # the face's movement is judged, not its shape (which the swap changes on purpose)
    kp = face.verify.keypoints
    assert kp.face_nme_max is None and kp.face_expression_nme_max is not None and kp.face_expression_nme_max <= 0.05
    assert kp.legs_ap_min is None  # switched off with null
    # the full swap, as in the parent, and its other parameters
    assert face.anonymizer.identity_strength == gait.anonymizer.identity_strength
    assert face.anonymizer.pool == gait.anonymizer.pool
    # the face is the signal: the patient's own shape around the lips, hands in front of it kept
    assert face.anonymizer.params["mouth_reach"] > 0 and "mouth_reach" not in gait.anonymizer.params
    assert face.faces.keep_hands and not gait.faces.keep_hands
    # clinical columns merge: the parent's rules plus the facial-exam scores
    assert face.clinical.columns["updrs_part3"] == "keep"
    assert face.clinical.columns["updrs_3_2_facial_expression"] == "keep"


def test_pd_motor_checks_arms() -> None:
    motor = load_profile("pd_motor")
    assert motor.verify.keypoints.arms_ap_min >= 0.95
    assert motor.faces.keep_hands  # finger-to-nose: the hand crosses the face
    assert motor.verify.keypoints.legs_ap_min is None
    assert motor.deid == load_profile("pd_gait").deid


def test_profile_is_frozen() -> None:
    profile = load_profile("pd_gait")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.anonymizer.params["identity_strength"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        profile.clinical.columns["sex"] = "drop"  # type: ignore[index]


def test_clinical_actions_default_to_drop_and_pseudonymize_the_id() -> None:
    clinical = load_profile("pd_gait").clinical
    assert clinical.action_for("patient_id") == "pseudonymize"
    assert clinical.action_for("visit_date") == "date_shift"
    assert clinical.action_for("a_column_nobody_reviewed") == "drop"


# --- extends --------------------------------------------------------------------------------------


def test_merge_child_wins_lists_replace_null_switches_off() -> None:
    parent = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1, "f": 2}}, "g": 1}
    child = {"a": {"c": [3], "d": {"f": 5}}, "g": None}
    assert merge(parent, child) == {"a": {"b": 1, "c": [3], "d": {"e": 1, "f": 5}}, "g": None}
    assert parent["a"]["c"] == [1, 2]  # inputs untouched


def test_extends_a_shipped_profile_from_another_folder(tmp_path: Path) -> None:
    site = write(
        tmp_path,
        "site_gait.yaml",
        """\
        name: site_gait
        description: our gait protocol
        extends: pd_gait
        deid:
          options: [retain_patient_characteristics]   # lists replace the parent's
        anonymizer:
          params: {identity_strength: 0.7}            # k_donors and pool stay inherited
        verify:
          recognizers:
            sface: null                               # drop an inherited recognizer
            dlib: {max_matched_fraction: 0.05}        # threshold stays inherited
          gallery: null
        """,
    )
    profile = load_profile(site)
    gait = load_profile("pd_gait")
    assert profile.name == "site_gait" and profile.description == "our gait protocol"
    assert profile.deid.options == ("retain_patient_characteristics",)
    assert profile.anonymizer.identity_strength == 0.7
    assert profile.anonymizer.k_donors == gait.anonymizer.k_donors
    assert set(profile.verify.recognizers) == {"dlib"}
    assert profile.verify.recognizers["dlib"].threshold == 0.6
    assert profile.verify.recognizers["dlib"].max_matched_fraction == 0.05
    assert profile.verify.gallery is None
    assert profile.verify.keypoints == gait.verify.keypoints


def test_extends_finds_a_sibling_file_first(tmp_path: Path) -> None:
    write(tmp_path, "pd_gait.yaml", "name: pd_gait\ndescription: local parent\noutput: {syntax: hevc}\n")
    child = write(tmp_path, "child.yaml", "name: child\nextends: pd_gait\n")
    assert load_profile(child).output.syntax == "hevc"


def test_profile_path_env_adds_folders_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "site_motor.yaml", "name: site_motor\ndescription: site motor\nextends: pd_motor\n")
    with pytest.raises(ConfigError, match="no profile named 'site_motor'"):
        load_profile("site_motor")
    monkeypatch.setenv(PROFILE_PATH_ENV, str(tmp_path))
    assert load_profile("site_motor").verify.keypoints == load_profile("pd_motor").verify.keypoints
    assert "site_motor" in [i.name for i in list_profiles()]
    # a broken file is still listed, with its problem, so `profiles list` never fails on one file
    write(tmp_path, "broken.yaml", "name: [unclosed\n")
    write(tmp_path, "_block.yaml", "name: _block\n")
    infos = {i.name: i for i in list_profiles()}
    assert infos["broken"].description.startswith("(unreadable: ")
    assert "_block" not in infos and "_block" in [i.name for i in list_profiles(include_hidden=True)]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("pd_giat")
    assert "no profile named 'pd_giat'" in str(info.value)
    assert "pd_gait" in str(info.value) and PROFILE_PATH_ENV in str(info.value)


# --- errors ---------------------------------------------------------------------------------------


def test_out_of_range_value_names_file_key_and_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "x.yaml", "name: x\nanonymizer:\n  params: {identity_strength: 1.5}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == "x.yaml: anonymizer.params.identity_strength: 1.5 is not between 0 and 1"
    assert info.value.exit_code == 2


def test_an_anonymizer_parameter_typo_fails_when_the_profile_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap's parameters are declared once (clinrelease.face.params.SwapParams): a misspelt or
    out-of-range one is named with the file and key before any item runs."""
    monkeypatch.chdir(tmp_path)
    typo = write(tmp_path, "typo.yaml", "name: typo\nextends: pd_face\nanonymizer:\n  params: {mouth_reech: 0.1}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(typo)
    assert str(info.value).startswith("typo.yaml: anonymizer.params.mouth_reech: unknown key (allowed here: identity_strength, k_donors, pool, ")
    assert "mouth_reach" in str(info.value)
    wide = write(tmp_path, "wide.yaml", "name: wide\nanonymizer:\n  params: {mouth_reach: 0.9, k_donors: 2.5, model_after_run: shred}\n")
    assert sorted(problems_of(wide)) == [
        "wide.yaml: anonymizer.params.k_donors: 2.5 is not an integer",
        "wide.yaml: anonymizer.params.model_after_run: 'shred' is not allowed (allowed: keep, delete, escrow)",
        "wide.yaml: anonymizer.params.mouth_reach: 0.9 is not between 0 and 0.5",
    ]
    # a baseline that inherits the swap's parameters keeps them (a bystander swap takes them), and
    # a plug-in's own parameters are its constructor's to judge
    assert problems_of(write(tmp_path, "blur.yaml", "name: b\nextends: pd_gait\nanonymizer: {name: blur}\nverify: {face_realism: null}\n")) == []
    assert load_profile("pd_face").anonymizer.params["mouth_reach"] == 0.15


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        name: bad
        extends: pd_gait
        anonymizer:
          name: swpa
          bystandr: blur
        deid:
          options: [retain_uids, retain_everything]
          keep: [PatientNme, "(0010,0040)", PatientSex]
        verify:
          recognizers:
            sface: {max_matched_fraction: 2}
            arcface: {max_matched_fraction: 0.0}
          keypoints: {body_ap_min: high}
        output: {syntax: h265}
        """,
    )
    problems = problems_of(path)
    file = str(path)
    expected = [
        f"{file}: anonymizer.bystandr: unknown key (allowed here: bystander, name, params)",
        f"{file}: deid.options[1]: 'retain_everything' is not allowed",
        f"{file}: output.syntax: 'h265' is not allowed (allowed: h264, mpeg2, hevc, jpeg, native)",
        f"{file}: verify.keypoints.body_ap_min: 'high' is not a number or null",
        f"{file}: verify.recognizers.sface.max_matched_fraction: 2 is not between 0 and 1",
        f"{file}: verify.recognizers.arcface.threshold: is required",
        f"{file}: anonymizer.name: 'swpa' is not a known anonymizer (built in: swap, blur, pixelate, mask, textured_blur;",
        f"{file}: deid.keep[0]: 'PatientNme' is not a DICOM keyword",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{len(expected)} problems in the profile:")


def test_cross_section_rules(tmp_path: Path) -> None:
    no_faces = write(
        tmp_path,
        "a.yaml",
        "name: a\ndeid: {options: [clean_recognizable_visual_features, retain_long_full_dates, retain_long_modified_dates]}\n"
        "faces: {enabled: false}\nanonymizer: null\n",
    )
    problems = problems_of(no_faces)
    assert any("clean_recognizable_visual_features needs faces.enabled: true" in p for p in problems)
    assert any("retain_long_full_dates and retain_long_modified_dates exclude each other" in p for p in problems)
    faces_without_anonymizer = write(tmp_path, "b.yaml", "name: b\nanonymizer: null\nverify: {recognizers: {}}\n")
    problems = problems_of(faces_without_anonymizer)
    assert any(p.endswith("anonymizer: faces.enabled is true but no anonymizer is set") for p in problems)
    assert any("no recognizer would check the faces" in p for p in problems)
    crf = write(tmp_path, "d.yaml", "name: d\noutput: {syntax: h264, quality: 60}\n")
    assert problems_of(crf) == [f"{crf}: output.quality: 60 is not between 0 and 51 (a CRF for h264)"]


def test_broken_files(tmp_path: Path) -> None:
    syntax = write(tmp_path, "syntax.yaml", "name: s\nfaces: {enabled: true\n")
    [problem] = problems_of(syntax)
    assert problem.startswith(f"{syntax}: line ") and "not valid YAML" in problem
    listing = write(tmp_path, "list.yaml", "- a\n- b\n")
    assert problems_of(listing) == [f"{listing}: a profile is a mapping of sections, not a list"]
    assert problems_of(tmp_path / "missing.yaml") == [f"{tmp_path / 'missing.yaml'}: no such profile file"]
    orphan = write(tmp_path, "orphan.yaml", "name: orphan\nextends: no_such_parent\n")
    [problem] = problems_of(orphan)
    assert problem.startswith(f"{orphan}: extends: no profile named 'no_such_parent'")


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", "name: one\nextends: two\n")
    two = write(tmp_path, "two.yaml", "name: two\nextends: one\n")
    [problem] = problems_of(two)
    assert "profiles extend each other in a cycle" in problem


def test_a_parents_problems_are_reported_under_the_parents_file(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", "name: parent\nfaces: {min_face_px: 0}\n")
    child = write(tmp_path, "child.yaml", "name: child\nextends: parent\n")
    assert problems_of(child) == [f"{parent}: faces.min_face_px: 0 must be at least 1"]



def test_the_small_face_and_turned_face_choices_are_declared_and_checked(tmp_path: Path) -> None:
    from clinrelease.profiles import load_profile

    good = write(tmp_path, "good.yaml", "name: good\nextends: pd_gait\nfaces: {small_face: textured_blur, profile_view: quarantine, profile_yaw: 0.3}\n")
    faces = load_profile(str(good)).faces
    assert (faces.small_face, faces.profile_view, faces.profile_yaw) == ("textured_blur", "quarantine", 0.3)
    bad = write(tmp_path, "bad.yaml", "name: bad\nfaces: {small_face: pixelate, profile_view: hide}\n")
    problems = problems_of(bad)
    assert any("faces.small_face: 'pixelate' is not allowed (allowed: upscaled_swap, textured_blur, swap)" in p for p in problems), problems
    assert any("faces.profile_view: 'hide' is not allowed (allowed: blur, swap_anyway, quarantine)" in p for p in problems), problems

# --- digest ---------------------------------------------------------------------------------------


def test_digest_is_the_canonical_json_of_the_resolved_profile(tmp_path: Path) -> None:
    gait = load_profile("pd_gait")
    assert gait.digest == "sha256:" + hashlib.sha256(rfc8785.dumps(gait.to_dict())).hexdigest()
    assert load_profile("pd_gait").digest == gait.digest
    assert len({load_profile(n).digest for n in SHIPPED}) == len(SHIPPED)
    # the resolved profile written back out (as `profiles show` prints it) resolves to the same digest,
    # whatever its comments, key order or location
    resolved = tmp_path / "resolved.yaml"
    data = load_profile("pd_face").to_dict()
    resolved.write_text("# a copy\n" + yaml.safe_dump(dict(reversed(list(data.items())))), encoding="utf-8")
    assert load_profile(resolved).digest == load_profile("pd_face").digest
    # and any change of a setting changes it
    data["verify"]["recognizers"]["sface"]["threshold"] = 0.4
    resolved.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_profile(resolved).digest != load_profile("pd_face").digest


def test_to_dict_spells_out_every_default(tmp_path: Path) -> None:
    minimal = write(tmp_path, "minimal.yaml", "name: minimal\n")
    profile = load_profile(minimal)
    assert profile == Profile(name="minimal", source=minimal)  # privacy-first defaults
    data = profile.to_dict()
    assert data["anonymizer"]["name"] == "swap"
    assert set(data["verify"]["recognizers"]) == {"dlib", "sface"}
    assert data["verify"]["leak_scan"] is True and data["faces"]["enabled"] is True


def test_face_realism_is_inherited_switched_off_and_refused_where_no_face_is_released(tmp_path: Path) -> None:
    """pd_face and pd_motor judge released faces as pd_gait does; a site that blurs faces gets a
    readable problem instead of quarantining every item, and may switch the check off."""
    gait = load_profile("pd_gait").verify.face_realism
    assert gait is not None and gait.score_ratio_min == 0.9 and gait.mesh_presence_min == 0.95
    assert load_profile("pd_motor").verify.face_realism == gait
    assert load_profile("pd_face").verify.face_realism == dataclasses.replace(gait, mouth_correlation_min=0.5, mouth_opening_change_max=0.05)
    assert load_profile("basic").verify.face_realism is None
    blur = write(tmp_path, "blur.yaml", "name: blur\nextends: pd_gait\nanonymizer: {name: blur}\n")
    assert any("verify.face_realism" in p and "the blur anonymizer leaves none" in p for p in problems_of(blur))
    off = write(tmp_path, "site_blur.yaml", "name: site_blur\nextends: pd_gait\nanonymizer: {name: blur}\nverify: {face_realism: null}\n")
    assert problems_of(off) == [] and load_profile(off).verify.face_realism is None
    looser = write(tmp_path, "loose.yaml", "name: loose\nextends: pd_gait\nverify: {face_realism: {corner_lift_max: null}}\n")
    assert load_profile(looser).verify.face_realism.corner_lift_max is None
    assert load_profile(looser).verify.face_realism.score_ratio_min == 0.9
