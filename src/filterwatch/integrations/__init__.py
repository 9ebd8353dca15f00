"""Adapters to outside tools: TensorBoard (the sink and its pictures), the HTML report and
torchmetrics (``FilterMetrics``). The trainer adapters live in :mod:`filterwatch.callbacks`
(``filterwatch.integrations.huggingface`` and ``filterwatch.integrations.hooks`` are their
old names, still importable).

Nothing is imported here: each module pulls in its framework only when it is used."""
