"""ImportModel: PyTorch (nn.Module + example input, a `.pt2` file, a zoo name or
`file.py:factory`) -> Relax IRModule through torch.export.

Matches:  any exportable model made of ops the TVM 0.27 importer knows.
Produces: IRModule with `main(x, *params)`: params kept as inputs (`num_input` = 1 and the
          "params" attribute, TVM's keep_params_as_input convention) so later passes can
          name layers; the attribute "bctvm.param_fqn" maps each parameter Var name to its
          PyTorch qualified name (e.g. p_layer1_0_conv1_weight -> layer1.0.conv1.weight).
          `F.pad` with replicate/reflect stays one `R.nn.pad` (run_ep_decomposition=False).
          The attribute "bctvm.var_source" maps each Relax var an exported node produced to
          [module path, module class, exported node name, "layer 'a.b' (file.py:12)"]: the
          int8 flow names layers and errors with it and reads calibration values at the
          exported node (bctvm.quant.graph).
Sources:  an nn.Module, an ExportedProgram or `.pt2` file, `file.py:factory` (the file's
          folder on sys.path while it is imported and the factory runs), or a zoo name;
          `checkpoint=FILE` loads a training checkpoint into the model
          (bctvm.models.checkpoint); block_size / type / padding_mode build a zoo model or
          convert the convs of a model without block convs of its own.
Requires: a float32 NCHW input of static shape.

Errors: an op the importer cannot translate, or an export failure, raises
UnsupportedOpError naming the op and where it comes from (module path from the exported
node's nn_module_stack, file:line of the user frame in its stack_trace).

Fixes a TVM 0.27 importer bug on the way: `aten.batch_norm.default` (what torch.export keeps
without decomposition) was read with the `_native_batch_norm_legit` argument order, giving
epsilon = momentum and training = True; bctvm converts it with the right order.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tvm
from torch import fx
from tvm import relax
from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

from bctvm.errors import BadInputError, BctvmError, UnsupportedOpError

#: attribute of main: Relax var name -> [module path, module class, exported node, "where"]
VAR_SOURCE_ATTR = "bctvm.var_source"

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def node_source(node: fx.Node) -> str:
    """Where an exported node comes from: "layer 'a.b' (file.py:12)" as far as known."""
    parts = []
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, _cls = list(stack.values())[-1]
        if path:
            parts.append(f"layer '{path}'")
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    user = [f for f in frames if "/site-packages/torch/" not in f[0]]
    if user:
        fname, line, _fn = user[-1]
        parts.append(f"({Path(fname).name}:{line})")
    return " ".join(parts) if parts else "(source unknown)"


def node_module(node: fx.Node) -> tuple[str, str]:
    """(module path, module class name) of the innermost module an exported node comes from
    ("", "") for the top level."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return str(path or ""), name.rsplit(".", 1)[-1]


def _op_label(node: fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    ns = getattr(getattr(target, "namespace", None), "__str__", lambda: "aten")()
    return f"{ns}.{name}" if "." in name else name


class _Importer(ExportedProgramImporter):
    """TVM's importer with bctvm's error attribution and the batch_norm fix."""

    def __init__(self):
        super().__init__()
        self.var_source: dict[str, list[str]] = {}  # Relax var name -> [path, class, node, where]

    def create_convert_map(self):
        cmap = super().create_convert_map()
        cmap["batch_norm.default"] = self._aten_batch_norm
        return {k: self._guarded(k, f) for k, f in cmap.items()}

    def _guarded(self, name, fn):
        def convert(node, *rest):
            try:
                out = fn(node, *rest)
                if isinstance(out, relax.Var):
                    path, cls = node_module(node)
                    self.var_source.setdefault(out.name, [path, cls, node.name, node_source(node)])
                return out
            except UnsupportedOpError:
                raise
            except Exception as err:  # noqa: BLE001 - any importer failure names the node
                msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UnsupportedOpError(
                    f"cannot import op '{name}' at {node_source(node)}: {msg}") from None

        return convert

    def _check_unsupported_func_type(self, nodes):
        for node in nodes:
            if node.op == "call_function" and node.target.__name__ not in self.convert_map:
                raise UnsupportedOpError(
                    f"unsupported op '{_op_label(node)}' at {node_source(node)}")

    def _aten_batch_norm(self, node: fx.Node) -> relax.Var:
        # aten.batch_norm(input, weight, bias, running_mean, running_var, training,
        #                 momentum, eps, cudnn_enabled)
        import numpy as np

        args = list(node.args)
        training = bool(args[5]) if len(args) > 5 else False
        if training:
            raise UnsupportedOpError(
                f"batch_norm in training mode at {node_source(node)}: call model.eval() first")
        x = self.env[args[0]]
        c = int(self.shape_of(x)[1])
        dt = str(x.ty.dtype)

        def arg(i, default):
            return self.env[args[i]] if args[i] is not None else relax.const(default, dt)

        momentum = float(args[6]) if len(args) > 6 else 0.1
        eps = float(args[7]) if len(args) > 7 else 1e-5
        bn = self.block_builder.emit(relax.op.nn.batch_norm(
            x, arg(1, np.ones(c)), arg(2, np.zeros(c)), arg(3, np.zeros(c)),
            arg(4, np.ones(c)), axis=1, epsilon=eps, center=args[2] is not None,
            scale=args[1] is not None, momentum=momentum, training=False))
        return self.block_builder.emit(bn[0])


@dataclass
class ImportedModel:
    """Result of ImportModel: the Relax module and what it came from."""

    mod: tvm.IRModule
    exported: torch.export.ExportedProgram
    example_input: torch.Tensor
    module: torch.nn.Module | None = None  # the float model (None for a .pt2 file)
    name: str = "model"
    param_fqn: dict[str, str] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.example_input.shape)


