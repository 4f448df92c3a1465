"""Escrow and authorized reversal with real keys, real AES-GCM/HPKE/RSA-OAEP and real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from clinrelease.audit.chain import check_chain, read_log, record_reversal
from clinrelease.crypto.escrow import EscrowError, Vault, VaultEntryError, reverse
from clinrelease.crypto.keys import create_custodian, init_keys, load_custodian_private
from clinrelease.crypto.protect import Argon2Cost
from clinrelease.errors import ConfigError, InputError

PASS = "correct horse battery staple"
#: these tests exercise escrow, not the KDF (test_crypto_keys checks the default cost): a cheap one
FAST_KDF = Argon2Cost(memory_kib=1024, iterations=1, lanes=1)
SMALL_CHUNK = 4096


@pytest.fixture(scope="module")
def custodians(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three custodians: two X25519, one RSA-3072; plus an outsider who is never escrowed to."""
    folder = tmp_path_factory.mktemp("custodians")
    return {
        "alice": create_custodian("alice", folder, PASS, cost=FAST_KDF),
        "bob": create_custodian("bob", folder, PASS, kind="rsa3072", cost=FAST_KDF),
        "carol": create_custodian("carol", folder, PASS, cost=FAST_KDF),
        "mallory": create_custodian("mallory", folder, PASS, cost=FAST_KDF),
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _release_copy(original: Path, folder: Path) -> tuple[Path, str]:
    """A stand-in for the released output: a de-identified DICOM copy, or different bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    released = folder / (original.stem + ".released" + original.suffix)
    if original.suffix == ".dcm":
        dataset = pydicom.dcmread(original)
        dataset.PatientName = "ANON"
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(released)
        return released, str(dataset.SOPInstanceUID)
    released.write_bytes(b"released:" + hashlib.sha256(original.read_bytes()).digest())
    return released, "2.25." + str(int.from_bytes(os.urandom(8), "big"))


def _escrow(vault_dir: Path, originals: list[Path], pubs: list[Path], release_id: str = "rel-1",
            chunk_size: int = SMALL_CHUNK, m_of_n: int | None = None) -> list[tuple[Path, Path]]:
    """Escrow originals; returns (original, released file) pairs."""
    pairs = []
    with Vault(vault_dir).open_release(release_id, pubs, m_of_n=m_of_n, chunk_size=chunk_size) as session:
        for original in originals:
            released, uid = _release_copy(original, vault_dir.parent / f"out-{release_id}")
            session.escrow(original, uid, _sha(released))
            pairs.append((original, released))
    return pairs


@pytest.mark.parametrize("size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK + 5])
def test_reversal_is_bit_exact_for_chunk_boundaries(tmp_path: Path, custodians: dict, size: int) -> None:
    original = tmp_path / f"orig{size}.bin"
    original.write_bytes(os.urandom(size))
    [(orig, released)] = _escrow(tmp_path / "vault", [original], [custodians["alice"].public_path])
    result = reverse(released, tmp_path / "vault", custodians["alice"].private_path, PASS, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == orig.read_bytes()
    assert result.original_sha256 == _sha(orig) and result.original_size == size
    blob = next((tmp_path / "vault" / "rel-1" / "objects").glob("*.bin"))
    chunks = max(1, -(-size // SMALL_CHUNK))
    assert blob.stat().st_size == size + chunks * 28  # nonce + tag per chunk: the file was really chunked


def test_reversal_of_a_file_larger_than_the_default_chunk(tmp_path: Path, custodians: dict) -> None:
    original = tmp_path / "big.bin"
    original.write_bytes(os.urandom(9 * 1024 * 1024 + 123))
    [(_, released)] = _escrow(tmp_path / "vault", [original], [custodians["bob"].public_path], chunk_size=4 * 1024 * 1024)
    reverse(released, tmp_path / "vault", custodians["bob"].private_path, PASS, tmp_path / "back.bin")
    assert _sha(tmp_path / "back.bin") == _sha(original)


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm"]
)
def test_reversal_of_real_dicom_in_several_transfer_syntaxes(tmp_path: Path, custodians: dict, name: str) -> None:
    source = get_testdata_file(name)
    if source is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    original = tmp_path / name
    shutil.copyfile(source, original)
    [(_, released)] = _escrow(tmp_path / "vault", [original], [custodians["alice"].public_path, custodians["bob"].public_path])
    for who in ("alice", "bob"):  # either custodian alone can reverse a 1-of-N escrow
        back = tmp_path / f"{who}.dcm"
        reverse(released, tmp_path / "vault", custodians[who].private_path, PASS, back)
        assert back.read_bytes() == original.read_bytes()
        assert pydicom.dcmread(back).SOPInstanceUID == pydicom.dcmread(original).SOPInstanceUID


def test_reversal_of_a_real_mp4(tmp_path: Path, custodians: dict, shared_media: Path) -> None:
    original = shared_media / "one-by-one-person-detection.mp4"
    if not original.is_file():
        pytest.skip(f"{original} is not present")
    [(_, released)] = _escrow(tmp_path / "vault", [original], [custodians["alice"].public_path], chunk_size=1 << 20)
    reverse(released, tmp_path / "vault", custodians["alice"].private_path, PASS, tmp_path / "back.mp4")
    assert _sha(tmp_path / "back.mp4") == _sha(original)


@pytest.fixture
def escrowed(tmp_path: Path, custodians: dict) -> dict:
    """Two originals (one spanning several chunks) escrowed to alice and bob."""
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(os.urandom(3 * SMALL_CHUNK + 17))
    second.write_bytes(os.urandom(SMALL_CHUNK // 2))
    pairs = _escrow(tmp_path / "vault", [first, second], [custodians["alice"].public_path, custodians["bob"].public_path])
    return {"vault": tmp_path / "vault", "pairs": pairs, "tmp": tmp_path}


def _no_output(folder: Path, name: str = "back.bin") -> None:
    assert not (folder / name).exists()
    assert not list(folder.glob(".*.partial")), "a failed reversal left a temporary file"


def test_wrong_custodian_key_fails_cleanly(escrowed: dict, custodians: dict) -> None:
    released = escrowed["pairs"][0][1]
    with pytest.raises(ConfigError, match="not one release rel-1 was escrowed to"):
        reverse(released, escrowed["vault"], custodians["mallory"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def test_wrong_and_missing_passphrase_fail_cleanly(escrowed: dict, custodians: dict) -> None:
    released = escrowed["pairs"][0][1]
    with pytest.raises(ConfigError, match="wrong passphrase"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, "nope", escrowed["tmp"] / "back.bin")
    with pytest.raises(ConfigError, match="no passphrase"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, None, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_tampered_vault_chunk_is_detected_and_nothing_written(escrowed: dict, custodians: dict, where: str) -> None:
    original, released = escrowed["pairs"][0]
    blob = escrowed["vault"] / "rel-1" / "objects" / f"{_sha(released)}.bin"
    data = bytearray(blob.read_bytes())
    record = SMALL_CHUNK + 28
    offset = {"first": 20, "middle": record + 100, "last": len(data) - 3}[where]
    data[offset] ^= 0x01
    blob.write_bytes(bytes(data))
    index = {"first": 0, "middle": 1, "last": 3}[where]
    with pytest.raises(EscrowError, match=f"chunk {index} of the encrypted original fails authentication"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def test_truncated_and_reordered_chunks_are_detected(escrowed: dict, custodians: dict) -> None:
    _, released = escrowed["pairs"][0]
    blob = escrowed["vault"] / "rel-1" / "objects" / f"{_sha(released)}.bin"
    pristine = blob.read_bytes()
    record = SMALL_CHUNK + 28
    blob.write_bytes(pristine[: 3 * record])  # drop the final chunk: chunk 2 was not the final one
    with pytest.raises(EscrowError, match="chunk 2 .* fails authentication"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    blob.write_bytes(pristine[record : 2 * record] + pristine[:record] + pristine[2 * record :])
    with pytest.raises(EscrowError, match="chunk 0 .* fails authentication"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def test_object_moved_into_another_release_fails(escrowed: dict, custodians: dict, tmp_path: Path) -> None:
    """Copy release 1's entry into release 2's folder: the entry MAC, and for a legacy entry the AAD, bind the release id."""
    other = tmp_path / "other.bin"
    other.write_bytes(b"x" * 100)
    _escrow(escrowed["vault"], [other], [custodians["alice"].public_path], release_id="rel-2")
    _, released = escrowed["pairs"][1]
    digest = _sha(released)
    source = escrowed["vault"] / "rel-1" / "objects"
    target = escrowed["vault"] / "rel-2" / "objects"
    entry = json.loads((source / f"{digest}.json").read_text())
    entry["release_id"] = "rel-2"
    entry["wrap_id"] = next((escrowed["vault"] / "rel-2" / "keys").glob("*.json")).stem
    (target / f"{digest}.json").write_text(json.dumps(entry))
    shutil.copyfile(source / f"{digest}.bin", target / f"{digest}.bin")
    shutil.rmtree(escrowed["vault"] / "rel-1")
    with pytest.raises(VaultEntryError, match="not authentic"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])
    (target / f"{digest}.json").write_text(json.dumps(_legacy(entry)))
    with pytest.raises(EscrowError, match="fails authentication"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def test_file_from_another_release_is_not_found(escrowed: dict, custodians: dict, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.dcm"
    stranger.write_bytes(os.urandom(500))
    with pytest.raises(EscrowError, match="no escrowed original for this file"):
        reverse(stranger, escrowed["vault"], custodians["alice"].private_path, PASS, tmp_path / "back.bin")
    _no_output(tmp_path)


def test_released_dicom_changed_after_release_is_named(tmp_path: Path, custodians: dict) -> None:
    original = tmp_path / "CT_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), original)
    [(_, released)] = _escrow(tmp_path / "vault", [original], [custodians["alice"].public_path])
    dataset = pydicom.dcmread(released)
    dataset.StudyDescription = "edited"
    dataset.save_as(released)
    with pytest.raises(EscrowError, match="changed since it was released"):
        reverse(released, tmp_path / "vault", custodians["alice"].private_path, PASS, tmp_path / "back.dcm")


def test_edited_entry_digest_is_detected(escrowed: dict, custodians: dict) -> None:
    _, released = escrowed["pairs"][1]
    entry_path = escrowed["vault"] / "rel-1" / "objects" / f"{_sha(released)}.json"
    entry = json.loads(entry_path.read_text())
    entry["original_sha256"] = "0" * 64
    entry_path.write_text(json.dumps(entry))
    with pytest.raises(VaultEntryError, match="not authentic"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])
    entry_path.write_text(json.dumps(_legacy(entry)))  # without a MAC, the decrypted digest still catches it
    with pytest.raises(EscrowError, match="differs from the escrowed"):
        reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def _legacy(entry: dict) -> dict:
    """The entry as clinrelease wrote it before entries carried a MAC (format /1)."""
    return {**{k: v for k, v in entry.items() if k != "mac"}, "format": "clinrelease-escrow-object/1"}


def _swap(first: Path, second: Path) -> None:
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


@pytest.mark.parametrize("legacy", [False, True], ids=["entry-with-mac", "legacy-entry"])
def test_swapped_vault_entries_are_refused_then_round_trip_once_put_back(escrowed: dict, custodians: dict, legacy: bool) -> None:
    """Swapping two patients' entry files used to restore the other patient's original with exit 0."""
    objects = escrowed["vault"] / "rel-1" / "objects"
    (first_original, first), (second_original, second) = escrowed["pairs"]
    entries = [objects / f"{_sha(released)}.json" for released in (first, second)]
    if legacy:
        for path in entries:
            path.write_text(json.dumps(_legacy(json.loads(path.read_text()))))
    _swap(*entries)
    for released in (first, second):
        with pytest.raises(VaultEntryError, match="does not belong to .*swapped or edited"):
            reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
        _no_output(escrowed["tmp"])
    _swap(*(path.with_suffix(".bin") for path in entries))  # the blobs too: the entries then name their blobs again
    with pytest.raises(VaultEntryError, match="does not belong"):
        reverse(first, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])
    _swap(*entries)
    _swap(*(path.with_suffix(".bin") for path in entries))
    for i, (original, released) in enumerate(((first_original, first), (second_original, second))):
        result = reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / f"ok{i}.bin")
        assert (escrowed["tmp"] / f"ok{i}.bin").read_bytes() == original.read_bytes()
        assert result.entry_authenticated is not legacy


def test_entry_rewritten_to_name_the_file_it_was_swapped_onto_is_not_authentic(escrowed: dict, custodians: dict) -> None:
    """The swap plus an edit that makes the entry claim the file's digest: the MAC catches it."""
    objects = escrowed["vault"] / "rel-1" / "objects"
    (_, first), (_, second) = escrowed["pairs"]
    forged = json.loads((objects / f"{_sha(second)}.json").read_text())
    forged.update(object_id=_sha(first), output_sha256=_sha(first))
    (objects / f"{_sha(first)}.json").write_text(json.dumps(forged))
    with pytest.raises(VaultEntryError, match="not authentic"):
        reverse(first, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / "back.bin")
    _no_output(escrowed["tmp"])


def test_released_dicom_whose_uid_differs_from_its_entry_is_refused(tmp_path: Path, custodians: dict) -> None:
    original = tmp_path / "CT_small.dcm"
    shutil.copyfile(get_testdata_file("CT_small.dcm"), original)
    with Vault(tmp_path / "vault").open_release("rel-1", [custodians["alice"].public_path], chunk_size=SMALL_CHUNK) as session:
        released, _ = _release_copy(original, tmp_path / "out")
        session.escrow(original, "2.25.12345", _sha(released))  # escrowed under another instance's UID
    with pytest.raises(VaultEntryError, match="SOP Instance UID 2.25.12345, this file has"):
        reverse(released, tmp_path / "vault", custodians["alice"].private_path, PASS, tmp_path / "back.dcm")


def test_crypto_shredding_makes_reversal_impossible(escrowed: dict, custodians: dict) -> None:
    removed = Vault(escrowed["vault"]).shred("rel-1")
    assert removed and not any(p.exists() for p in removed)
    with pytest.raises(EscrowError, match="crypto-shredded"):
        reverse(escrowed["pairs"][0][1], escrowed["vault"], custodians["bob"].private_path, PASS, escrowed["tmp"] / "back.bin")


def test_existing_output_is_not_overwritten(escrowed: dict, custodians: dict) -> None:
    target = escrowed["tmp"] / "exists.bin"
    target.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists"):
        reverse(escrowed["pairs"][0][1], escrowed["vault"], custodians["alice"].private_path, PASS, target)
    assert target.read_bytes() == b"keep me"


def test_m_of_n_needs_m_distinct_custodians(tmp_path: Path, custodians: dict) -> None:
    original = tmp_path / "secret.bin"
    original.write_bytes(os.urandom(10_000))
    pubs = [custodians[n].public_path for n in ("alice", "bob", "carol")]
    [(_, released)] = _escrow(tmp_path / "vault", [original], pubs, m_of_n=2)
    with pytest.raises(ConfigError, match="needs 2 different custodian keys; 1 given"):
        reverse(released, tmp_path / "vault", custodians["alice"].private_path, PASS, tmp_path / "back.bin")
    for pair in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
        back = tmp_path / f"back-{'-'.join(pair)}.bin"
        reverse(released, tmp_path / "vault", [custodians[n].private_path for n in pair], PASS, back)
        assert back.read_bytes() == original.read_bytes()


def test_escrow_again_is_idempotent_and_resumed_releases_keep_working(tmp_path: Path, custodians: dict) -> None:
    vault = Vault(tmp_path / "vault")
    first, second = tmp_path / "one.bin", tmp_path / "two.bin"
    first.write_bytes(os.urandom(5000))
    second.write_bytes(os.urandom(6000))
    pub = [custodians["alice"].public_path]
    with vault.open_release("rel-r", pub, chunk_size=SMALL_CHUNK) as session:
        entry = session.escrow(first, "2.25.1", "a" * 64)
    with vault.open_release("rel-r", pub, chunk_size=SMALL_CHUNK) as session:  # resumed run: new wrapped key
        assert session.escrow(first, "2.25.1", "a" * 64) == entry
        with pytest.raises(EscrowError, match="different original is already escrowed"):
            session.escrow(second, "2.25.1", "a" * 64)
        later = session.escrow(second, "2.25.2", "b" * 64)
    assert later.wrap_id != entry.wrap_id and len(list((tmp_path / "vault" / "rel-r" / "keys").glob("*.json"))) == 2
    for found, original in ((entry, first), (later, second)):
        key = vault.recover_data_key(found, [load_custodian_private(custodians["alice"].private_path, PASS)])
        out = tmp_path / f"{found.object_id[:4]}.out"
        with open(out, "wb") as fh:
            assert vault.decrypt_to(found, key, fh) == _sha(original)
        assert out.read_bytes() == original.read_bytes()


def test_reversal_appends_signed_chained_events_to_the_internal_log(escrowed: dict, custodians: dict) -> None:
    keys = init_keys(escrowed["tmp"] / "keys")
    log = escrowed["tmp"] / "site" / "internal.jsonl"
    log.parent.mkdir()
    for i, (original, released) in enumerate(escrowed["pairs"]):
        result = reverse(released, escrowed["vault"], custodians["alice"].private_path, PASS, escrowed["tmp"] / f"r{i}.bin")
        record = record_reversal(log, result, keys.signing_key, operator="custodian-alice", reason="IRB 42 re-contact")
        assert record["seq"] == i and record["original_sha256"] == _sha(original)
    records, failures = check_chain(read_log(log), keys.signing_pub)
    assert failures == [] and [r["type"] for r in records] == ["reversal", "reversal"]
    assert all("sig" in r for r in records) and records[0]["operator"] == "custodian-alice"
    other = init_keys(escrowed["tmp"] / "other-keys")
    _, failures = check_chain(read_log(log), other.signing_pub)
    assert len(failures) == 2 and "signature does not verify" in failures[0]


def test_bad_release_inputs_are_config_errors(tmp_path: Path, custodians: dict) -> None:
    vault = Vault(tmp_path / "vault")
    with pytest.raises(ConfigError, match="release id"):
        vault.open_release("../escape", [custodians["alice"].public_path])
    with pytest.raises(ConfigError, match="at least one custodian"):
        vault.open_release("rel", [])
    with pytest.raises(ConfigError, match="M=3"):
        vault.open_release("rel", [custodians["alice"].public_path], m_of_n=3)
    with pytest.raises(ConfigError, match="not a PEM public key"):
        vault.open_release("rel", [custodians["alice"].private_path])
    with vault.open_release("rel", [custodians["alice"].public_path]) as session:
        with pytest.raises(InputError, match="not found"):
            session.escrow(tmp_path / "absent.bin", "1.2", "a" * 64)
