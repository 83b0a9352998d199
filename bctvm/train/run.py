"""The `bctvm data`, `bctvm train` and `bctvm eval` commands as library calls.

Data directories follow the ImageFolder layout: DATA_DIR/train/<class>/<image> and
(optional for training) DATA_DIR/val/<class>/<image>.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from bctvm.errors import BadInputError
from bctvm.train.checkpoint import ArchSpec, load_checkpoint, model_from_checkpoint
from bctvm.train.data import export_image_folder, image_folder, make_loader
from bctvm.train.loop import evaluate, train

DEFAULT_ARCH = ArchSpec(name="block_resnet18", block_size=8, type="fixed",
                        padding_mode="constant", input_size=32, channels=3)
ARCH_OPTIONS = {"name": "--arch", "block_size": "--block-size", "type": "--type",
                "padding_mode": "--padding", "input_size": "--input-size",
                "channels": "channels"}


def parse_block_size(text: str | int | None) -> int | tuple[int, int] | None:
    """'8' -> 8, '8,4' or '8x4' -> (8, 4) (height, width); None stays None."""
    if text is None or isinstance(text, int):
        return text
    parts = [p.strip() for p in str(text).lower().replace("x", ",").split(",")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise BadInputError(f"--block-size must be N or H,W (integers), got {text!r}") from None
    if len(nums) not in (1, 2) or min(nums) < 0:
        raise BadInputError(f"--block-size must be N or H,W (integers >= 0), got {text!r}")
    return nums[0] if len(nums) == 1 else (nums[0], nums[1])


def parse_milestones(text: str | None) -> list[int]:
    """'10,20' -> [10, 20]; '' or None -> []."""
    if not text:
        return []
    try:
        return [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise BadInputError(f"--milestones must be comma-separated epochs, got {text!r}") from None


def export_dataset(name: str, out_dir: str | Path, size: int = 32, per_class: int | None = None,
                   progress: bool = True) -> dict[str, int]:
    """`bctvm data NAME OUT_DIR`: write OUT_DIR/train and OUT_DIR/val; returns image counts.
    per_class: keep only the first N images of each class per split."""
    if size < 1:
        raise BadInputError(f"--size must be a positive pixel count, got {size}")
    return export_image_folder(name, out_dir, size=size, per_class=per_class, progress=progress)


def _data_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"{path}: data directory does not exist "
                            "(expected DATA_DIR/train/<class>/<image>)")
    return path


def _resolve_arch(given: dict, resume: str | Path | None, reset_optimizer: bool,
                  num_classes: int) -> ArchSpec:
    """Arch from the options; unset options come from the resumed checkpoint or the
    defaults. Continuing a run (resume without reset) must not change the architecture."""
    base = DEFAULT_ARCH
    if resume is not None:
        saved = load_checkpoint(resume)["arch"]
        if saved is not None:
            base = ArchSpec.from_dict(saved, str(resume))
            if not reset_optimizer:
                clash = [f"{ARCH_OPTIONS[k]} {v!r} (checkpoint: {getattr(base, k)!r})"
                         for k, v in given.items() if v is not None and v != getattr(base, k)]
                if clash:
                    raise BadInputError(f"{resume}: resuming with a different architecture: "
                                        + "; ".join(clash) + " (add --reset-optimizer to "
                                        "fine-tune a changed model from these weights)")
    chosen = {k: v for k, v in given.items() if v is not None}
    arch = replace(base, **chosen, num_classes=num_classes)
    return ArchSpec.from_dict(arch.to_dict())


def check_input_fits(model: torch.nn.Module, spec: ArchSpec) -> None:
    """Run one zero image through `model` so a block size or input size the architecture
    cannot take fails now, naming the layer, rather than inside the first epoch."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, spec.channels, spec.input_size, spec.input_size))
    except BadInputError as err:
        raise BadInputError(f"{spec.name} at --input-size {spec.input_size}: {err}") from err
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise BadInputError(f"{spec.name} cannot take a {spec.channels}x{spec.input_size}x"
                            f"{spec.input_size} input: {first}") from err
    finally:
        model.train(was_training)


def summarize(history: list[dict], out: str | Path) -> str:
    """One line: the best epoch and where the checkpoints are."""
    if not history:
        return f"nothing to train (already at the requested epochs); checkpoints in {out}"
    key = "val_top1" if history[-1]["val_top1"] is not None else "train_top1"
    best = max(history, key=lambda h: h[key])
    where = "val" if key == "val_top1" else "train"
    return (f"best {where} top-1 {best[key]:.2f}% at epoch {best['epoch']}; "
            f"checkpoints {Path(out) / 'last.pt'}, {Path(out) / 'best.pt'}")


