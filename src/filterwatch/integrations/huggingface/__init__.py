"""FilterWatch and FilterGate for the Hugging Face ``Trainer`` (needs ``transformers``:
``pip install 'filterwatch[huggingface]'``).

    from filterwatch.integrations.huggingface import FilterGateCallback, FilterWatchCallback

    trainer = Trainer(model, args, train_dataset=...,
                      callbacks=[FilterWatchCallback(), FilterGateCallback({"max-sparsity": 0.5})])
"""

from ...errors import InputError

try:
    import transformers  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise InputError("filterwatch.integrations.huggingface expected the `transformers` package, "
                     "which is not installed; hint: pip install 'filterwatch[huggingface]'") from exc

from ...gate.decision import GateStoppingReason
from .gate import FilterGateCallback
from .watch import FilterWatchCallback

__all__ = ["FilterGateCallback", "FilterWatchCallback", "GateStoppingReason"]
