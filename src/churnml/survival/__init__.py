"""Time to churn: survival curves per account from a discrete-time hazard model, baselines and metrics."""