def _option(normalize, value, option: str):
    """`normalize(value)` (None stays None), its BadInputError naming `option`."""
    try:
        return None if value is None else normalize(value)
    except BadInputError as err:
        raise BadInputError(f"{option}: {err}") from None


def train_from_folder(
    data_dir: str | Path,
    out: str | Path,
    arch: str | None = None,
    block_size: int | tuple[int, int] | str | None = None,
    type: str | None = None,  # noqa: A002 - the seed's option name
    padding_mode: str | None = None,
    input_size: int | None = None,
    channels: int | None = None,
    epochs: int = 10,
    lr: float = 0.1,
    wd: float = 1e-4,
    momentum: float = 0.9,
    milestones: str | list[int] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    resume: str | Path | None = None,
    reset_optimizer: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[dict], ArchSpec]:
    """`bctvm train`: build the zoo model, train on DATA_DIR/train, validate on DATA_DIR/val
    (if present), checkpoint to OUT/last.pt and OUT/best.pt. Returns (history, arch)."""
    data_dir = _data_dir(data_dir)
    if milestones is None or isinstance(milestones, str):
        milestones = parse_milestones(milestones)
    # validate block type / padding names early, with the option in the message
    from bctvm.models.block_conv import normalize_block_type, normalize_padding_mode

    given = {"name": arch, "block_size": parse_block_size(block_size),
             "type": _option(normalize_block_type, type, "--type"),
             "padding_mode": _option(normalize_padding_mode, padding_mode, "--padding"),
             "input_size": input_size, "channels": channels}
    probe = replace(DEFAULT_ARCH, **{k: v for k, v in given.items() if v is not None})
    train_set = image_folder(data_dir / "train", probe.input_size, probe.channels)
    spec = _resolve_arch(given, resume, reset_optimizer, len(train_set.classes))
    if (spec.input_size, spec.channels) != (probe.input_size, probe.channels):
        train_set = image_folder(data_dir / "train", spec.input_size, spec.channels)
    val_loader = None
    if (data_dir / "val").exists():
        val_set = image_folder(data_dir / "val", spec.input_size, spec.channels)
        if val_set.classes != train_set.classes:
            raise BadInputError(f"{data_dir / 'val'}: classes {val_set.classes} differ from "
                                f"train's {train_set.classes}")
        val_loader = make_loader(val_set, batch_size, shuffle=False, workers=workers)
    torch.manual_seed(seed)
    model = spec.build()
    check_input_fits(model, spec)
    train_loader = make_loader(train_set, batch_size, shuffle=True, workers=workers, seed=seed)
    history = train(model, train_loader, val_loader, epochs=epochs, lr=lr, wd=wd,
                    momentum=momentum, milestones=milestones, ckpt_dir=out, resume=resume,
                    reset_optimizer=reset_optimizer, progress=progress, arch=spec,
                    classes=train_set.classes)
    return history, spec


def eval_checkpoint(ckpt: str | Path, data_dir: str | Path, split: str = "val",
                    batch_size: int = 128, workers: int = 0,
                    progress: bool = True) -> dict[str, float]:
    """`bctvm eval`: rebuild the model from CKPT, evaluate on DATA_DIR/SPLIT;
    returns {"top1": %, "top5": %, "loss", "images"}."""
    model, arch, saved = model_from_checkpoint(ckpt)
    folder = _data_dir(data_dir) / split
    dataset = image_folder(folder, arch.input_size, arch.channels)
    classes = saved.get("classes")
    if classes is not None and list(classes) != dataset.classes:
        raise BadInputError(f"{folder}: classes {dataset.classes} differ from the "
                            f"checkpoint's {list(classes)}")
    if classes is None and len(dataset.classes) != arch.num_classes:
        raise BadInputError(f"{folder}: {len(dataset.classes)} classes, the model has "
                            f"{arch.num_classes}")
    loader = make_loader(dataset, batch_size, shuffle=False, workers=workers)
    result = evaluate(model, loader, progress=progress, desc=f"eval {split}")
    return {**result, "images": len(dataset)}


__all__ = ["export_dataset", "train_from_folder", "eval_checkpoint", "parse_block_size",
           "parse_milestones", "check_input_fits", "summarize", "DEFAULT_ARCH"]
