"""Strongroom: a self-hosted secrets server for AWS workloads."""

__version__ = "0.1.0"
