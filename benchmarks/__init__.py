"""Mozart load benchmarks: compute ceiling, Locust load runs and release gates."""
