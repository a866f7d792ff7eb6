"""The thin client inside Airflow's dag-processor: parse children come from the zygote."""
