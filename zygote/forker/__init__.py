"""The forker process: single-threaded, imports Airflow and approved libraries, forks one worker per parse; never imports zmq."""
