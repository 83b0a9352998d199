"""The float reference model of an artifact (model.pt2), read without unpickling anything.

    module = load_float_model("DIR/model.pt2")    # a torch.nn.Module: module(x) -> output

`torch.export.load` unpickles: the sample-inputs record (torch.load, retried with
weights_only=False when that fails), every weight or constant flagged `use_pickle`, custom
objects; and guard code in the graph is compiled into Python when the module is built. So
bctvm reads the torch.export archive (a zip) itself and accepts only data:

- the graph JSON (torch.export's schema), in which every node calls an ATen operator overload
  (`torch.ops.aten.<op>.<overload>`) or `_operator.getitem`; no guard code, no symbolic shapes
  or expressions, no custom objects, operators or sub-graphs as arguments; node metadata
  (stack traces, source references) is dropped;
- weights as raw records (`use_pickle` false) whose dtype, sizes and strides fit the record;
  no constants.

The graph is rebuilt from these pieces by torch's ExportedProgramDeserializer; the pickled
sample-inputs record is never read. Anything else is a BadInputError naming the file and the
entry (exit 2). Weights or graphs that only pickle can express are refused at compile time
(compile reads its own model.pt2 back with this function).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from bctvm.errors import BadInputError

_OP = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_RECORD = re.compile(r"[A-Za-z0-9_]+")
_ARG_KINDS = {"as_none", "as_tensor", "as_tensors", "as_int", "as_ints", "as_float", "as_floats",
              "as_bool", "as_bools", "as_string", "as_strings", "as_scalar_type",
              "as_memory_format", "as_layout", "as_device", "as_optional_tensors"}
_FORBIDDEN = {"as_custom_obj", "as_graph", "as_operator", "as_sym_int", "as_sym_ints",
              "as_sym_bool", "as_sym_bools", "as_sym_float", "as_sym_floats", "as_expr",
              "expr_str", "as_complex", "as_int_lists"}
_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")
_MAX_ENTRY_BYTES = 1 << 31  # no single record of the archive is read past 2 GiB


class _Archive:
    """The zip archive with every failure named."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            self.fail(f"not a torch.export archive ({err})")
        names = [n for n in self.zip.namelist() if n.endswith("/archive_format")]
        if len(names) != 1:
            self.fail("not a torch.export archive (no single archive_format record)")
        self.prefix = names[0][: -len("archive_format")]

    def fail(self, why: str):
        raise BadInputError(f"float model {self.path}: {why}")

    def read(self, rel: str) -> bytes:
        name = self.prefix + rel
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            self.fail(f"entry {rel} is missing")
        if info.file_size > _MAX_ENTRY_BYTES:
            self.fail(f"entry {rel} holds {info.file_size} bytes (limit {_MAX_ENTRY_BYTES})")
        return self.zip.read(info)

    def json(self, rel: str):
        try:
            return json.loads(self.read(rel))
        except (ValueError, UnicodeDecodeError) as err:
            self.fail(f"entry {rel} is not JSON ({err})")


