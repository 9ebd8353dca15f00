"""How alerts and notes are printed, and how model surgery is explained (the failure policy
is :func:`filterwatch.monitor.host.turned_off_on_error`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..layers import ConvLayer
from .alerts import Alert

__all__ = ["ALERT_LOG", "NOTE_LOG", "layer_changes", "log_alerts", "log_notes"]

# alerts are printed once, as one line: "filterwatch alert at step 40: features.5: sparse ..."
ALERT_LOG = logging.getLogger("filterwatch.alerts")
# notes about the monitoring itself (what the schedule's floor costs): info, not alarms
NOTE_LOG = logging.getLogger("filterwatch.notes")

def log_alerts(alerts: Sequence[Alert]) -> None:
    """One plain line per alert on the ``filterwatch.alerts`` logger, at the step where it
    fired (a warning would show our file path)."""
    for alert in alerts:
        ALERT_LOG.warning("filterwatch alert at step %d: %s", alert.step, alert.message)


def log_notes(notes: Sequence[str]) -> None:
    """One line per note on the ``filterwatch.notes`` logger (TensorBoard shows them under
    ``filterwatch/notes``)."""
    for note in notes:
        NOTE_LOG.info("filterwatch note: %s", note)


def layer_changes(before: dict[str, tuple[int, ...]], layers: Sequence[ConvLayer],
                  who: str) -> tuple[dict[str, tuple[int, ...]], str]:
    """The layers' shapes now, and a message when layers appeared, disappeared or changed
    shape since ``before`` ("" otherwise, and on the first call)."""
    shapes = {layer.name: tuple(layer.shape) for layer in layers}
    if not before or shapes == before:
        return shapes, ""
    changed = sorted(n for n in shapes.keys() | before.keys() if shapes.get(n) != before.get(n))
    return shapes, (f"{who}: layers changed during training ({', '.join(changed[:6])}); their "
                    "drift and relative change are reported as undefined where the reference no "
                    "longer fits, and their alerts restart from here.")
