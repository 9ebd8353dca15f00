"""Adapters to the outside: TensorBoard, forward hooks (``watch``) and torchmetrics
(``FilterMetrics``). The Lightning callbacks live in :mod:`filterwatch.callbacks`.

Nothing is imported here: each module pulls in its framework only when it is used."""
