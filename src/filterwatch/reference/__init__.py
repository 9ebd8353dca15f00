"""Drift references: the basis of a reference filter distribution, its safetensors file,
matching a model's layer names to a reference's, and the comparison (drift, relative change)."""

from .compare import Comparison, ReferencePlan
from .group import GROUPINGS, Grouping, ReferenceGroup
from .matching import Matching, check_matching, match_layers, parse_layer_map
from .reference import Reference

__all__ = ["GROUPINGS", "Comparison", "Grouping", "Matching", "Reference", "ReferenceGroup",
           "ReferencePlan", "check_matching", "match_layers", "parse_layer_map"]