BLOCK_OPTIONS = ("block_size", "type", "padding_mode")


def load_source(source, example_input=None, *, input_shape=(1, 3, 224, 224), checkpoint=None,
                **model_kw):
    """Resolve a model source to (nn.Module | None, ExportedProgram | None, example input, name).

    `source` is an nn.Module, an ExportedProgram, a `.pt2` path, `file.py:factory` or a zoo
    name (model_kw go to the zoo factory: block_size, type, padding_mode, num_classes...).
    `checkpoint`: a PyTorch checkpoint file loaded into the model (bctvm.models.checkpoint).
    For an nn.Module or a factory, block_size / type / padding_mode convert its nn.Conv2d
    layers to block convs (bctvm.models.convert) when it has no block convs of its own."""
    model, ep, x, name = _load(source, example_input, input_shape, checkpoint, model_kw)
    if model is not None and checkpoint is not None:
        from bctvm.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    block = {k: model_kw[k] for k in BLOCK_OPTIONS if model_kw.get(k) is not None}
    if model is not None and block and not _is_zoo(source):
        model = _convert(model, name, block, x)
    return model, ep, x, name


def _is_zoo(source) -> bool:
    text = str(source)
    return isinstance(source, str) and not text.endswith(".pt2") and ".py:" not in text


def _computes_block_convs(model, x) -> bool:
    """Does the captured graph hold a block conv over more than one block (whatever module
    wrote it)?"""
    from . import ops
    from .graph import bindings
    from .legalize_block_conv import LegalizeBlockConv

    mod = LegalizeBlockConv()(ImportModel()(model, x).mod)
    for _, value in bindings(mod["main"]):
        if ops.op_name(value) == ops.BLOCK_CONV2D:
            if tuple(ops.attrs_dict(value)["block"]) != ops.static_shape(value.args[0])[2:]:
                return True
    return False


def _convert(model, name: str, block: dict, x):
    """Block-conv version of a plain model (--block-size/--type/--padding on a factory)."""
    from bctvm.models import convert
    from bctvm.models.checkpoint import has_block_convs

    if has_block_convs(model) or _computes_block_convs(model, x):
        raise BadInputError(f"{name}: --block-size/--type/--padding do not apply: the model has "
                            "block convs of its own")
    if "block_size" not in block:
        raise BadInputError(f"{name}: give --block-size to convert the model's convs to block "
                            "convs")
    return convert(model, block["block_size"], block.get("type", "fixed"),
                   block.get("padding_mode", "constant"))


