"""``clinrelease swap train|info|delete``: learned face-swap models (the ``faceswap`` anonymizer)."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import swap_app
from clinrelease.cli.common import JsonOption, emit_json, err_console, handles_errors, progress_bar, styled

_IDENTIFYING = (
    "this model reconstructs the patient's face: store it like the original videos "
    "(escrow it, or `clinrelease swap delete` it after the run)"
)


@swap_app.command("train")
@handles_errors
def train_cmd(
    patient: list[Path] = typer.Option(..., "--patient", help="Patient video (DICOM or container); repeat for more."),
    surrogate: str = typer.Option(
        None, "--surrogate", help="Surrogate face: an image, a video, a folder of them, or a donor id of the pool."
    ),
    keys: Path = typer.Option(
        None, "--keys", "-k", help="Key folder: bind the model to this key's surrogate for the patient."
    ),
    patient_id: str = typer.Option(None, "--patient-id", help="The patient's ID (with --keys; gives the pseudonym)."),
    pseudonym: str = typer.Option(None, "--pseudonym", help="The patient's release pseudonym (instead of --patient-id)."),
    k: int = typer.Option(3, "--k-donors", min=2, help="Donors per key-chosen composite surrogate."),
    out: Path = typer.Option(..., "--out", help="Model file (.pt); training resumes from it when it exists."),
    steps: int = typer.Option(None, "--steps", min=0, help="Total training steps [default: 20000, tiny 200]."),
    device: str = typer.Option("auto", "--device", help="auto, cuda, cuda:N or cpu."),
    tiny: bool = typer.Option(False, "--tiny", help="Small 64 px model that trains on a CPU (tests, smoke runs)."),
    crop_size: int = typer.Option(128, "--crop-size", help="Crop side of the full model: 128 or 256."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Crops per identity per step."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    max_crops: int = typer.Option(1000, "--max-crops", min=1, help="Most face crops taken per identity."),
    every: int = typer.Option(1, "--every", min=1, help="Take every N-th frame of the videos."),
    seed: int = typer.Option(0, "--seed", help="Random seed (initial weights, batches)."),
    json_out: bool = JsonOption,
) -> None:
    """Train the shared-encoder / two-decoder face-swap model for one patient and one surrogate.

    With --keys and --patient-id (or --pseudonym) and no --surrogate, the surrogate is the one the
    release key chooses for this patient, and `run` refuses the model for any other patient or key.
    """
    import dataclasses

    from clinrelease.errors import ConfigError
    from clinrelease.face.learned.crops import crop_from_texture, crops_from_source, keyed_surrogate, surrogate_crops
    from clinrelease.face.learned.faceswap import (
        FaceSwapConfig,
        read_checkpoint,
        resolve_device,
        train,
    )

    # everything that can fail fast does so before the slow crop extraction
    device = resolve_device(device)
    release_key, pseudonym = _patient_key(keys, patient_id, pseudonym)
    identity = {"pseudonym": pseudonym} if pseudonym else {}
    if surrogate is None and release_key is None:
        raise ConfigError("name the surrogate: --surrogate, or --keys with --patient-id/--pseudonym")
    start = 0
    if out.exists():  # resuming: the checkpoint's own configuration decides the crop size
        ckpt = read_checkpoint(out)
        config = FaceSwapConfig.from_dict(ckpt["config"])
        start = int(ckpt["step"])
        made_for = (ckpt.get("identity") or {}).get("pseudonym")
        if pseudonym and made_for and made_for != pseudonym:
            raise ConfigError(f"the model was trained for patient {made_for}, not {pseudonym}; use another --out", out)
    else:
        config = FaceSwapConfig.tiny() if tiny else FaceSwapConfig.full(crop_size)
        if batch_size:
            config = dataclasses.replace(config, batch_size=batch_size)
    total = steps if steps is not None else (200 if config.crop_size <= 64 else 20000)
    show = not json_out
    if show:
        err_console.print("extracting aligned face crops ...")
    patient_crops = []
    for video in patient:
        patient_crops += crops_from_source(video, config.template, max_crops - len(patient_crops), every)
        if len(patient_crops) >= max_crops:
            break
    if surrogate is not None:
        surrogate_faces = surrogate_crops(surrogate, config.template, max_crops, every)
    else:
        texture, landmarks, digest = keyed_surrogate(release_key, pseudonym, k)
        surrogate_faces = [crop_from_texture(texture, landmarks, config.template)]
        identity["surrogate_digest"] = digest

    with progress_bar(show) as progress:
        task = progress.add_task("training", total=total)

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step, description=f"training  loss {loss:.4f}")

        progress.update(task, completed=start)
        result = train(
            patient_crops,
            surrogate_faces,
            out,
            steps=total,
            config=config,
            device=device,
            checkpoint_every=checkpoint_every,
            seed=seed,
            on_step=on_step,
            identity=identity or None,
        )
    summary = {
        "model": str(result.path),
        "digest": result.digest,
        "step": result.step,
        "start_step": result.start_step,
        "resumed": result.resumed,
        "loss": result.loss,
        "seconds": round(result.seconds, 3),
        "steps_per_s": round(result.steps_per_s, 3),
        "device": result.device,
        "patient_crops": result.patient_crops,
        "surrogate_crops": result.surrogate_crops,
        **({"pseudonym": identity["pseudonym"]} if "pseudonym" in identity else {}),
    }
    if json_out:
        emit_json(summary)
        return
    if result.resumed:
        typer.echo(f"resumed from step {result.start_step}")
    typer.echo(
        f"trained {result.step - result.start_step} steps to step {result.step} on {result.device} "
        f"in {result.seconds:.1f} s ({result.steps_per_s:.2f} steps/s), loss {result.loss:.4f}, "
        f"{result.patient_crops} patient / {result.surrogate_crops} surrogate crops"
    )
    typer.echo(f"model {result.path}")
    typer.echo(f"digest {result.digest}")
    err_console.print(styled("note:", "yellow", _IDENTIFYING))


def _patient_key(keys: Path | None, patient_id: str | None, pseudonym: str | None) -> tuple[bytes | None, str | None]:
    """The release key (from a key folder or file) and the patient's pseudonym, when --keys is given."""
    if keys is None:
        return None, pseudonym
    from clinrelease.crypto.keys import load_release_key
    from clinrelease.dicom.keyed import pseudonym as pseudonym_of
    from clinrelease.errors import ConfigError

    release_key = load_release_key(keys / "release.key" if keys.is_dir() else keys)
    pseudonym = pseudonym or (pseudonym_of(release_key, patient_id) if patient_id else None)
    if not pseudonym:
        raise ConfigError("--keys needs --patient-id or --pseudonym to know whose surrogate to train")
    return release_key, pseudonym


