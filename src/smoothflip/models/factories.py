"""User-supplied model factories: :func:`load_factory` imports one, :func:`build_from_factory` calls it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothflip._memory import is_memory, lookup
from smoothflip._validation import check_int
from smoothflip.errors import user_code_error
from smoothflip.models.classifier import _check_input_shape

__all__ = ["build_from_factory", "load_factory"]


def load_factory(reference: str, *, base_dir: str | Path | None = None) -> Callable[..., nn.Module]:
    """Import the model factory named by ``reference``.

    Two forms (and ``"memory:..."``, a callable a study made in Python registered in this process,
    see :mod:`smoothflip._memory`):

    - ``"package.module:function"`` — imported with :func:`importlib.import_module`; ``base_dir``
      (if given) is put first on ``sys.path`` for the duration of the import. A module imported
      earlier is reused as it is.
    - ``"path/to/file.py:function"`` — the file (relative to ``base_dir``, or to the current
      directory when ``base_dir`` is ``None``) is executed as a module of its own; later calls
      reuse it until the file changes (its modification time or size).

    The attribute may be dotted (``"module:Class.create"``). The factory is later called as
    ``factory(input_shape=..., num_classes=..., **options)``; see :func:`build_from_factory`.

    Args:
        reference: ``"<module or file.py>:<attribute>"``.
        base_dir: the directory the reference is relative to (a study's directory).

    Returns:
        The callable.

    Raises:
        ValueError: a malformed reference, a module or file that cannot be found or imported, a
            missing attribute; the message names the reference.
        TypeError: the attribute is not callable.

    Example:
        >>> factory = load_factory("smoothflip.models:build_model")
        >>> factory.__name__
        'build_model'
    """
    if not isinstance(reference, str):
        raise TypeError(f"model factory reference must be a string, got {type(reference).__name__}")
    if is_memory(reference):  # a callable of a Python session (a study made with sf.Study)
        entry = lookup(reference)
        if entry is None or entry.kind != "callable":
            raise ValueError(
                f"model factory {reference!r}: a Python callable of another session, which is not here; "
                "run the study from Python (sf.Study), or put the function in a file and name it "
                "'file.py:function'"
            )
        return entry.value
    where, sep, attr = reference.rpartition(":")
    if not sep or not where.strip() or not attr.strip():
        raise ValueError(
            f"model factory {reference!r}: expected 'package.module:function' or 'path/to/file.py:function'"
        )
    where, attr = where.strip(), attr.strip()
    base = Path(base_dir) if base_dir is not None else None
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(reference, where, base)
    else:
        module = _import_module(reference, where, base)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model factory {reference!r}: {where!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(
            f"model factory {reference!r}: {attr!r} is not callable (it is a {type(obj).__name__})"
        )
    return obj


def build_from_factory(
    factory: Callable[..., Any],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Call a user's model factory and check that it builds a usable classifier.

    The factory is called as ``factory(input_shape=input_shape, num_classes=num_classes,
    **options)``. The result must be an ``nn.Module`` that maps a batch ``[2, *input_shape]`` to
    logits ``[2, num_classes]``. The check runs one all-zeros batch in eval mode without gradients
    and leaves the torch RNG state and the modules' train/eval flags as they were, so it does not
    disturb seeding or BatchNorm statistics.

    For batched training the engine also needs the model to be deterministic and vmap-compatible
    (see the module docstring); that is the factory's responsibility and is not checked here.

    Args:
        factory: a callable, e.g. from :func:`load_factory`.
        input_shape: one example's shape, without the batch dimension.
        num_classes: ``K >= 2``.
        options: extra keyword arguments for the factory.

    Returns:
        The module the factory built.

    Raises:
        TypeError: the factory does not accept these arguments, or returns something that is not an
            ``nn.Module``; the message names the factory.
        ValueError: the module's output on the dummy batch is not ``[2, num_classes]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> def tiny(*, input_shape, num_classes, width=4):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))
        >>> build_from_factory(tiny, input_shape=(3,), num_classes=2, options={"width": 8})
        Sequential(
          (0): Flatten(start_dim=1, end_dim=-1)
          (1): Linear(in_features=3, out_features=2, bias=True)
        )
    """
    if not callable(factory):
        raise TypeError(f"model factory must be callable, got {type(factory).__name__}")
    shape = _check_input_shape(input_shape)
    num_classes = check_int("num_classes", num_classes, low=2)
    opts = dict(options or {})
    label = _describe(factory)
    kwargs = {"input_shape": shape, "num_classes": num_classes, **opts}
    if "input_shape" in opts or "num_classes" in opts:
        raise ValueError(f"model factory {label}: options must not contain input_shape or num_classes")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature; just call them
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            names = ", ".join(kwargs)
            raise TypeError(f"model factory {label} cannot be called with ({names}): {exc}") from None
    source = _source_file(factory)
    try:
        model = factory(**kwargs)
    except Exception as exc:  # the user's code raised: one line naming it, its file and line
        raise user_code_error(f"model factory {label}", exc, prefer=source) from exc
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {label} must return an nn.Module, got {type(model).__name__}")
    try:
        out = _dummy_forward(model, shape)
    except (RuntimeError, IndexError) as exc:  # shape mismatches inside the user's model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model factory {label}: a batch of shape {[2, *shape]} (the data's input shape) "
            f"does not go through the model: {first}"
        ) from None
    except Exception as exc:
        raise user_code_error(f"model factory {label}: the model's forward", exc, prefer=source) from exc
    expected = (2, num_classes)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"model factory {label}: the model must return a logits tensor of shape {list(expected)} "
            f"for a batch of shape {[2, *shape]}, got {type(out).__name__}"
        )
    if tuple(out.shape) != expected:
        raise ValueError(
            f"model factory {label}: the model must map a batch of shape {[2, *shape]} to logits of "
            f"shape {list(expected)}, got {list(out.shape)}"
        )
    return model


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _import_module(reference: str, module_name: str, base_dir: Path | None) -> Any:
    added = None
    if base_dir is not None:
        added = str(base_dir)
        sys.path.insert(0, added)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            extra = f" (also searched {str(base_dir)!r})" if base_dir is not None else ""
            raise ValueError(
                f"model factory {reference!r}: module {module_name!r} not found{extra}"
            ) from None
        raise ValueError(f"model factory {reference!r}: importing {module_name!r} failed: {exc}") from exc
    except ImportError as exc:
        raise ValueError(f"model factory {reference!r}: importing {module_name!r} failed: {exc}") from exc
    finally:
        if added is not None:
            with contextlib.suppress(ValueError):  # the module itself may have removed it
                sys.path.remove(added)


