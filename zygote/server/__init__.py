"""The zygote: a gateway process (ZeroMQ) and a single-threaded forker process (fork per parse)."""
