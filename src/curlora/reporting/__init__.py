"""Run outputs: ``results`` (results.json schema, writer, reader), ``plots`` (forgetting.png,
curves.png), ``sweep`` (table over a multirun directory), ``wandb_report`` (W&B objects).

Nothing is re-exported so that reading results does not import matplotlib or wandb.
"""
