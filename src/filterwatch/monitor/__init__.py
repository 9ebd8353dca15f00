"""Training-time monitoring without any framework: the Monitor (one per run: reference,
history, scalars), change alerts, and the one schedule shared by every integration."""

from .alerts import Alert, AlertRules, AlertTracker
from .monitor import LAYER_TAG, MODEL_TAG, SCALAR_MEASURES, Monitor, MonitorViews
from .policy import ALERT_LOG, NOTE_LOG, guarded, layer_changes, log_alerts, log_notes
from .schedule import FLOOR_SHARE, Schedule, check_count, check_interval

__all__ = ["ALERT_LOG", "FLOOR_SHARE", "LAYER_TAG", "MODEL_TAG", "NOTE_LOG", "SCALAR_MEASURES",
           "Alert", "AlertRules", "AlertTracker", "Monitor", "MonitorViews", "Schedule",
           "check_count", "check_interval", "guarded", "layer_changes", "log_alerts", "log_notes"]
