"""churnml: point-in-time churn and expansion prediction for customer-success teams."""

__version__ = "0.1.0"