def load_float_model(path):
    """The float model of `path` as a torch.nn.Module (module docstring)."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    arc = _Archive(Path(path))
    models = [n[len(arc.prefix) + len("models/"):-len(".json")] for n in arc.zip.namelist()
              if n.startswith(arc.prefix + "models/") and n.endswith(".json")]
    if len(models) != 1 or not _RECORD.fullmatch(models[0]):
        arc.fail(f"expected one program under models/, found {len(models)}")
    name = models[0]
    graph = arc.json(f"models/{name}.json")
    _check_graph(arc, graph)
    state_dict = _weights(arc, name)
    constants = arc.json(f"data/constants/{name}_constants_config.json")
    if not isinstance(constants, dict) or constants.get("config"):
        arc.fail("the archive holds constants (only parameters and buffers are accepted)")
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, graph)
        ep = ExportedProgramDeserializer().deserialize(serialized, state_dict, {}, None)
        return ep.module()
    except BadInputError:
        raise
    except Exception as err:
        arc.fail(f"cannot rebuild the program ({type(err).__name__}: "
                 f"{str(err).splitlines()[0][:200] if str(err) else ''})")


def _check_graph(arc: _Archive, g) -> None:
    """Only ATen calls on static shapes (module docstring); node metadata is removed."""
    if not isinstance(g, dict) or not isinstance(g.get("graph_module"), dict):
        arc.fail("the program JSON has no graph_module")
    if g.get("guards_code"):
        arc.fail("the program carries guard code (Python run when the module is built)")
    if g.get("range_constraints"):
        arc.fail("the program has symbolic shapes (range constraints)")
    graph = g["graph_module"].get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        arc.fail("the program JSON has no graph nodes")
    for key in ("sym_int_values", "sym_bool_values", "sym_float_values", "custom_obj_values"):
        if graph.get(key):
            arc.fail(f"the graph has {key} (symbolic values or custom objects)")
    _no_forbidden(arc, g, "program")
    for i, node in enumerate(graph["nodes"]):
        if not isinstance(node, dict):
            arc.fail(f"graph node {i} is not an object")
        target = node.get("target")
        if not _allowed_target(target):
            arc.fail(f"graph node {i} calls {str(target)[:80]!r}, not an ATen operator")
        for k, inp in enumerate(node.get("inputs") or []):
            arg = inp.get("arg") if isinstance(inp, dict) else None
            if not isinstance(arg, dict) or not set(arg) <= _ARG_KINDS:
                arc.fail(f"graph node {i} input {k} has an argument kind bctvm does not "
                         f"accept ({sorted(arg) if isinstance(arg, dict) else arg!r})")
        node["metadata"] = {}
    g["graph_module"]["metadata"] = {}


def _no_forbidden(arc: _Archive, obj, where: str) -> None:
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            bad = _FORBIDDEN.intersection(o)
            if bad:
                arc.fail(f"the {where} uses {sorted(bad)[0]} (symbolic or executable content)")
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)


def _allowed_target(target) -> bool:
    import torch

    if target == "_operator.getitem":
        return True
    if not isinstance(target, str) or not _OP.fullmatch(target):
        return False
    obj = torch
    for part in target.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return isinstance(obj, torch._ops.OpOverload)


def _weights(arc: _Archive, name: str) -> dict:
    """fqn -> tensor (Parameter when is_param) from raw records; nothing pickled."""
    import numpy as np
    import torch

    cfg = arc.json(f"data/weights/{name}_weights_config.json")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict):
        arc.fail("the weights config has no 'config' table")
    out = {}
    for fqn, meta in cfg["config"].items():
        where = f"weight {fqn}"
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            arc.fail(f"{where} is pickled (refused: unpickling can run code)")
        rec = meta.get("path_name")
        tm = meta.get("tensor_meta")
        if not isinstance(rec, str) or not _RECORD.fullmatch(rec) or not isinstance(tm, dict):
            arc.fail(f"{where} has no valid record name or tensor_meta")
        try:
            dtype = str(_torch_dtype(tm["dtype"])).replace("torch.", "")
            sizes = [_as_int(s) for s in tm["sizes"]]
            strides = [_as_int(s) for s in tm["strides"]]
            offset = _as_int(tm["storage_offset"])
        except (KeyError, TypeError, ValueError):
            arc.fail(f"{where} has a malformed tensor_meta")
        if dtype not in _DTYPES or len(sizes) != len(strides) or offset < 0 or \
                min(sizes + strides, default=0) < 0:
            arc.fail(f"{where}: dtype {dtype}, sizes {sizes}, strides {strides} not accepted")
        raw = arc.read(f"data/weights/{rec}")
        item = np.dtype(dtype).itemsize
        if len(raw) % item:
            arc.fail(f"{where}: record {rec} of {len(raw)} bytes is not whole {dtype} values")
        numel = len(raw) // item
        span = offset + sum((s - 1) * st for s, st in zip(sizes, strides)) + 1
        if 0 not in sizes and span > numel:
            arc.fail(f"{where}: sizes {sizes} / strides {strides} reach past record {rec}")
        flat = torch.from_numpy(np.frombuffer(bytearray(raw), dtype=dtype).copy())
        t = torch.as_strided(flat, sizes, strides, offset) if numel else \
            torch.zeros(sizes, dtype=flat.dtype)
        out[fqn] = torch.nn.Parameter(t, requires_grad=bool(tm.get("requires_grad"))) \
            if meta.get("is_param") else t
    return out


def _torch_dtype(code):
    from torch._export.serde import schema
    from torch._export.serde.serialize import deserialize_scalar_type

    return deserialize_scalar_type(schema.ScalarType(int(code)))


def _as_int(sym) -> int:
    if not isinstance(sym, dict) or set(sym) != {"as_int"} or not isinstance(sym["as_int"], int):
        raise ValueError(sym)
    return sym["as_int"]