def _load(source, example_input, input_shape, checkpoint, model_kw):
    if isinstance(source, torch.export.ExportedProgram):
        x = example_input if example_input is not None else _input_of(source)
        return None, source, x, "exported"
    if checkpoint is not None and (str(source).endswith(".pt2")):
        raise BadInputError(f"{source}: --checkpoint needs the model's code (a zoo name or "
                            "file.py:factory); a .pt2 file holds its weights already")
    if isinstance(source, torch.nn.Module):
        x = example_input if example_input is not None else example_image(input_shape)
        return source, None, x, type(source).__name__
    text = str(source)
    if text.endswith(".pt2"):
        if any(model_kw.get(k) is not None for k in BLOCK_OPTIONS):
            raise BadInputError(f"{text}: --block-size/--type/--padding do not apply to an "
                                "exported program (give file.py:factory to convert a model)")
        path = Path(text)
        if not path.is_file():
            raise BadInputError(f"model file not found: {path}")
        try:
            ep = torch.export.load(str(path))
        except Exception as err:  # noqa: BLE001
            raise BadInputError(f"{path}: not a torch.export program ({err})") from None
        x = example_input if example_input is not None else _input_of(ep)
        return None, ep, x, path.stem
    if ".py:" in text:
        file, factory = text.rsplit(":", 1)
        if not Path(file).is_file():
            raise BadInputError(f"model file not found: {file}")
        module = _import_file(Path(file))
        if not hasattr(module, factory):
            raise BadInputError(f"{file}: no factory function '{factory}'")
        with _on_path(Path(file).resolve().parent):
            try:
                with seeded():
                    model = getattr(module, factory)()
            except BctvmError:
                raise
            except Exception as err:  # noqa: BLE001 - the user's factory failed
                first = (str(err).strip().splitlines() or [""])[0][:200]
                raise BadInputError(f"{text}: the factory raised {type(err).__name__}: "
                                    f"{first}") from None
        if not isinstance(model, torch.nn.Module):
            raise BadInputError(f"{text}: factory did not return an nn.Module")
        x = example_input if example_input is not None else example_image(input_shape)
        return model, None, x, factory
    from bctvm.models import get_model  # zoo name

    with seeded():
        model = get_model(text, **model_kw)
    x = example_input if example_input is not None else example_image(input_shape)
    return model, None, x, text


SEED = 0  # the torch seed a zoo model or factory is built under, and of the example input


@contextmanager
def seeded(seed: int = SEED):
    """Build a model under a fixed torch seed (the caller's random state is restored), so a
    model without a checkpoint gets the same weights, and the same artifact, every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def example_image(input_shape, seed: int = SEED) -> torch.Tensor:
    """The N(0, 1) example input of `input_shape`, from a fixed seed."""
    return torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))


@contextmanager
def _on_path(folder: Path):
    """`folder` first on sys.path for the block (a factory file may import its siblings)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


def _import_file(file: Path):
    """Import a model file as a module, its folder on sys.path while it runs."""
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    with _on_path(file.resolve().parent):
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001
            raise BadInputError(f"{file}: cannot import ({err})") from None
    return module


def _input_of(ep: torch.export.ExportedProgram) -> torch.Tensor:
    user = [s for s in ep.graph_signature.input_specs
            if s.kind is torch.export.graph_signature.InputKind.USER_INPUT]
    if len(user) != 1:
        raise BadInputError(f"exported program has {len(user)} user inputs; bctvm needs one")
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name == user[0].arg.name:
            val = node.meta.get("val")
            return torch.randn(*[int(s) for s in val.shape])
    raise BadInputError("exported program input has no recorded shape")


class ImportModel:
    """The import step: a model source -> ImportedModel (a Relax module plus provenance)."""

    def __init__(self, keep_params_as_input: bool = True):
        self.keep_params_as_input = keep_params_as_input

    def __call__(self, source, example_input=None, **kw) -> ImportedModel:
        model, ep, x, name = load_source(source, example_input, **kw)
        if model is not None:
            model = model.eval()
            try:
                ep = torch.export.export(model, (x,))
            except BctvmError:
                raise  # the model's own error (a block that does not divide, ...)
            except Exception as err:  # noqa: BLE001 - export errors are user-model errors
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise UnsupportedOpError(f"torch.export failed for {name}: {first}") from None
        if x.dtype != torch.float32 or x.dim() != 4:
            raise BadInputError(f"{name}: input must be float32 NCHW, got {x.dtype} "
                                f"{tuple(x.shape)}")
        importer = _Importer()
        mod = importer.from_exported_program(ep, self.keep_params_as_input, False, False, None)
        fqn = {s.arg.name: s.target for s in ep.graph_signature.input_specs
               if s.kind is torch.export.graph_signature.InputKind.PARAMETER}
        mod["main"] = mod["main"].with_attr("bctvm.param_fqn", fqn).with_attr(
            VAR_SOURCE_ATTR, importer.var_source)
        return ImportedModel(mod=mod, exported=ep, example_input=x, module=model, name=name,
                             param_fqn=fqn)


def import_model(source, example_input=None, keep_params_as_input=True, **kw) -> ImportedModel:
    """Functional form of ImportModel."""
    return ImportModel(keep_params_as_input)(source, example_input, **kw)
