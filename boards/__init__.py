"""Board configurations: one TOML file per board in this folder, loaded into BoardConfig.

`load_board("pynq")` (or a path to a .toml file) returns a validated, frozen BoardConfig;
`list_boards()` names the bundled boards. Hardware parameters live here and nowhere else.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bctvm.errors import BoardConfigError

from .config import BoardConfig, Energy, Timing

_HERE = Path(__file__).resolve().parent
DEFAULT_BOARD = "pynq"

__all__ = ["BoardConfig", "Energy", "Timing", "load_board", "list_boards", "board_to_dict",
           "board_from_dict", "DEFAULT_BOARD"]


def list_boards() -> list[str]:
    """Names of the bundled boards, sorted."""
    return sorted(p.stem for p in _HERE.glob("*.toml"))


def _from_dict(data: dict, origin: str) -> BoardConfig:
    data = dict(data)
    core = data.pop("core", {})
    system = data.pop("system", {})
    timing = data.pop("timing", {})
    energy = data.pop("energy", None)
    isa = data.pop("isa", {})
    merged = {**data, **core, **system, **isa}
    known = set(BoardConfig.__dataclass_fields__) - {"timing", "energy"}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise BoardConfigError(f"{origin}: unknown field(s) {', '.join(unknown)}")
    tknown = set(Timing.__dataclass_fields__)
    tunknown = sorted(set(timing) - tknown)
    if tunknown:
        raise BoardConfigError(f"{origin}: unknown timing field(s) {', '.join(tunknown)}")
    if energy is not None:
        eknown = set(Energy.__dataclass_fields__)
        if not isinstance(energy, dict) or set(energy) != eknown:
            raise BoardConfigError(f"{origin}: [energy] needs exactly the fields "
                                   f"{', '.join(sorted(eknown))}")
        energy = Energy(**energy)
    try:
        return BoardConfig(**merged, timing=Timing(**timing), energy=energy)
    except TypeError as err:
        raise BoardConfigError(f"{origin}: {err}") from None


def load_board(name_or_path: str | Path | BoardConfig = DEFAULT_BOARD) -> BoardConfig:
    """Load and validate a board by bundled name or by the path of a TOML file."""
    if isinstance(name_or_path, BoardConfig):
        return name_or_path
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = _HERE / f"{name_or_path}.toml"
        if not p.is_file():
            raise BoardConfigError(
                f"unknown board '{name_or_path}' (known: {', '.join(list_boards())})"
            )
    elif not p.is_file():
        raise BoardConfigError(f"board file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise BoardConfigError(f"{p}: not valid TOML: {err}") from None
    return _from_dict(data, str(p))


def board_to_dict(cfg: BoardConfig) -> dict:
    """The raw fields of a board (what its TOML file holds), e.g. to embed in an artifact."""
    from dataclasses import asdict

    return asdict(cfg)


def board_from_dict(data: dict, origin: str = "board dict") -> BoardConfig:
    """A validated BoardConfig from board_to_dict's output (or a TOML file's tables)."""
    if not isinstance(data, dict):
        raise BoardConfigError(f"{origin}: a board must be a table of fields")
    return _from_dict(data, origin)

