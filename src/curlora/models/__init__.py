"""Backbone loading and the continual LightningModule."""
