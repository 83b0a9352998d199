"""Reading a JSON file a user gave (region maps, saved QuantizedNets, reports): one place for
the checks that make a broken file a one-line error (exit 2) instead of a traceback.

    data = read_json_object(path, f"region map {path}", ProgramFormatError)
"""

from __future__ import annotations

import json
from pathlib import Path

from bctvm.errors import BadInputError

__all__ = ["read_json_object"]


def read_json_object(path, name: str, error: type[BadInputError] = BadInputError,
                     expected: str = "a JSON object") -> dict:
    """The JSON object in the file `path` (the caller has checked that it exists, with its own
    message). Raises `error` (a BadInputError: exit 2) "NAME: not valid JSON (why)" when the
    file is not UTF-8 JSON, and "NAME: expected EXPECTED" when it holds no JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise error(f"{name}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{name}: expected {expected}")
    return data
