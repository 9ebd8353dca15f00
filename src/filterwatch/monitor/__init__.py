"""Training-time monitoring without any framework: the watcher (:class:`WatchCore`) and the
gatekeeper (:class:`GateCore`) that every trainer adapter builds on, the Monitor (one per
run: reference, history, scalars), the sinks a snapshot goes to, change alerts, and the one
schedule shared by every integration."""

from .alerts import Alert, AlertRules, AlertTracker
from .gatecore import STOP_LOG, GateCore
from .host import INFO_LOG, Host, turned_off_on_error
from .monitor import LAYER_TAG, MODEL_TAG, OVERHEAD_TAG, SCALAR_MEASURES, Monitor
from .policy import ALERT_LOG, NOTE_LOG, layer_changes, log_alerts, log_notes
from .schedule import FLOOR_SHARE, Schedule, check_count, check_interval
from .sinks import HistoryFile, ScalarLogger, Sink, Snapshot, free_path
from .watchcore import WatchCore

__all__ = ["ALERT_LOG", "FLOOR_SHARE", "INFO_LOG", "LAYER_TAG", "MODEL_TAG", "NOTE_LOG",
           "OVERHEAD_TAG", "SCALAR_MEASURES", "STOP_LOG", "Alert", "AlertRules", "AlertTracker",
           "GateCore", "HistoryFile", "Host", "Monitor", "ScalarLogger", "Schedule", "Sink",
           "Snapshot", "WatchCore", "check_count", "check_interval", "free_path",
           "layer_changes", "log_alerts", "log_notes", "turned_off_on_error"]
