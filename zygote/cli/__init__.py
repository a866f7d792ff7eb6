"""The ``airflow zygote`` command group."""
