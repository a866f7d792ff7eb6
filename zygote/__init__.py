"""airflow-zygote: a prefork parsing server for Airflow's DAG processor."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
