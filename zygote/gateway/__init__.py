"""The gateway process: owns the ZeroMQ socket, relays bytes; never imports Airflow, never forks a worker."""