def _load_file(reference: str, file: str, base_dir: Path | None) -> Any:
    path = Path(file)
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"model factory {reference!r}: file {str(path)!r} not found")
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:10]
    module_name = f"_smoothflip_factory_{digest}"
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__smoothflip_stamp__", None) == stamp:
        return cached  # one execution per file version, like an import (the engine loads per member)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"model factory {reference!r}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[module_name]
        raise ValueError(f"model factory {reference!r}: importing {str(path)!r} failed: {exc}") from exc
    except Exception as exc:  # the user's file raised (a syntax error, an exception at import)
        del sys.modules[module_name]
        raise user_code_error(
            f"model factory {reference!r}: importing {str(path)!r}", exc, prefer=path
        ) from exc
    except BaseException:
        del sys.modules[module_name]
        raise
    module.__smoothflip_stamp__ = stamp  # type: ignore[attr-defined]
    return module


def _source_file(factory: Callable[..., Any]) -> str | None:
    try:
        return inspect.getsourcefile(factory)
    except TypeError:
        return None


def _describe(factory: Callable[..., Any]) -> str:
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    if name is None:
        return repr(factory)
    module = getattr(factory, "__module__", None)
    if module and module.startswith("_smoothflip_factory_"):  # loaded from a file: name the file
        source = _source_file(factory)
        return f"{Path(source).name}:{name}" if source else name
    return f"{module}.{name}" if module else name


def _dummy_forward(model: nn.Module, shape: tuple[int, ...]) -> Any:
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.get_default_dtype()
    modes = {m: m.training for m in model.modules()}
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            return model(torch.zeros(2, *shape, device=device, dtype=dtype))
    finally:
        for m, training in modes.items():
            m.training = training
