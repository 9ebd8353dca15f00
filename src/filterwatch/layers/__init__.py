"""Conv layers: find them in a Module or a state_dict, select them, name them, read their
kernels (also sharded ones, one layer at a time) and load checkpoints safely."""

from .discover import (
    ConvLayer,
    discover_layers,
    has_own_forward,
    layer_from_module,
    own_forward_convs,
    select_layers,
    strip_wrapper_prefix,
)
from .loading import describe_source, load_state_dict
from .selection import LayerSelection, check_selection, format_kernel_size, parse_kernel_size
from .sharded import has_sharded_parameters

__all__ = ["ConvLayer", "LayerSelection", "check_selection", "describe_source", "discover_layers",
           "format_kernel_size", "has_own_forward", "has_sharded_parameters", "layer_from_module",
           "load_state_dict", "own_forward_convs",
           "parse_kernel_size", "select_layers", "strip_wrapper_prefix"]
