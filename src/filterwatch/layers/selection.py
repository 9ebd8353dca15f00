"""Which layers to measure: kernel sizes, name globs, and whether 1x1 layers count."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import InputError

__all__ = ["KernelSpec", "LayerSelection", "format_kernel_size", "parse_kernel_size"]

KernelSpec = str | int | Sequence[int]


def parse_kernel_size(text: KernelSpec) -> tuple[int, ...]:
    """``"3x3"`` / ``3`` / ``(3, 3)`` -> ``(3, 3)`` (an int is a 1-tuple).

    Example:
        >>> parse_kernel_size("7x7"), parse_kernel_size(5)
        ((7, 7), (5,))
    """
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, int):
            dims: tuple[int, ...] = (text,)
        elif isinstance(text, str):
            dims = tuple(int(p) for p in text.lower().split("x"))
        else:
            dims = tuple(int(p) for p in text)
        if not dims or min(dims) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(
            f"`kernel_size` expected sizes like '3x3', 5 or (3, 3), got {text!r}"
        ) from None
    return dims


def format_kernel_size(kernel_size: Sequence[int]) -> str:
    """``(3, 3)`` -> ``"3x3"`` (the inverse of :func:`parse_kernel_size`).

    Example:
        >>> format_kernel_size((7, 7))
        '7x7'
    """
    return "x".join(str(int(s)) for s in kernel_size)


def _globs(value: object, arg: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise InputError(f"`{arg}` expected a list of globs, got the string {value!r}; "
                         f"hint: {arg}=[{value!r}]")
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise InputError(f"`{arg}` expected a list of glob strings, got {value!r}")
    return tuple(value)


class LayerSelection:
    """Which conv layers to measure, validated and normalised once.

    Args:
        kernel_sizes: keep only these kernel sizes (``"3x3"``, ``(7, 7)``, ``3``...); when
            given, it decides about 1x1 layers too.
        include: keep only layers whose name matches one of these globs.
        exclude: drop layers whose name matches one of these globs.
        include_pointwise: keep 1x1 layers (left out by default: VE is 0 for one-value kernels).
        transposed: globs of the layers whose weights, read from a state_dict or checkpoint,
            are ConvTranspose weights ``(C_in, C_out/groups, *k)``. A state_dict does not say
            so (a live module does), and the Conv layout is assumed otherwise.

    Example:
        >>> sel = LayerSelection(kernel_sizes=["3x3"], exclude=["head.*"])
        >>> sel.kernel_sizes, sel.accepts("body.0", (3, 3)), sel.accepts("head.1", (3, 3))
        (((3, 3),), True, False)
    """

    __slots__ = ("exclude", "include", "include_pointwise", "kernel_sizes", "transposed")

    def __init__(self, kernel_sizes: Sequence[KernelSpec] | None = None,
                 include: Sequence[str] = (), exclude: Sequence[str] = (),
                 include_pointwise: bool = False, transposed: Sequence[str] = ()) -> None:
        if isinstance(kernel_sizes, str | int):
            raise InputError(f"`kernel_sizes` expected a list of sizes, got {kernel_sizes!r}; "
                             f"hint: kernel_sizes=[{kernel_sizes!r}]")
        self.kernel_sizes: tuple[tuple[int, ...], ...] | None = (
            None if kernel_sizes is None else tuple(parse_kernel_size(k) for k in kernel_sizes))
        self.include = _globs(include, "include")
        self.exclude = _globs(exclude, "exclude")
        if not isinstance(include_pointwise, bool):
            raise InputError(f"`include_pointwise` expected True or False, got {include_pointwise!r}")
        self.include_pointwise = include_pointwise
        self.transposed = _globs(transposed, "transposed")

    @classmethod
    def everything(cls, transposed: Sequence[str] = ()) -> LayerSelection:
        """Every conv layer, 1x1 included."""
        return cls(include_pointwise=True, transposed=transposed)

    def is_transposed(self, name: str) -> bool:
        """Whether a state_dict weight called ``name`` is in ConvTranspose layout."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.transposed)

    def accepts(self, name: str, kernel_size: Sequence[int]) -> bool:
        """Whether a layer called ``name`` with this kernel size is selected."""
        size = tuple(int(s) for s in kernel_size)
        if self.kernel_sizes is not None:
            if size not in self.kernel_sizes:
                return False
        elif all(s == 1 for s in size) and not self.include_pointwise:
            return False
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (report settings, callback state keys)."""
        return {
            "include_pointwise": self.include_pointwise,
            "kernel_sizes": (None if self.kernel_sizes is None
                             else [format_kernel_size(k) for k in self.kernel_sizes]),
            "include": list(self.include), "exclude": list(self.exclude),
            **({"transposed": list(self.transposed)} if self.transposed else {}),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerSelection) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.kernel_sizes, self.include, self.exclude, self.include_pointwise,
                     self.transposed))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"LayerSelection({args})"


def check_selection(select: object, arg: str = "select") -> LayerSelection:
    """``None`` -> the default selection; a LayerSelection as is; a mapping of its arguments
    (what :meth:`LayerSelection.as_dict` gives: how callbacks store it in JSON checkpoints);
    anything else is an error."""
    if select is None:
        return LayerSelection()
    if isinstance(select, Mapping):
        try:
            return LayerSelection(**select)
        except TypeError as exc:
            raise InputError(f"`{arg}` expected the arguments of LayerSelection, got {dict(select)!r}: "
                             f"{exc}") from None
    if not isinstance(select, LayerSelection):
        raise InputError(
            f"`{arg}` expected a filterwatch.LayerSelection or None, got {type(select).__name__}; "
            "hint: select=LayerSelection(kernel_sizes=['3x3'], exclude=['head.*'])"
        )
    return select