@swap_app.command("info")
@handles_errors
def info_cmd(
    model: Path = typer.Argument(..., help="A model file made by `clinrelease swap train`."),
    json_out: bool = JsonOption,
) -> None:
    """Show a face-swap model's configuration, training state and digest."""
    from clinrelease.face.learned.faceswap import model_info

    info = model_info(model)
    if json_out:
        emit_json(info)
        return
    cfg = info["config"]
    trained = info.get("trained", {})
    rows = [
        ("model", info["path"]),
        ("format", info["format"]),
        ("step", info["step"]),
        ("loss", f"{info['loss']:.4f}"),
        ("crop", f"{cfg['crop_size']} px, padding {cfg['padding']}"),
        ("encoder", f"{list(cfg['encoder_channels'])} -> latent {cfg['latent_dim']}"),
        ("decoders", f"2 x {list(cfg['decoder_channels'])}"),
        ("parameters", f"{info['parameters']:,}"),
        ("trained on", f"{trained.get('patient_crops', '?')} patient / {trained.get('surrogate_crops', '?')} "
         f"surrogate crops, {trained.get('device', '?')}, mixed precision {trained.get('mixed_precision', '?')}"),
        ("made for", info["identity"].get("pseudonym", "(not bound to a patient)")
         + (" with the key's surrogate" if info["identity"].get("surrogate_digest") else "")),
        ("size", f"{info['bytes']:,} bytes"),
        ("digest", info["digest"]),
    ]
    for key, value in rows:
        typer.echo(f"{key:<11} {value}")
    err_console.print(styled("note:", "yellow", _IDENTIFYING))


@swap_app.command("delete")
@handles_errors
def delete_cmd(
    model: Path = typer.Argument(..., help="The model file to overwrite and remove."),
) -> None:
    """Overwrite a patient-specific model with random bytes and remove it."""
    from clinrelease.face.learned.faceswap import read_checkpoint, secure_delete_model

    read_checkpoint(model)  # refuse to overwrite anything that is not a faceswap model
    secure_delete_model(model)
    typer.echo(f"deleted {model}")
